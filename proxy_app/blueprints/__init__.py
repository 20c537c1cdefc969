"""One blueprint per endpoint family; views parse, hand a Call to the pipeline, and render."""
