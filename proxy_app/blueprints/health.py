"""Health probes: liveness (the process answers) and readiness (what it depends on)."""

from flask import Blueprint

import dheera_ai
from proxy_app import calls

bp = Blueprint("health", __name__)


@bp.get("/health/liveliness")
@bp.get("/health/liveness")
def liveness():
    return {"status": "alive"}


@bp.get("/health/readiness")
def readiness():
    engine = calls.engine()
    return {
        "status": "ready",
        "version": dheera_ai.__version__,
        # Nothing is stored yet: keys, teams and spend arrive with the state store.
        "state_store": {"backend": "none", "status": "not configured"},
        "models": len(engine.router.model_names()),
    }
