"""Pass-through routes: `/anthropic/...`, `/gemini/...`, `/vertex_ai/...`, `/bedrock/...`,
`/cohere/...`, `/mistral/...` and each `general_settings.pass_through_endpoints` path.

The caller's native request goes upstream as it came (body bytes, method, path below the route,
query, its non-credential headers), after the gateway's key auth and through the pipeline like any
call: limits before, a spend row after. Where it goes is the route's, never a header's; the
credentials are the server's (`dheera_ai.passthrough` picks them; the pass_through provider puts
them on last).
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

from flask import Blueprint, g, request

from dheera_ai.errors import BadRequestError
from dheera_ai.passthrough import (
    NATIVE_APIS,
    Forward,
    forwarded_headers,
    native_base,
    provider_params,
)
from dheera_ai.types import Call, Credentials, Deployment, Principal
from proxy_app import calls

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
# The query parameter the Gemini SDK sends its key in: the caller's, never forwarded.
GEMINI_KEY_PARAM = "key"


def blueprint(config) -> Blueprint:
    """The routes for this config (its pass_through_endpoints are known only at start-up)."""
    bp = Blueprint("passthrough", __name__)
    for name in NATIVE_APIS:
        view = _native_view(name)
        bp.add_url_rule(f"/{name}/<path:path>", endpoint=name, view_func=view, methods=METHODS)
    for index, entry in enumerate(config.general_settings.get("pass_through_endpoints") or ()):
        view = _endpoint_view(entry)
        rule = entry["path"].rstrip("/") or "/"
        bp.add_url_rule(rule, endpoint=f"endpoint_{index}", view_func=view, methods=METHODS,
                        defaults={"path": ""})
        if entry.get("include_subpath"):
            bp.add_url_rule(rule.rstrip("/") + "/<path:path>", endpoint=f"endpoint_{index}_sub", view_func=view,
                            methods=METHODS)
    return bp


def _native_view(name: str):
    api = NATIVE_APIS[name]

    def view(path: str):
        principal = _authenticate()
        params = provider_params(calls.engine().config, name)
        query = _query(drop_key=name == "gemini")
        url = f"{native_base(api, params)}/{_raw_subpath(f'/{name}/', path)}" + (f"?{query}" if query else "")
        forward = Forward(request.method, url, forwarded_headers(request.headers), _body(), api.auth, params,
                          route=f"/{name}")
        return _run(principal, name, forward, float(params.get("timeout") or 0) or None)
    view.__name__ = f"pass_through_{name}"
    return view


def _endpoint_view(entry: dict):
    prefix = entry["path"].rstrip("/")

    def view(path: str = ""):
        principal = _authenticate() if entry["auth"] else Principal(kind="anonymous")
        target = entry["target"].rstrip("/")
        subpath = _raw_subpath(prefix + "/", path) if path else ""
        query = _query(drop_key=False)
        url = target + (f"/{subpath}" if subpath else "") + (f"?{query}" if query else "")
        headers = forwarded_headers(request.headers, keep_all=entry["forward_headers"])
        headers.update(entry["headers"])  # the operator's own (an upstream key), over the client's
        forward = Forward(request.method, url, headers, _body(), "none", {}, route=prefix)
        return _run(principal, prefix.lstrip("/"), forward, entry["timeout"], entry.get("cost_per_request"))
    view.__name__ = f"pass_through_endpoint{prefix.replace('/', '_')}"
    return view


def _authenticate() -> Principal:
    """The gateway key wherever the native SDK puts its key: Authorization, x-api-key
    (Anthropic), x-goog-api-key or ?key= (Gemini)."""
    credentials = calls.credentials()
    if credentials.api_key is None:
        key = request.headers.get("x-goog-api-key") or request.args.get(GEMINI_KEY_PARAM)
        if key:
            credentials = Credentials(api_key=key.strip(), header="x-goog-api-key", headers={}, path=request.path)
    principal = calls.engine().pipeline.authenticate(credentials)
    g.principal = principal
    return principal


def _run(principal: Principal, route: str, forward: Forward, timeout: float | None,
         cost_per_request: float | None = None):
    model = _model_named(route)
    call = Call(call_id=g.call_id, client_call_id=g.client_call_id, call_type="pass_through", model=model,
                body={}, stream=False, headers={}, principal=principal, started=g.started)
    params = {"forward": forward}
    if timeout:
        params["timeout"] = timeout
    deployment = Deployment(id=f"pass-through:{route}", model_name=model, provider="pass_through",
                            model=model.split("/", 1)[-1], params=params,
                            model_info={} if cost_per_request is None else {"cost_per_request": cost_per_request})
    g.call = call
    return calls.render(calls.engine().pipeline.run_on(call, deployment))


def _model_named(route: str) -> str:
    """`route/model` when the request names its model (a JSON body's `model`, or the path's
    `models/<m>` or `model/<m>`), for the key's model limits, the row and the price; else `route`."""
    body = request.get_json(silent=True, cache=True) if request.mimetype == "application/json" else None
    model = body.get("model") if isinstance(body, dict) and isinstance(body.get("model"), str) else None
    if model is None:
        parts = request.path.split("/")
        for marker in ("models", "model"):
            if marker in parts[:-1]:
                model = parts[parts.index(marker) + 1].split(":", 1)[0]
                break
    return f"{route}/{model}" if model else route


def _body() -> bytes:
    data = request.get_data(cache=True)
    calls._check_whole_stream(request)
    return data


def _query(drop_key: bool) -> str:
    pairs = [(k, v) for k, v in request.args.items(multi=True) if not (drop_key and k == GEMINI_KEY_PARAM)]
    return urlencode(pairs)


def _raw_subpath(prefix: str, decoded: str) -> str:
    """The path below the route as the client sent it (still percent-encoded: a Bedrock model id's
    `%3A` must reach AWS as it was signed), else the decoded path encoded again."""
    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI") or ""
    raw = raw.split("?", 1)[0]
    if raw.startswith(prefix):
        subpath = raw[len(prefix):]
    else:
        subpath = quote(decoded, safe="/:@")
    if ".." in subpath.split("/") or "%2e%2e" in subpath.lower():
        raise BadRequestError("The path may not climb out of the route ('..').", code="invalid_path")
    return subpath
