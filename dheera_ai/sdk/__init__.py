"""The Python SDK: the gateway's engine in-process, as functions (`dheera_ai.completion`, ...).

`api` has the functions, `objects` what they return, `client` how a call reaches the pipeline.
`import dheera_ai` imports none of this; the first use of a function does.
"""
