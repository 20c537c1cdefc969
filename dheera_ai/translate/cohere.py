"""Translate the gateway's Cohere-shaped rerank and embed traffic to and from Cohere's API.
Pure functions over JSON dicts: no I/O, no HTTP.

The gateway's ``/rerank``, ``/v1/rerank`` and ``/v2/rerank`` accept Cohere's request shape and
answer Cohere's response shape, whatever upstream API version serves them. Upstream calls are
``POST https://api.cohere.com/v1/rerank`` or ``/v2/rerank`` and ``/v1/embed`` or ``/v2/embed``
with ``Authorization: Bearer <key>``. Shapes follow Cohere's v1 and v2 OpenAPI references, the
Rerank 3.5 changelog (v2 rerank takes strings only) and docs.cohere.com/reference/errors.
"""

from __future__ import annotations

import json
import re
import uuid

from dheera_ai.translate import TranslationError, client_input

CohereParamError = TranslationError


class RerankRequestError(CohereParamError):
    """A rerank request that is not valid Cohere-shaped input."""


_POSITIVE_INTS = ("top_n", "max_chunks_per_doc", "max_tokens_per_doc")


def validate_rerank_request(body: dict) -> dict:
    """Check a Cohere-shaped rerank request and return its normalized fields.

    The result holds ``query``, ``documents`` and ``return_documents`` (default false, as in
    Cohere v1), plus ``model``, ``top_n``, ``rank_fields``, ``max_chunks_per_doc`` and
    ``max_tokens_per_doc`` when given; unknown fields are dropped. Documents may be strings or
    non-empty objects (``{"text": ...}`` or any structured record). Raises
    ``RerankRequestError(param, message)``.
    """
    if not isinstance(body, dict):
        raise RerankRequestError("body", "the request body must be a JSON object")
    query = body.get("query")
    if not isinstance(query, str) or not query.strip():
        raise RerankRequestError("query", "query must be a non-empty string")
    docs = body.get("documents")
    if not isinstance(docs, list) or not docs:
        raise RerankRequestError("documents", "documents must be a non-empty list")
    for i, doc in enumerate(docs):
        if not (isinstance(doc, str) or (isinstance(doc, dict) and doc)):
            raise RerankRequestError("documents",
                                     f"documents[{i}] must be a string or a non-empty object")
    returning = body.get("return_documents")
    if returning is not None and not isinstance(returning, bool):
        raise RerankRequestError("return_documents", "return_documents must be a boolean")
    out = {"query": query, "documents": docs, "return_documents": bool(returning)}
    for key in _POSITIVE_INTS:
        value = body.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise RerankRequestError(key, f"{key} must be an integer of at least 1")
        out[key] = value
    fields = body.get("rank_fields")
    if fields is not None:
        if not isinstance(fields, list) or not fields or not all(
                isinstance(f, str) and f for f in fields):
            raise RerankRequestError("rank_fields", "rank_fields must be a list of field names")
        out["rank_fields"] = fields
    model = body.get("model")
    if model is not None:
        if not isinstance(model, str) or not model:
            raise RerankRequestError("model", "model must be a non-empty string")
        out["model"] = model
    return out


def _document_text(doc: dict, fields: list | None) -> str:
    """An object document as the YAML-style text Cohere recommends for structured data.

    ``rank_fields`` pick and order the keys (all keys otherwise); a lone ``text`` field is sent
    as-is. Non-string values are written as JSON, which YAML reads as flow style.
    """
    keys = [k for k in fields if k in doc] if fields else []
    keys = keys or list(doc)
    if keys == ["text"] and isinstance(doc["text"], str):
        return doc["text"]
    lines = []
    for key in keys:
        value = doc[key]
        if isinstance(value, str) and "\n" in value:  # a block scalar keeps line breaks readable
            lines.append(f"{key}: |")
            lines.extend(f"  {line}" for line in value.split("\n"))
        else:
            text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            lines.append(f"{key}: {text}")
    return "\n".join(lines)


@client_input
def rerank_request_for_cohere(body: dict, model: str, api_version: int) -> dict:
    """The upstream rerank body for Cohere's v1 or v2 API.

    v1 takes object documents and ``rank_fields`` itself, so objects pass through, except that
    one without a string ``text`` and no ``rank_fields`` (which v1 would reject) is sent as
    YAML-style text. v2 takes strings only: every object becomes YAML-style text built from
    its ``rank_fields`` (or all of its fields). Neither version is asked to echo documents back:
    ``rerank_response_from_cohere`` re-attaches the originals, which v2 cannot return at all.
    v1 has no ``max_tokens_per_doc`` and v2 replaced ``max_chunks_per_doc`` with it, so each
    version gets only its own knob. ``body`` may be raw; it is validated here.
    """
    req = validate_rerank_request(body)
    docs, fields = req["documents"], req.get("rank_fields")
    out: dict = {"model": model, "query": req["query"]}
    if api_version == 1:
        out["documents"] = [
            d if isinstance(d, str) or fields or isinstance(d.get("text"), str)
            else _document_text(d, None) for d in docs]
        if fields:
            out["rank_fields"] = fields
        out["return_documents"] = False
        if "max_chunks_per_doc" in req:
            out["max_chunks_per_doc"] = req["max_chunks_per_doc"]
    elif api_version == 2:
        out["documents"] = [d if isinstance(d, str) else _document_text(d, fields) for d in docs]
        if "max_tokens_per_doc" in req:
            out["max_tokens_per_doc"] = req["max_tokens_per_doc"]
    else:
        raise ValueError(f"unknown Cohere API version {api_version!r}")
    if "top_n" in req:  # asking for more results than documents is pointless, maybe an error
        out["top_n"] = min(req["top_n"], len(docs))
    return out


def rerank_usage(resp: dict) -> dict:
    """``{"search_units": n}`` from ``meta.billed_units``; 0 when upstream reports none."""
    units = ((resp.get("meta") or {}).get("billed_units") or {}).get("search_units") or 0
    return {"search_units": int(units)}  # the spec types it as a double; it counts whole units


def rerank_response_from_cohere(resp: dict, request: dict) -> dict:
    """Normalize a v1 or v2 rerank answer to the gateway's Cohere-shaped response.

    Results come most relevant first and at most ``top_n`` long. With ``return_documents``
    each carries its original document: ``{"text": ...}`` for a string, the object itself
    for an object document (as Cohere v1 returned them). ``request`` is the client's request.
    """
    req = validate_rerank_request(request)
    docs = req["documents"]
    ranked = sorted(resp.get("results") or [], key=lambda r: r["relevance_score"], reverse=True)
    results = []
    for item in ranked[:req.get("top_n")]:
        index = item["index"]
        if not isinstance(index, int) or not 0 <= index < len(docs):
            raise ValueError(f"Cohere ranked document {index!r} but only {len(docs)} were sent")
        result = {"index": index, "relevance_score": item["relevance_score"]}
        if req["return_documents"]:
            doc = docs[index]
            result["document"] = {"text": doc} if isinstance(doc, str) else doc
        results.append(result)
    version = ((resp.get("meta") or {}).get("api_version") or {}).get("version") or "2"
    return {"id": resp.get("id") or str(uuid.uuid4()), "results": results,
            "meta": {"api_version": {"version": str(version)}, "billed_units": rerank_usage(resp)}}


def embed_request_for_cohere(inputs: list[str], model: str, input_type: str | None = None,
                             dimensions: int | None = None, encoding_format: str | None = None,
                             api_version: int = 2) -> dict:
    """The upstream embed body for Cohere's v1 or v2 API.

    ``input_type`` defaults to ``search_document``: v2 requires it, v1 requires it for v3+
    models, and documents to index are what an OpenAI-style ``/embeddings`` call usually
    holds. Floats are always requested; OpenAI's ``base64`` (packed little-endian float32) is
    encoded by the gateway from them. ``dimensions`` maps to v2's ``output_dimension``; v1 has
    no equivalent. Cohere takes at most 96 texts per call, so the caller batches.
    """
    if encoding_format not in (None, "float", "base64"):
        raise CohereParamError("encoding_format", "encoding_format must be 'float' or 'base64'")
    if not inputs or not all(isinstance(t, str) for t in inputs):
        raise CohereParamError("input", "input must be a non-empty list of strings")
    if api_version not in (1, 2):
        raise ValueError(f"unknown Cohere API version {api_version!r}")
    # truncate=END is Cohere's default, stated so long inputs keep working if it ever changes.
    out: dict = {"texts": list(inputs), "model": model,
                 "input_type": input_type or "search_document",
                 "embedding_types": ["float"], "truncate": "END"}
    if dimensions is not None:
        if api_version == 1:
            raise CohereParamError("dimensions", "dimensions needs Cohere's v2 embed API")
        out["output_dimension"] = dimensions
    return out


def cohere_embed_to_openai(resp: dict, model: str) -> dict:
    """A v1 or v2 embed answer in the OpenAI embedding list shape.

    v1 returns ``embeddings`` as a list of vectors (``embeddings_floats``) or, when
    ``embedding_types`` is sent, as ``{"float": [...]}``; v2 always uses the latter. Token
    usage comes from ``meta.billed_units.input_tokens``.
    """
    vectors = resp.get("embeddings")
    if isinstance(vectors, dict):
        vectors = vectors.get("float")
    if not isinstance(vectors, list):
        raise ValueError("Cohere's embed response has no float embeddings")
    tokens = int(((resp.get("meta") or {}).get("billed_units") or {}).get("input_tokens") or 0)
    return {"object": "list", "model": model,
            "data": [{"object": "embedding", "index": i, "embedding": v}
                     for i, v in enumerate(vectors)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


# Cohere's documented statuses. 402 is an unpaid bill: this key may not call, another can.
# 498 means a deny-listed token in the request or answer; 499 a request cancelled mid-way.
_BY_HTTP = {400: "bad_request", 401: "authentication", 402: "permission", 403: "permission",
            404: "not_found", 408: "timeout", 422: "bad_request", 429: "rate_limit",
            498: "content_policy", 499: "timeout", 501: "bad_request", 502: "unavailable",
            503: "unavailable", 504: "timeout"}
# "too many tokens: total number of tokens in the prompt cannot exceed 4081 - received 4292"
_TOKEN_LIMIT = re.compile(r"too many tokens(?!: max tokens)|context (length|window)"
                          r"|exceeds? the (maximum|limit)", re.I)


def cohere_error_to_status(body: dict, http_status: int) -> tuple[str, str]:
    """(error class, message) from Cohere's ``{"message": ...}`` error body."""
    body = body if isinstance(body, dict) else {}
    message = str(body.get("message") or body.get("detail") or "")
    message = message or f"Cohere API error (HTTP {http_status})"
    if http_status in (400, 422) and _TOKEN_LIMIT.search(message):
        return "context_window", message
    if re.search(r"invalid api token|no api key|api key has expired", message, re.I):
        return "authentication", message
    kind = _BY_HTTP.get(http_status)
    return kind or ("server" if http_status >= 500 else "bad_request"), message
