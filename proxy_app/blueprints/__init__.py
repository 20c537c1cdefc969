"""One blueprint per endpoint family; views parse, hand a Call to the pipeline, and render."""

# Where OpenAI-style routes live: bare, OpenAI's /v1, and Azure's v1 surface (/openai/v1).
PREFIXES = ("", "/v1", "/openai/v1")


def route(bp, path: str, methods=("POST",), prefixes=PREFIXES):
    """Register `path` under every prefix (one view, several URLs)."""
    def decorate(view):
        for prefix in prefixes:
            bp.add_url_rule(prefix + path, view_func=view, methods=list(methods))
        return view
    return decorate
