"""`/ui/models`: model groups and their deployments (no secrets), cooldowns, a health check on demand."""

from __future__ import annotations

import time

from flask import g, render_template

from proxy_app import calls
from proxy_app.blueprints.health import DEFAULT_TIMEOUT, _address, check_deployments
from proxy_app.ui.blueprint import bp
from proxy_app.ui.session import login_required

# What a deployment's row shows from its params; nothing else (keys, tokens, headers) is read.
SHOWN_PARAMS = ("rpm", "tpm", "weight", "timeout", "max_retries", "api_version")


@bp.get("/models")
@login_required
def models():
    return _page(None)


@bp.post("/models/health")
@login_required
def models_health():
    report = check_deployments(calls.engine(), None, DEFAULT_TIMEOUT, g.call_id)
    results = {e["deployment_id"]: {**e, "healthy": True} for e in report["healthy_endpoints"]}
    results.update({e["deployment_id"]: {**e, "healthy": False} for e in report["unhealthy_endpoints"]})
    return _page(results)


def _page(health: dict | None):
    router = calls.engine().router
    cooling = router.cooldowns.cooling()
    now = time.time()
    groups = []
    for name, group in router.groups.items():
        rows = []
        for deployment in group.deployments:
            resting = cooling.get(deployment.id, 0.0) - now
            rows.append({"id": deployment.id, "provider": deployment.provider, "model": deployment.model,
                         "api_base": _address(deployment),
                         "params": {p: deployment.params[p] for p in SHOWN_PARAMS
                                    if deployment.params.get(p) is not None},
                         "missing": sorted(deployment.unresolved.values()),
                         "cooling_seconds": round(resting, 1) if resting > 0 else None,
                         "health": (health or {}).get(deployment.id)})
        groups.append({"name": name, "deployments": rows})
    return render_template("models.html", groups=groups, checked=health is not None)
