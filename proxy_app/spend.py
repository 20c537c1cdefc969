"""Spend and limits on every call: the plugin object `create_app` registers (it needs the store).

Before a call (`dheera_ai_pre_call`, after the other checks): rate limits are counted
(`proxy_app.limits`) and budgets reserved in the store (an estimate of the call's cost), so a
call over either is refused before it reaches a provider. After it (the post-call hooks, which
never raise): the cost is priced from the usage the upstream reported, the row is appended to the
local spool before the answer finishes, and a background writer moves spooled rows into the store
in batches, where each row is stored once and settles its reservations.
"""

from __future__ import annotations

import logging
import math
import os
import re
import sqlite3
import threading
import time
import uuid

import orjson

from dheera_ai import hookimpl, ids
from dheera_ai.cost import Cost, PriceTable
from dheera_ai.errors import BadRequestError, BudgetExceededError, RateLimitError
from dheera_ai.redact import redact
from dheera_ai.storable import storable_json
from dheera_ai.types import Usage
from proxy_app import turns
from proxy_app.limits import UNLIMITED, Admission, LocalLimiter, RedisLimiter, Scope
from proxy_app.spool import Spool, SpoolFullError
from proxy_app.store import StoreUnavailableError
from proxy_app.virtual_keys import parse_duration

log = logging.getLogger("dheera_ai.spend")

FLUSH_SECONDS = 0.5
# Rows per store transaction of the batch writer, each followed by a turn for the calls in flight
# (`turns`): ~100 SQLite inserts hold a gevent worker's loop ~2.5 ms, where a whole half second's
# rows (~400 at 800 calls/s) held it ~10 ms and showed in every call's p99 (chat c=8: 26 -> 18 ms).
WRITER_BATCH_ROWS = 100
# A reservation for a call that does not say how long its answer may be.
DEFAULT_COMPLETION_ESTIMATE = 1024
# The longest answer an estimate assumes for a model whose model_info names no bound (the largest
# any current model offers); a client's own number never goes beyond its model's bound.
DEFAULT_MAX_OUTPUT_TOKENS = 128_000
# The body fields that bound an answer's length, per call type: only fields its request schema
# validates (a positive integer), so a client cannot move a budget hold with an unchecked one.
ANSWER_BOUNDS = {"chat_completions": ("max_completion_tokens", "max_tokens"), "completions": ("max_tokens",),
                 "responses": ("max_output_tokens",), "anthropic_messages": ("max_tokens",)}
SCOPE_IDS = (("key", "key_hash"), ("user", "user_id"), ("team", "team_id"))
_SECRET_NAME = re.compile(r"key|secret|token|password|authorization|credential", re.IGNORECASE)


class SpendTracker:
    def __init__(self, store, config, files_dir: str):
        self.store = store
        self.config = config
        settings = config.general_settings
        self.prices = PriceTable.load(settings.get("model_prices_path"))
        self.spool = Spool(os.path.join(files_dir, "dheera_ai-spool"),
                           max_bytes=int(float(settings.get("spend_spool_max_mb", 256)) * 1024 * 1024))
        local = LocalLimiter(os.path.join(files_dir, "dheera_ai-limits.sqlite3"))
        redis_url = settings.get("redis_url")
        self.limiter = RedisLimiter(redis_url, settings.get("redis_key_prefix", "dheera_ai:"), local) \
            if redis_url else local
        self.flush_seconds = float(settings.get("spend_flush_seconds", FLUSH_SECONDS))
        self.budget_fail_closed = bool(settings.get("budget_fail_closed"))
        self._groups = {}
        for deployment in config.deployments:
            self._groups.setdefault(deployment.model_name, deployment)
        self._held: dict[int, _Held] = {}  # id(call) -> what its pre-call took
        self._drain_lock = threading.Lock()
        self._writer_pid = None
        self._stop = threading.Event()
        self._last_store_warning = 0.0
        self.on_row_dropped = lambda call: None  # the metrics count them (create_app connects it)

    # -- before the call -------------------------------------------------------------------------

    @hookimpl(trylast=True)
    def dheera_ai_pre_call(self, call, settings):
        principal = call.principal
        if principal is None:
            return
        owners = principal.scoped_limits or ({"key": principal.limits} if principal.limits else {})
        if not owners and not principal.metadata:
            return
        now = time.time()
        held = _Held()
        self._held[id(call)] = held  # the post-call hooks give back whatever it ends up holding
        self._count_rate(call, held, list(self._owners(principal, owners)), now)
        self._hold_budget(call, held, list(self._owners(principal, owners)), now)

    def _count_rate(self, call, held, owners, now) -> None:
        """Count the call against every rate limit that applies; a 429 if one is reached."""
        names = ("rpm_limit", "tpm_limit", "max_parallel_requests")
        scopes = [Scope(f"{scope}:{ident}", *(_limit(limits, n) for n in names))
                  for scope, ident, limits in owners if any(n in limits for n in names)]
        scopes += _model_scopes(call.principal, call.model)
        if not scopes:
            return
        verdict = self.limiter.acquire(held.token, scopes, now)
        if isinstance(verdict, Admission):
            held.scopes, held.backend = scopes, verdict.backend
            call.response_headers.update(_rate_headers(verdict.remaining_requests, verdict.remaining_tokens,
                                                       verdict.reset_seconds))
            return
        headers = _rate_headers(verdict.remaining_requests, verdict.remaining_tokens, verdict.retry_after)
        headers["Retry-After"] = str(max(1, math.ceil(verdict.retry_after)))
        call.response_headers.update(headers)
        raise RateLimitError(f"Rate limit reached for {_scope_label(verdict.scope)}: {verdict.limit} is "
                             f"{verdict.value}; retry in {headers['Retry-After']} s.", code="rate_limit_exceeded",
                             headers=headers)

    def _hold_budget(self, call, held, owners, now) -> None:
        """Hold the call's estimated cost against every budget that applies; a 400 if one is spent."""
        checks = [(scope, ident, _window(limits, now), float(limits["max_budget"]))
                  for scope, ident, limits in owners if limits.get("max_budget") is not None]
        if not checks:
            return
        deployment = self._groups.get(call.model)
        estimate = self._estimate(call, deployment)
        if not estimate.priced and self.budget_fail_closed:
            raise BudgetExceededError(
                f"This call is under a budget and its cost cannot be priced "
                f"({estimate.error or 'no price is known for its model'}); general_settings.budget_fail_closed "
                f"refuses such calls.", code="budget_unpriced")
        hold_id = uuid.uuid4().hex
        if not self._reserve(hold_id, checks, estimate.amount, now):
            return
        held.hold_id, held.checks, held.estimate = hold_id, checks, estimate.amount
        held.budgets = [(scope, ident, window, hold_id) for scope, ident, window, _ in checks]

    def _reserve(self, hold_id, checks, estimate, now) -> bool:
        """Hold `estimate` against each budget (replacing what `hold_id` held); a 400 if one is
        spent, False if the store is down (budgets then go unenforced)."""
        try:
            refusal = self.store.reserve_budget(hold_id, [(*c, estimate) for c in checks], now)
        except StoreUnavailableError as exc:
            self._store_warning(f"{exc.message}; budgets are not enforced until it answers")
            return False
        if refusal is not None:
            raise BudgetExceededError(
                f"Budget exceeded for {refusal.scope} {_shown(refusal.scope, refusal.scope_id)}: spend "
                f"${refusal.spent:.6f} (+${refusal.reserved:.6f} held by calls in flight), "
                f"max_budget ${refusal.budget:.6f}.", code="budget_exceeded")
        return True

    @hookimpl
    def dheera_ai_pre_attempt(self, call, deployment):
        """Each attempt's deployment (a fallback's may cost more) fits the call's budgets."""
        held = self._held.get(id(call))
        if held is None or not held.checks:
            return
        if deployment.from_client and self.prices.prices_for(deployment) is None:
            raise BadRequestError(
                f"Model '{deployment.model}' ({deployment.provider}) has no price on this gateway, and a budget "
                "applies to this call: its cost could not be counted against it.", param="model",
                code="unpriced_model_under_budget")
        estimate = self._estimate(call, deployment).amount
        if estimate > held.estimate:
            self._reserve(held.hold_id, held.checks, estimate, time.time())
            held.estimate = estimate

    def _owners(self, principal, owners):
        for scope, attribute in SCOPE_IDS:
            ident = getattr(principal, attribute) or (principal.kind if scope == "key" else None)
            if scope in owners and ident:
                yield scope, ident, owners[scope]

    def _estimate(self, call, deployment) -> Cost:
        """An upper-ish guess of the call's cost on `deployment`: its body as prompt, the answer
        bound it asked for (or 1,024 tokens) as answer; each within the model's own bounds.
        Never raises: what cannot be priced is unpriced, with the reason."""
        if deployment is None:
            return Cost(0.0, False)
        try:
            body, info = call.body, deployment.model_info
            prompt = _bounded(len(orjson.dumps(body)) // 4, info.get("max_input_tokens"), None)
            asked = next((body[name] for name in ANSWER_BOUNDS.get(call.call_type, ())
                          if body.get(name) is not None), DEFAULT_COMPLETION_ESTIMATE)
            if isinstance(asked, bool) or not isinstance(asked, int):
                asked = DEFAULT_COMPLETION_ESTIMATE
            completion = _bounded(asked, info.get("max_output_tokens") or info.get("max_tokens"),
                                  DEFAULT_MAX_OUTPUT_TOKENS)
            estimate = self.prices.cost(deployment, Usage(prompt, completion, prompt + completion), body)
        except Exception as exc:  # noqa: BLE001 - a budget check must not turn into a 500
            estimate = Cost(0.0, False, f"estimating the cost failed: {type(exc).__name__}: {exc}")
        if estimate.error:
            log.error("call %s: %s; its budget hold counts the prices that could be read", call.call_id,
                      redact(estimate.error))
        return estimate

    # -- after the call --------------------------------------------------------------------------

    @hookimpl
    def dheera_ai_post_call_success(self, call, outcome):
        self._record(call, outcome)

    @hookimpl
    def dheera_ai_post_call_failure(self, call, outcome):
        self._record(call, outcome)

    def record(self, call, outcome, row_id: str) -> None:
        """The row of a call the pipeline never ran (a forwarded batch's line, answered by its
        provider), under `row_id`: recorded again, it is still one row, counted once. Its cost
        counts against the budgets of its key, user and team as a live call's does."""
        principal = call.principal
        if principal is not None:
            owners = principal.scoped_limits or ({"key": principal.limits} if principal.limits else {})
            now = time.time()
            held = _Held()
            # No hold to settle: the provider has answered already (None matches no hold).
            held.budgets = [(scope, ident, _window(limits, now), None)
                            for scope, ident, limits in self._owners(principal, owners)
                            if limits.get("max_budget") is not None]
            self._held[id(call)] = held
        self._record(call, outcome, row_id)

    def _record(self, call, outcome, row_id: str | None = None) -> None:
        """Give back what the call held and spool its row. Whatever goes wrong on the way (a price
        that is not a number, usage or tags of an unexpected shape from a plugin) is written on the
        row (`record_error`, `priced: false`, no cost) and logged: the row is never lost for it."""
        held = self._held.pop(id(call), None) or _Held()
        problems: list[str] = []
        try:
            usage, estimated = self._usage(call, outcome)
            tokens = int(usage.total_tokens) if usage else 0
        except Exception as exc:  # noqa: BLE001
            problems.append(f"reading the usage failed: {type(exc).__name__}: {exc}")
            usage, estimated, tokens = None, False, 0
        if held.scopes:
            try:
                self.limiter.release(held.token, held.scopes, tokens, time.time(), backend=held.backend)
            except Exception:  # noqa: BLE001 - an in-flight mark left behind expires on its own
                log.exception("releasing the rate-limit slot of call %s failed", call.call_id)
        cost = Cost(0.0, True)
        if usage is None and call.call_type == "pass_through":
            # A native answer without usage (a token count, a file, another service's): its cost is
            # unknown, unless the endpoint says what a call costs (`cost_per_request`).
            per_request = call.deployment.model_info.get("cost_per_request") if call.deployment else None
            cost = Cost(0.0, False) if per_request is None else Cost(float(per_request), True)
        if call.deployment is not None and usage is not None:
            try:
                cost = self.prices.cost(call.deployment, usage, call.body)
            except Exception as exc:  # noqa: BLE001
                cost = Cost(0.0, False, f"pricing failed: {type(exc).__name__}: {exc}")
            if cost.error:
                problems.append(cost.error)
            if call.price_factor != 1.0:
                cost = Cost(cost.amount * call.price_factor, cost.priced, cost.error)
        cache = call.cache
        if cache is not None and cache.saved_usage is not None and call.deployment is not None:
            # A cache hit cost nothing (no budget is charged); it saved what the upstream would have cost.
            try:
                same = cache.saved_usage is usage and not cost.error  # priced just above: once is enough
                saved = cost if same else self.prices.cost(call.deployment, cache.saved_usage, call.body)
                cache.saved_cost = saved.amount
            except Exception as exc:  # noqa: BLE001
                problems.append(f"pricing the cache's saving failed: {type(exc).__name__}: {exc}")
            if cache.result == "hit":
                cost = Cost(0.0, cost.priced, cost.error)
        priced = cost.priced and not problems
        amount = cost.amount if priced or not problems else None
        call.cost = amount if priced else None
        if outcome.error is None and amount is not None:
            call.response_headers["x-dheera-ai-response-cost"] = repr(amount)
        # Budgets fail safe: a call that could not be priced counts at what could be (else its hold).
        counted = amount if amount is not None else (cost.amount or held.estimate)
        row = self._row(call, outcome, usage, amount, priced, estimated, held.budgets, problems)
        row["budget_cost"] = counted
        if row_id is not None:
            row["row_id"] = row_id
        if problems:
            row["record_error"] = redact("; ".join(problems))[:2000]
            log.error("spend row of call %s written with what could be recorded: %s", call.call_id,
                      row["record_error"])
        try:
            self._spool(row)
        except (SpoolFullError, OSError, orjson.JSONEncodeError) as exc:  # full, the disk refused, unencodable
            log.error("spend row of call %s lost: %s", call.call_id, exc)
            self.on_row_dropped(call)
            self._release_budget(held.hold_id)
            return
        self._ensure_writer()

    def _usage(self, call, outcome) -> tuple[Usage | None, bool]:
        usage = outcome.usage
        # A stream that ended without usage (the client left, or it failed part-way) is billed for
        # what reached the client.
        if call.stream and call.delivered and (usage is None or not usage.completion_tokens):
            return _estimated_usage(call), True
        return usage, False

    def _spool(self, row: dict) -> None:
        try:
            self.spool.append_encoded(storable_json(row))
        except TypeError as exc:  # orjson: a plugin's metadata or tags hold something JSON cannot say
            problem = f"metadata or tags not storable as JSON ({exc}); kept as text"
            row["record_error"] = "; ".join(filter(None, (row.get("record_error"), problem)))
            log.error("spend row of call %s: %s", row["request_id"], problem)
            row["tags"] = [str(t) for t in row["tags"]]
            row["metadata"] = {"unstorable": repr(row["metadata"])[:2000]}
            self.spool.append_encoded(storable_json(row))

    def _row(self, call, outcome, usage, cost, priced, estimated, budgets, problems) -> dict:
        principal, deployment, error = call.principal, call.deployment, outcome.error
        end = time.time()
        try:
            tags = [t if isinstance(t, str) else str(t) for t in call.tags or ()]
        except TypeError as exc:
            problems.append(f"tags unreadable: {exc}")
            tags = []
        try:
            metadata = _redacted(call.metadata) if isinstance(call.metadata, dict) else {}
        except Exception as exc:  # noqa: BLE001
            problems.append(f"metadata unreadable: {type(exc).__name__}: {exc}")
            metadata = {}
        return {
            "row_id": ids.row_id(), "request_id": call.call_id,
            "client_call_id": call.client_call_id, "call_type": call.call_type,
            "key_hash": principal.key_hash if principal else None,
            "key_alias": principal.key_alias if principal else None,
            "user_id": principal.user_id if principal else None, "team_id": principal.team_id if principal else None,
            "model_group": deployment.model_name if deployment else call.model,
            "deployment": deployment.id if deployment else None,
            "provider": deployment.provider if deployment else None,
            "prompt_tokens": _tokens(usage, "prompt_tokens"),
            "completion_tokens": _tokens(usage, "completion_tokens"),
            "total_tokens": _tokens(usage, "total_tokens"),
            "cost": cost, "priced": priced, "usage_estimated": estimated, "tags": tags,
            "metadata": metadata, "status": outcome.status,
            "error_type": type(error).__name__ if error is not None else None,
            "stream": call.stream, "stream_cut": outcome.stream_cut,
            "cache_hit": call.cache is not None and call.cache.result == "hit",
            "saved_cost": (call.cache.saved_cost or 0.0) if call.cache is not None else 0.0,
            "retries": call.attempted_retries, "fallbacks": call.attempted_fallbacks,
            "start_time": call.start_time, "end_time": end, "latency_ms": round(outcome.latency_seconds * 1000, 3),
            "response_id": usage.response_id if usage else None,
            "budgets": budgets, "guardrails": list(call.guardrails),
        }

    def _release_budget(self, hold_id) -> None:
        if hold_id:
            try:
                self.store.release_budget(hold_id)
            except StoreUnavailableError as exc:
                log.error("could not release budget reservations: %s", exc.message)

    # -- the batch writer ------------------------------------------------------------------------

    def flush(self) -> int:
        """Move spooled rows into the store now; returns the rows handed over. Raises if the store is down."""
        with self._drain_lock:
            return self.spool.drain(self.store.record_spend, batch_rows=WRITER_BATCH_ROWS, poisoned=_about_the_rows,
                                    pause=turns.take_turn)

    def _ensure_writer(self) -> None:
        if self._writer_pid == os.getpid():
            return
        self._writer_pid = os.getpid()
        self._stop = threading.Event()
        threading.Thread(target=self._write_forever, daemon=True, name="dheera_ai-spend-writer").start()

    def start(self) -> None:
        """Start the writer now (it also starts on the first call): rows a dead worker left are replayed."""
        self._ensure_writer()

    def _write_forever(self) -> None:
        # First round at once: a worker that died left rows in its spool file for us.
        while True:
            try:
                self.flush()
            except StoreUnavailableError as exc:
                self._store_warning(f"{exc.message}; spend rows wait in the spool "
                                    f"({self.spool.pending_bytes()} bytes)")
            except Exception:  # noqa: BLE001 - the rows stay in the spool; the next round retries
                log.exception("writing spend rows failed; they stay in the spool")
            if self._stop.wait(self.flush_seconds):
                return

    def _store_warning(self, message: str) -> None:
        if time.time() - self._last_store_warning > 30:
            self._last_store_warning = time.time()
            log.warning(message)

    def health(self) -> dict:
        return {"spool_pending_bytes": self.spool.pending_bytes(), "spool_max_bytes": self.spool.max_bytes,
                "spool_quarantined_rows": self.spool.quarantined_rows(), "rate_limits": self.limiter.health()}

    def close(self) -> None:
        self._stop.set()
        self.limiter.close()


class _Held:
    """What a call's pre-call took: rate-limit scopes (and where) and budget reservations."""

    def __init__(self):
        # Marks the call in flight; not the call id, which a client may choose (and reuse to share a slot).
        self.token = uuid.uuid4().hex
        self.scopes: list[Scope] = []
        self.backend = "local"
        self.hold_id: str | None = None
        self.estimate = 0.0  # what the budget holds are for
        self.budgets: list[tuple] = []  # (scope, id, window start, hold id), settled by the spend row
        self.checks: list[tuple] = []  # (scope, id, window start, budget) the hold was taken against
        self.estimate = 0.0  # what the hold is


def _bounded(tokens: int, bound, default: int | None) -> int:
    """`tokens` within [0, the model's bound]; a bound that is not a positive integer is `default`."""
    if isinstance(bound, bool) or not isinstance(bound, int) or bound <= 0:
        bound = default
    tokens = max(tokens, 0)
    return tokens if bound is None else min(tokens, bound)


def _about_the_rows(exc: Exception) -> bool:
    """Whether the store's refusal of a batch is about what is in it (a value it cannot take),
    not about the store (down, locked, busy: then the rows wait in the spool for it)."""
    return not isinstance(exc, (StoreUnavailableError, sqlite3.OperationalError, OSError))


def _tokens(usage, name: str) -> int:
    """A token count of the usage, 0 when there is none or it is not a number."""
    try:
        return int(getattr(usage, name, 0) or 0)
    except (TypeError, ValueError):
        return 0


def _limit(limits: dict, name: str) -> int:
    value = limits.get(name)
    return UNLIMITED if value is None else int(value)


def _model_scopes(principal, model: str) -> list[Scope]:
    """A key's limits for one model, as LiteLLM spells them in the key's metadata:
    `model_rpm_limit: {"gpt-4o": 10}`, `model_tpm_limit: {"gpt-4o": 20000}`."""
    limits = [principal.metadata.get(name) for name in ("model_rpm_limit", "model_tpm_limit")]
    values = [lim.get(model) if isinstance(lim, dict) else None for lim in limits]
    if not any(isinstance(v, int) for v in values):
        return []
    rpm, tpm = (v if isinstance(v, int) else UNLIMITED for v in values)
    return [Scope(f"key:{principal.key_hash or principal.kind}:model:{model}", rpm, tpm)]


def _window(limits: dict, now: float) -> float:
    """Where the current budget window began: windows of `budget_duration` counted from the epoch
    (so "1d" resets at 00:00 UTC); 0 for a budget that never resets."""
    duration = limits.get("budget_duration")
    if not duration:
        return 0.0
    seconds = parse_duration(duration)
    return float(now // seconds * seconds)


def _scope_label(name: str) -> str:
    """'team:eng' -> 'team eng'; a key is named by its kind only, a per-model scope with its model."""
    parts = name.split(":")
    if parts[0] == "key":
        return f"this key, model {parts[3]}" if len(parts) > 3 else "this key"
    return f"{parts[0]} {':'.join(parts[1:])}"


def _shown(scope: str, ident: str) -> str:
    return f"{ident[:8]}..." if scope == "key" and len(ident) > 16 else ident


def _rate_headers(requests, tokens, reset) -> dict:
    headers = {}
    reset = f"{max(reset, 0):.0f}s"
    if requests is not None:
        headers["x-ratelimit-remaining-requests"] = str(requests)
        headers["x-ratelimit-reset-requests"] = reset
    if tokens is not None:
        headers["x-ratelimit-remaining-tokens"] = str(tokens)
        headers["x-ratelimit-reset-tokens"] = reset
    return headers


def _redacted(value):
    if isinstance(value, dict):
        return {k: "[redacted]" if _SECRET_NAME.search(str(k)) else _redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    return value


def _estimated_usage(call) -> Usage:
    """Tokens for a stream that ended without usage: about four characters a token, counted from
    the text relayed to the client and the request's own text."""
    text = []
    for chunk in call.delivered:
        for line in chunk.split(b"\n"):
            if line.startswith(b"data:") and line[5:].strip() not in (b"", b"[DONE]"):
                try:
                    _collect_text(orjson.loads(line[5:]), text)
                except orjson.JSONDecodeError:
                    continue
    completion = math.ceil(sum(len(t) for t in text) / 4)
    body = call.body
    prompt = math.ceil(len(orjson.dumps(body.get("messages") or body.get("prompt") or body.get("input") or ""))
                       / 4)
    return Usage(prompt, completion, prompt + completion, {"estimated": True})


def _collect_text(event, text: list) -> None:
    """The generated text in one event of OpenAI's chat or completions, Anthropic's or Responses' streams."""
    if not isinstance(event, dict):
        return
    for choice in event.get("choices") or ():
        if isinstance(choice, dict):
            delta = choice.get("delta") or {}
            for value in (delta.get("content") if isinstance(delta, dict) else None, choice.get("text")):
                if isinstance(value, str):
                    text.append(value)
    delta = event.get("delta")
    if isinstance(delta, dict) and isinstance(delta.get("text"), str):
        text.append(delta["text"])  # Anthropic content_block_delta
    elif isinstance(delta, str) and str(event.get("type", "")).endswith("output_text.delta"):
        text.append(delta)
