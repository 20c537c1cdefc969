"""Metadata and tags: what the caller says about a call, kept by the gateway, never sent upstream.

(Client-side credentials and `user_config` are the router's: `dheera_ai.router.client_side`.)"""

import orjson

from dheera_ai import hookimpl, storable
from dheera_ai.errors import BadRequestError

TAGS_HEADER = "x-dheera-ai-tags"
# A call's own tags (body, metadata and header together): each becomes a stored row and a running
# total, so a client must not be able to send thousands, or tags the size of a prompt.
MAX_TAGS = 50
MAX_TAG_LENGTH = 256


@hookimpl(tryfirst=True)
def dheera_ai_pre_call(call, settings):
    params = call.gateway_params
    metadata = params.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise BadRequestError("'metadata' must be an object.", param="metadata")
    if metadata:
        # Refused here, where the client can fix it, rather than lost (or stuck) in the store.
        _refuse_unstorable(metadata, "metadata")
        if len(orjson.dumps(metadata)) > storable.MAX_BYTES:
            raise BadRequestError(f"'metadata' is larger than {storable.MAX_BYTES // 1024} KB as JSON.",
                                  param="metadata", code="metadata_too_large")
    call.metadata = dict(metadata or {})

    tags = []
    for source, value in (("tags", params.get("tags")), ("metadata.tags", call.metadata.get("tags"))):
        if value is None:
            continue
        if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
            raise BadRequestError(f"'{source}' must be a list of strings.", param=source)
        tags += value
    header = call.headers.get(TAGS_HEADER)
    if header:
        tags += [t.strip() for t in header.split(",") if t.strip()]
    tags = list(dict.fromkeys(tags))
    if len(tags) > MAX_TAGS:
        raise BadRequestError(f"A call may carry at most {MAX_TAGS} tags; {len(tags)} were sent.", param="tags",
                              code="too_many_tags")
    if any(len(tag) > MAX_TAG_LENGTH for tag in tags):
        raise BadRequestError(f"A tag may be at most {MAX_TAG_LENGTH} characters long.", param="tags",
                              code="invalid_tag")
    if call.principal is not None:
        tags += list(call.principal.tags)
    _refuse_unstorable(tags, "tags")
    call.tags = list(dict.fromkeys(tags))  # merged, first occurrence wins, order kept

    if "guardrails" in params and not settings.guardrails:
        # Without this, a client would believe a guardrail it named protects the call.
        raise BadRequestError("This gateway has no guardrails configured; 'guardrails' names none of them.",
                              param="guardrails", code="unknown_guardrail")

    if settings.dheera_ai_settings.get("drop_params"):
        # Read by providers through dheera_ai.providers.drop_params (a deployment may override it).
        params["drop_params"] = True



def _refuse_unstorable(value, what: str) -> None:
    problem = storable.problem(value, what)
    if problem:
        raise BadRequestError(problem, param=what, code="unstorable_value")
