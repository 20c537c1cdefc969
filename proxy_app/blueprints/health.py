"""Health probes: liveness (the process answers), readiness (what it depends on), and `/health`
(each deployment checked with the smallest call of its kind, in LiteLLM's shape)."""

from __future__ import annotations

import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

from flask import Blueprint, g, request

import dheera_ai
from dheera_ai.errors import BadRequestError, DheeraAIError
from dheera_ai.redact import redact
from dheera_ai.types import Call
from proxy_app import admin, calls

bp = Blueprint("health", __name__)

# model_info.mode -> the call that checks a deployment of that kind, as small as it can be.
PROBES = {
    "chat": ("chat_completions", {"messages": [{"role": "user", "content": "ping"}], "max_tokens": 1}),
    "completion": ("completions", {"prompt": "ping", "max_tokens": 1}),
    "embedding": ("embeddings", {"input": "ping"}),
    "rerank": ("rerank", {"query": "ping", "documents": ["ping"]}),
    "moderation": ("moderations", {"input": "ping"}),
}
DEFAULT_TIMEOUT = 10.0  # seconds per deployment; `?timeout=` may shorten or lengthen it (up to 60)
PARALLEL_CHECKS = 16


@bp.get("/health/liveliness")
@bp.get("/health/liveness")
def liveness():
    return {"status": "alive"}


@bp.get("/health/readiness")
def readiness():
    engine = calls.engine()
    state = admin.state().health()
    # Known keys keep working from the cache while the store is down, so the instance stays
    # "ready" (taking it out of rotation would refuse them too); the report says what is degraded.
    degraded = state["state_store"]["status"] != "connected" or state.get("redis", {}).get("status") == "unreachable" \
        or state["spend"]["spool_quarantined_rows"] > 0  # spend rows the store refused, kept aside
    return {
        "status": "degraded" if degraded else "ready",
        "version": dheera_ai.__version__,
        # LiteLLM's name for it: its clients and probes read this key (the value is our version).
        "litellm_version": dheera_ai.__version__,
        **state,
        "cooldowns": engine.router.cooldowns.describe(),
        # Spend rows written locally and not yet in the store (the store was down, or is behind).
        "spool": {"pending_bytes": state["spend"]["spool_pending_bytes"],
                  "quarantined_rows": state["spend"]["spool_quarantined_rows"]},
        "models": len(engine.router.model_names()),
    }


@bp.get("/health")
def health():
    """Every deployment (or those of `?model=`) checked at once; admins only, since it spends calls."""
    admin.require_admin()
    return check_deployments(calls.engine(), request.args.get("model"), _timeout(), g.call_id)


def check_deployments(engine, wanted: str | None, timeout: float, call_id: str) -> dict:
    """Probe every deployment (or the group `wanted`'s) in parallel; LiteLLM's /health shape."""
    deployments = [d for group in engine.router.groups.values() for d in group.deployments
                   if wanted is None or d.model_name == wanted]
    if wanted is not None and not deployments:
        engine.router.group(wanted)  # the usual 400 listing the valid names
    cooling = engine.router.cooldowns.cooling()
    with ThreadPoolExecutor(max_workers=max(1, min(PARALLEL_CHECKS, len(deployments)))) as pool:
        results = list(pool.map(lambda d: _check(engine, d, timeout, call_id, cooling), deployments))
    healthy = [entry for ok, entry in results if ok]
    unhealthy = [entry for ok, entry in results if not ok]
    return {"healthy_endpoints": healthy, "unhealthy_endpoints": unhealthy,
            "healthy_count": len(healthy), "unhealthy_count": len(unhealthy)}


def _timeout() -> float:
    raw = request.args.get("timeout")
    if raw is None:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value <= 60:
        raise BadRequestError("'timeout' must be a number of seconds above 0 and at most 60.", param="timeout",
                              code="invalid_value")
    return value


def _check(engine, deployment, timeout: float, call_id: str, cooling: dict) -> tuple[bool, dict]:
    entry = {"model_name": deployment.model_name, "model": f"{deployment.provider}/{deployment.model}",
             "deployment_id": deployment.id, "api_base": _address(deployment)}
    resting = cooling.get(deployment.id, 0.0) - time.time()
    if resting > 0:
        entry["cooling_down_seconds"] = round(resting, 1)
    mode = deployment.model_info.get("mode") or "chat"
    probe = PROBES.get(mode)
    if probe is None:  # image, audio ...: no call is cheap enough; report the last known state
        entry["checked"] = "last_known_state"
        return resting <= 0, entry
    call_type, body = probe
    call = Call(call_id=f"{call_id}-health", call_type=call_type, model=deployment.model_name,
                body={"model": deployment.model_name, **body})
    began = time.perf_counter()
    try:
        engine.pipeline.probe(call, deployment, timeout)
    except DheeraAIError as error:
        entry.update(error=redact(error.message)[:500], status=error.status)
        return False, entry
    except Exception as error:  # noqa: BLE001 - one broken provider must not break the report
        entry.update(error=f"unexpected {type(error).__name__}", status=500)
        return False, entry
    entry["latency_ms"] = round((time.perf_counter() - began) * 1000, 1)
    return True, entry


def _address(deployment) -> str | None:
    """The deployment's api_base without query string or credentials (never its key)."""
    base = deployment.params.get("api_base")
    if not base:
        return None
    parts = urllib.parse.urlsplit(str(base))
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))
