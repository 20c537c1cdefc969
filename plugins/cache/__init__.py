"""The response cache: an exact cache of model answers, in memory or shared through Redis.

A plugin on the dispatch hook, registered by `create_app` only when the config turns it on
(`dheera_ai_settings.cache: true`), so a gateway without it pays nothing. Three hooks:

- pre-call reads what the request, its key and its team say (`cache: {"no-cache": true, ...}`,
  `Cache-Control`), and refuses a malformed `cache` object with a 400;
- dispatch, first of all implementations, answers a hit, so it never reaches the upstream (the
  attempt is still routed: the key names the chosen deployment's model group);
- a wrapper around dispatch keeps a fresh answer: a plain one at once, a stream once it ended
  (never one the client left, or that failed), embeddings per input.

Spend logging bills a hit at cost 0 with what it saved (`Call.cache`); the metrics count hits.
With `type: postgres-semantic` a request that misses by key is looked up by its prompt's meaning
too (`plugins.cache.semantic`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import orjson

from dheera_ai import hookimpl
from dheera_ai.errors import BadRequestError, InternalServerError
from dheera_ai.types import CacheOutcome, Reply, Usage
from plugins.cache import answers
from plugins.cache.keys import cache_key, digest, scope_of
from plugins.cache.semantic import Embedder, PostgresSemanticStore, prompt_text, semantic_scope
from plugins.cache.stores import LocalStore, RedisStore

log = logging.getLogger("dheera_ai.cache")

MAX_NAMESPACE = 200


def response_cache(config, pipeline):
    """The cache plugin the config asks for, or None when caching is off. `pipeline` carries out
    the semantic cache's embedding calls."""
    settings = config.dheera_ai_settings
    if not settings.get("cache"):
        return None
    params = settings["cache_params"]
    timeout = params["timeout_ms"] / 1000
    embedder = None
    if params["type"] == "postgres-semantic":
        store = PostgresSemanticStore(params["url"], timeout)
        store.start()
        embedder = Embedder(pipeline, params["semantic_cache_embedding_model"], params["embedding_timeout_ms"] / 1000)
    elif params["type"] == "redis":
        store = RedisStore(params, timeout)
    else:
        store = LocalStore(params["max_bytes"])
    return ResponseCache(params, store, config.general_settings.get("redis_key_prefix", "dheera_ai:"), embedder)


@dataclass
class _Lookup(CacheOutcome):
    """The cache's state for one call: what the request allows, and what each attempt found."""

    no_cache: bool = False
    no_store: bool = False
    ttl: float = 0.0
    max_age: float | None = None
    namespaces: tuple = ()
    answered: bool = False  # this attempt's answer came from the cache
    # Embeddings: the request's inputs, the keys of each, and the cached entries of the hits.
    inputs: list | None = None
    single: bool = False
    keys: list = field(default_factory=list)
    hits: dict = field(default_factory=dict)
    # The semantic cache: what besides the prompt must match (None: look up by key only), the
    # prompt, and its embedding (made once, on the first miss by key; read again when the
    # answer is kept).
    scope: str | None = None
    prompt: str | None = None
    embedding: object = None


class ResponseCache:
    def __init__(self, params: dict, store, prefix: str, embedder=None):
        self.params = params
        self.store = store
        self.prefix = prefix + "cache:"
        self.call_types = frozenset(params["supported_call_types"])
        self.embedder = embedder

    # -- what the request allows -------------------------------------------------------------------

    @hookimpl
    def dheera_ai_pre_call(self, call, settings):
        if call.call_type not in self.call_types or (call.principal and call.principal.kind == "cache"):
            return  # the second: the semantic cache's own embedding call
        asked = _controls(call.gateway_params.get("cache"), "cache")
        if self.params["mode"] == "default_off" and not asked.get("use-cache"):
            return
        # A key's metadata (or, where the key says nothing, its team's): `cache: false`, or
        # `cache: {"no-cache": true}` / `{"no-store": true}`, which its requests cannot undo;
        # `{"namespace": "team-a"}` keeps its answers apart from everyone else's.
        owner = (call.principal.metadata or {}).get("cache") if call.principal else None
        if owner is False or (isinstance(owner, dict) and owner.get("enabled") is False):
            return
        owner = owner if isinstance(owner, dict) else {}
        for name in ("no-cache", "no-store"):
            asked[name] = asked.get(name) or owner.get(name) is True
        _header_controls(call.headers.get("cache-control"), asked)
        if asked.get("no-cache") and asked.get("no-store"):
            return
        ttl = min(float(asked.get("ttl") or self.params["ttl"]), self.params["max_ttl"])
        namespaces = (self.params.get("namespace") or "", str(owner.get("namespace") or ""),
                      asked.get("namespace") or "")
        call.cache = _Lookup("miss", "", no_cache=bool(asked.get("no-cache")), no_store=bool(asked.get("no-store")),
                             ttl=ttl, max_age=asked.get("s-maxage"), namespaces=namespaces)

    # -- answering from the cache ----------------------------------------------------------------------

    @hookimpl(tryfirst=True)
    def dheera_ai_dispatch(self, call, deployment):
        state = call.cache
        if not isinstance(state, _Lookup) or state.no_cache or not state.key:
            return None
        if call.call_type == "embeddings":
            return self._embeddings_hit(call, state)
        raw = self.store.get_many([self.prefix + state.key])[0]
        entry = answers.decode(raw, call.call_type) if raw is not None else None
        similarity = 1.0
        if (entry is None or not self._fresh(entry, state)) and state.scope is not None:
            entry, similarity = self._similar(call, state)
        if entry is None or not self._fresh(entry, state):
            return None
        if self.embedder is not None:
            state.similarity = similarity
            call.response_headers["x-dheera-ai-cache-similarity"] = f"{similarity:.4f}"
        answer = entry["body"]
        usage = Usage.from_openai(answer.get("usage"))
        self._answered(call, state, "hit", usage)
        if call.stream:
            include = bool((call.body.get("stream_options") or {}).get("include_usage")) \
                or call.call_type == "anthropic_messages"
            return Reply(stream=answers.REPLAY[call.call_type](answer, include), content_type="text/event-stream",
                         usage=usage, from_deployment=False)
        return Reply(data=answer, usage=usage, from_deployment=False)

    def _similar(self, call, state: _Lookup) -> tuple[dict | None, float]:
        """The entry of the closest earlier prompt in the scope, if alike enough, and how alike."""
        if state.embedding is None:  # once per call: a retry's prompt is the same
            state.embedding = self.embedder.start(state.prompt, call)
        vector = state.embedding.wait(self.embedder.timeout)
        if vector is None:
            log.debug("call %s: no embedding in time (%s); a miss", call.call_id, state.embedding.error or "waiting")
            return None, 0.0
        found = self.store.nearest(state.scope, vector)
        if found is None or found[1] < self.params["similarity_threshold"]:
            return None, 0.0
        return answers.decode(found[0], call.call_type), found[1]

    def _fresh(self, entry: dict, state: _Lookup) -> bool:
        return state.max_age is None or time.time() - entry["created"] <= state.max_age

    def _answered(self, call, state: _Lookup, result: str, saved: Usage | None) -> None:
        state.result, state.answered, state.saved_usage = result, result == "hit", saved
        call.response_headers["x-dheera-ai-cache-hit"] = "true" if result == "hit" else "false"

    # -- keeping fresh answers ---------------------------------------------------------------------

    @hookimpl(specname="dheera_ai_dispatch", wrapper=True)
    def keep_answer(self, call, deployment):
        state = call.cache
        if not isinstance(state, _Lookup):
            return (yield)
        self._prepare(call, state, deployment)
        try:
            reply = yield
        finally:
            if state.inputs is not None:
                call.body["input"] = state.inputs  # a retry looks up the whole request again
        if state.answered:
            return reply
        if call.call_type == "embeddings":
            return self._merged_embeddings(state, reply)
        if state.no_store or reply.status != 200:
            return reply
        if reply.stream is not None:
            reply.stream = self._kept_stream(call, state, reply, reply.stream)
        else:
            try:
                answer = reply.data if reply.data is not None else orjson.loads(reply.body)
            except (orjson.JSONDecodeError, TypeError):
                return reply
            if isinstance(answer, dict):
                self._keep_answer(state, answers.encode(call.call_type, answer, time.time()))
        return reply

    def _prepare(self, call, state: _Lookup, deployment) -> None:
        """This attempt's key (the deployment decides the model group), headers, a fresh start."""
        scope = scope_of(deployment, self.params["key_scope"])
        state.answered, state.result, state.hits = False, "miss", {}
        call.response_headers["x-dheera-ai-cache-hit"] = "false"
        if call.call_type == "embeddings":
            if state.inputs is None:
                state.inputs = call.body.get("input")
            state.single, items = _input_items(state.inputs)
            state.key = cache_key(state.namespaces, scope, "embeddings", call.body, leave_out={"input"})
            state.keys = [digest(state.key, item) for item in items]
        else:
            state.key = cache_key(state.namespaces, scope, call.call_type, call.body)
            if self.embedder is not None:
                self._prepare_similar(call, state, scope)
        call.response_headers["x-dheera-ai-cache-key"] = state.key

    def _prepare_similar(self, call, state: _Lookup, scope: str) -> None:
        """The scope for this attempt's deployment, and the prompt, when it is plain text."""
        state.prompt = prompt_text(call.call_type, call.body)
        state.scope = None if state.prompt is None else \
            self.prefix + semantic_scope(state.namespaces, scope, call.call_type, call.body)

    def _kept_stream(self, call, state: _Lookup, reply: Reply, stream):
        """Relay the stream; once it has ended, keep it (unless it was too big to keep). An OpenAI
        stream is kept as its `data: [DONE]` arrives, before the client has it: a client that
        asks again as soon as it has read the end finds the answer kept."""
        chunks, size, kept = [], 0, False
        try:
            for chunk in stream:
                if chunks is not None:
                    size += len(chunk)
                    if size > self.params["max_item_bytes"]:
                        chunks = None
                    else:
                        chunks.append(chunk)
                        if chunk.rstrip().endswith(b"data: [DONE]"):
                            self._keep_stream(call, state, reply, chunks)
                            kept = True
                yield chunk
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
        if chunks is not None and not kept:
            self._keep_stream(call, state, reply, chunks)

    def _keep_stream(self, call, state: _Lookup, reply: Reply, chunks: list) -> None:
        usage = _usage_dict(reply.usage)
        try:
            answer = answers.ASSEMBLE[call.call_type](chunks, usage)
        except (answers.NotCacheable, KeyError, TypeError, ValueError) as exc:
            log.debug("call %s: the stream is not kept (%s)", call.call_id, exc)
            return
        self._keep_answer(state, answers.encode(call.call_type, answer, time.time()))

    def _keep_answer(self, state: _Lookup, value: bytes) -> None:
        """One call's answer; with its prompt's embedding, when the semantic cache has it by now."""
        vector = state.embedding.ready if state.embedding is not None and state.scope is not None else None
        if vector is None:
            self._keep([(state.key, value)], state.ttl)
        elif len(value) <= self.params["max_item_bytes"]:
            self.store.set_similar([(self.prefix + state.key, value, state.ttl, state.scope, vector)])

    def _keep(self, items: list[tuple[str, bytes]], ttl: float) -> None:
        limit = self.params["max_item_bytes"]
        kept = [(self.prefix + key, value, ttl) for key, value in items if len(value) <= limit]
        if kept:
            self.store.set_many(kept)

    # -- embeddings, input by input ----------------------------------------------------------------

    def _embeddings_hit(self, call, state: _Lookup):
        raws = self.store.get_many([self.prefix + key for key in state.keys])
        for index, raw in enumerate(raws):
            entry = answers.decode(raw, "embeddings") if raw is not None else None
            if entry is not None and self._fresh(entry, state) and "embedding" in entry["body"]:
                state.hits[index] = entry["body"]
        if not state.hits:
            return None
        saved = sum(int(hit.get("tokens") or 0) for hit in state.hits.values())
        if len(state.hits) < len(state.keys):
            # Only the misses go upstream; the wrapper puts the answer back together.
            self._answered(call, state, "partial", Usage(saved, 0, saved))
            call.body["input"] = [item for index, item in enumerate(_input_items(state.inputs)[1])
                                  if index not in state.hits]
            return None
        self._answered(call, state, "hit", Usage(saved, 0, saved))
        model = next(iter(state.hits.values())).get("model")
        return Reply(data=_embedding_list(state.hits, len(state.keys), model, {"prompt_tokens": 0, "total_tokens": 0}),
                     usage=Usage(0, 0, 0), from_deployment=False)

    def _merged_embeddings(self, state: _Lookup, reply: Reply) -> Reply:
        if reply.status != 200 or reply.stream is not None:
            return reply
        try:
            answer = reply.data if reply.data is not None else orjson.loads(reply.body)
            got = sorted(answer["data"], key=lambda item: item["index"])
        except (orjson.JSONDecodeError, TypeError, KeyError, AttributeError):
            got, answer = None, None
        misses = [index for index in range(len(state.keys)) if index not in state.hits]
        if got is None or len(got) != len(misses):
            if state.hits:
                raise InternalServerError("The upstream answered a different number of embeddings than it was "
                                          "asked for.")
            return reply
        items = _input_items(state.inputs)[1]
        usage = answer.get("usage") or {}
        tokens = _shares(int(usage.get("prompt_tokens") or 0), [_size(items[i]) for i in misses])
        fresh = {}
        for index, item, count in zip(misses, got, tokens, strict=True):
            fresh[index] = {"embedding": item["embedding"], "tokens": count, "model": answer.get("model")}
        if not state.no_store:
            now = time.time()
            self._keep([(state.keys[i], answers.encode("embeddings", fresh[i], now)) for i in misses], state.ttl)
        if not state.hits:
            return reply
        merged = _embedding_list({**state.hits, **fresh}, len(state.keys), answer.get("model"), usage)
        return Reply(status=reply.status, data=merged, headers=reply.headers, usage=reply.usage)


def _controls(asked, where: str) -> dict:
    """A request's `cache` object, checked: LiteLLM's names, each of the right kind."""
    if asked is None:
        return {}
    if not isinstance(asked, dict):
        raise BadRequestError(f"'{where}' must be an object such as {{\"no-cache\": true}}.", param=where)
    out = {}
    for name, value in asked.items():
        if name in ("no-cache", "no-store", "use-cache"):
            if not isinstance(value, bool):
                raise BadRequestError(f"'{where}.{name}' must be true or false.", param=f"{where}.{name}")
        elif name in ("ttl", "s-maxage"):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise BadRequestError(f"'{where}.{name}' must be a number of seconds.", param=f"{where}.{name}")
        elif name == "namespace":
            if not isinstance(value, str) or len(value) > MAX_NAMESPACE:
                raise BadRequestError(f"'{where}.namespace' must be a string of at most {MAX_NAMESPACE} characters.",
                                      param=f"{where}.namespace")
        else:
            continue  # LiteLLM accepts and ignores others
        out[name] = value
    return out


def _header_controls(header: str | None, asked: dict) -> None:
    """`Cache-Control: no-cache`, `no-store`, `max-age=N` (the oldest answer the client accepts)."""
    if not header:
        return
    for part in header.lower().split(","):
        name, _, value = part.strip().partition("=")
        if name in ("no-cache", "no-store"):
            asked[name] = True
        elif name in ("max-age", "s-maxage") and value.strip().isdigit() and "s-maxage" not in asked:
            asked["s-maxage"] = int(value.strip())


def _input_items(raw) -> tuple[bool, list]:
    """(one input?, the inputs): a string or a token list is one input; a list of them is many."""
    if isinstance(raw, str) or (isinstance(raw, list) and raw and all(isinstance(x, int) for x in raw)):
        return True, [raw]
    return False, list(raw) if isinstance(raw, list) else [raw]


def _size(item) -> int:
    return max(len(item) if isinstance(item, (str, list)) else 1, 1)


def _shares(total: int, sizes: list[int]) -> list[int]:
    """`total` tokens split over inputs in proportion to their sizes (upstreams count a batch only)."""
    whole = sum(sizes)
    shares = [total * size // whole for size in sizes]
    if shares:
        shares[-1] += total - sum(shares)
    return shares


def _embedding_list(entries: dict, count: int, model, usage: dict) -> dict:
    return {"object": "list", "model": model, "usage": usage,
            "data": [{"object": "embedding", "index": i, "embedding": entries[i]["embedding"]} for i in range(count)]}


def _usage_dict(usage: Usage | None) -> dict | None:
    if usage is None:
        return None
    return {**usage.details, "prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens}
