"""Model providers: one module per provider, each registering itself by name."""
