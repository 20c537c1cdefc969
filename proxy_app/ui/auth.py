"""Log in with the master key or a proxy_admin user's key; log out. And the UI's error page."""

from __future__ import annotations

import math
import time

from flask import g, make_response, redirect, render_template, request, url_for

from dheera_ai.errors import DheeraAIError
from dheera_ai.types import Credentials
from proxy_app import admin, calls
from proxy_app.ui import session
from proxy_app.ui.blueprint import bp

NOT_ADMIN = ("This key is valid but is not an admin key. Log in with the master key or with a key whose "
             "user has the proxy_admin role.")
WRONG_KEY = "That key was not accepted. Check it and try again."


@bp.errorhandler(DheeraAIError)
def error_page(error: DheeraAIError):
    """An error in a page is shown as a page (with the API's message), never as a JSON body."""
    page = render_template("error.html", error=error, session=session.current())
    return page, error.status


@bp.get("/login")
def login():
    if session.current() is not None:
        return redirect(url_for("ui.dashboard"))
    return _login_page()


def _login_page(message: str | None = None, status: int = 200):
    configured = session.secret() is not None
    page = render_template("login.html", message=message, configured=configured,
                           form_token=session.login_form_token() if configured else "",
                           next=session.safe_target(request.values.get("next")))
    response = make_response(page, status)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/login")
def login_submit():
    if session.secret() is None:
        return _login_page(status=403)
    session.check_login_form_token(request.form.get("csrf_token", ""))
    client, now = _client_address(), time.time()
    wait = session.login_wait_seconds(client, now)
    if wait > 0:
        return _login_page(f"Too many wrong keys from this address. Try again in {math.ceil(wait)} seconds.", 429)
    api_key = request.form.get("api_key", "").strip()
    try:
        principal = calls.engine().pipeline.authenticate(
            Credentials(api_key=api_key or None, header="authorization", headers={}, path=request.path))
    except DheeraAIError:
        principal = None
    if principal is None or principal.kind not in ("master", "virtual_key"):
        session.record_login_failure(client, now)
        return _login_page(WRONG_KEY, 401)
    if not admin.is_admin(principal):
        return _login_page(NOT_ADMIN, 403)
    value, _ = session.start("master" if principal.kind == "master" else principal.key_hash)
    response = redirect(session.safe_target(request.form.get("next")))
    session.set_cookie(response, value)
    return response


def _client_address() -> str:
    """Who is guessing: the peer, or, when the peer is a proxy on this host (nginx in front), the
    address that proxy appended to X-Forwarded-For (the last entry: the ones before it are the
    client's own say)."""
    peer = request.remote_addr or "unknown"
    forwarded = request.headers.get("X-Forwarded-For")
    if forwarded and peer in ("127.0.0.1", "::1"):
        return forwarded.rsplit(",", 1)[-1].strip() or peer
    return peer


@bp.post("/logout")
@session.login_required
def logout():
    response = redirect(url_for("ui.login"))
    session.clear_cookie(response)
    return response


@bp.after_request
def no_store(response):
    """Pages show spend and keys' details: no cache keeps them after logout."""
    if response.mimetype == "text/html":
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Content-Security-Policy",
                                    "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                                    "frame-ancestors 'none'; form-action 'self'")
    return response


@bp.context_processor
def page_context():
    current = getattr(g, "ui_session", None)
    return {"csrf_token": current["csrf"] if current else "", "signed_in_as": current["label"] if current else None}
