"""Health probes: liveness (the process answers) and readiness (what it depends on)."""

from flask import Blueprint

import dheera_ai
from proxy_app import admin, calls

bp = Blueprint("health", __name__)


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
    degraded = state["state_store"]["status"] != "connected" or state.get("redis", {}).get("status") == "unreachable"
    return {
        "status": "degraded" if degraded else "ready",
        "version": dheera_ai.__version__,
        **state,
        "models": len(engine.router.model_names()),
    }
