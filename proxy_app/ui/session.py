"""Who is logged in to the UI: a signed, expiring cookie naming the admin, and its CSRF token.

The cookie holds no key: only "master" or the key's token (its SHA-256), a CSRF token and the
time of login, signed with `general_settings.ui_session_secret` or a secret derived from the
master key (so changing the master key logs everyone out). Each request checks anew that the
key still exists, is not blocked or expired, and still belongs to a proxy_admin user.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets

from flask import g, redirect, request, url_for
from itsdangerous import BadSignature, URLSafeTimedSerializer

from dheera_ai.errors import DheeraAIError, PermissionDeniedError
from proxy_app import admin, calls

COOKIE = "dheera_ai_ui"
SESSION_SECONDS = 8 * 3600
LOGIN_FORM_SECONDS = 3600
# Wrong keys: at most this many per client address in the window, then refused until it passes.
MAX_FAILURES = 5
FAILURE_WINDOW = 300.0


class CSRFError(PermissionDeniedError):
    """A state-changing form without this session's token (another site's form, or a stale page)."""


def secret() -> str | None:
    settings = calls.engine().config.general_settings
    if settings.get("ui_session_secret"):
        return settings["ui_session_secret"]
    master = calls.engine().config.master_key
    if not master:
        return None
    return hmac.new(master.encode(), b"dheera_ai ui session", hashlib.sha256).hexdigest()


def _serializer(salt: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret(), salt=salt)


def _master_fingerprint() -> str | None:
    """Names the current master key without revealing it (None: there is none)."""
    master = calls.engine().config.master_key
    if not master:
        return None
    return hmac.new(master.encode(), b"dheera_ai ui master session", hashlib.sha256).hexdigest()[:32]


def start(who: str) -> tuple[str, str]:
    """A new session for `who` ("master" or a key's token): (cookie value, CSRF token)."""
    csrf = secrets.token_urlsafe(24)
    data = {"who": who, "csrf": csrf}
    if who == "master":
        data["master"] = _master_fingerprint()
    return _serializer("dheera_ai.ui.session").dumps(data), csrf


def set_cookie(response, value: str) -> None:
    secure = request.is_secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"
    response.set_cookie(COOKIE, value, max_age=SESSION_SECONDS, httponly=True, samesite="Strict", secure=secure,
                        path="/ui")


def clear_cookie(response) -> None:
    response.delete_cookie(COOKIE, path="/ui", httponly=True, samesite="Strict")


def current() -> dict | None:
    """The valid session of this request ({"who", "csrf", "label"}), or None."""
    raw = request.cookies.get(COOKIE)
    if not raw or secret() is None:
        return None
    try:
        data = _serializer("dheera_ai.ui.session").loads(raw, max_age=SESSION_SECONDS)
    except BadSignature:  # also SignatureExpired
        return None
    if not isinstance(data, dict) or not isinstance(data.get("who"), str):
        return None
    if data["who"] == "master":
        # Signed by ui_session_secret, a master session must still end when the master key changes.
        fingerprint = _master_fingerprint()
        if fingerprint is None or not hmac.compare_digest(str(data.get("master", "")), fingerprint):
            return None
        return {**data, "label": "master key"}
    # A key's session lasts while the key would still be let in as an admin (not blocked, with its
    # team or alone, not expired or revoked, its user still proxy_admin): the API's own check.
    try:
        principal = admin.state().auth.principal_of(data["who"])
    except DheeraAIError:
        return None
    if principal is None or not admin.is_admin(principal):
        return None
    return {**data, "label": principal.key_alias or "admin key"}


def login_required(view):
    """Pages need a session; a form that changes something also needs its CSRF token."""
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        session = current()
        if session is None:
            return redirect(url_for("ui.login", next=request.full_path if request.method == "GET" else None))
        if request.method == "POST":
            check_csrf(session["csrf"], request.form.get("csrf_token", ""))
        g.ui_session = session
        return view(*args, **kwargs)
    return wrapped


def safe_target(target: str | None, fallback: str = "ui.dashboard") -> str:
    """Where to go after a form: a page of the UI itself, never an address elsewhere (open redirect)."""
    if target and target.startswith("/ui") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for(fallback)


def check_csrf(expected: str, given: str) -> None:
    if not given or not hmac.compare_digest(expected.encode(), given.encode()):
        raise CSRFError("This form has expired or did not come from this gateway's UI; reload the page and "
                        "try again.", code="csrf_failed")


def login_form_token() -> str:
    """The login form's CSRF token: signed, expiring, no session needed yet."""
    return _serializer("dheera_ai.ui.login").dumps(secrets.token_urlsafe(8))


def check_login_form_token(token: str) -> None:
    try:
        _serializer("dheera_ai.ui.login").loads(token or "", max_age=LOGIN_FORM_SECONDS)
    except BadSignature:
        raise CSRFError("The login form has expired; reload the page and try again.", code="csrf_failed") from None


def login_wait_seconds(client: str, now: float) -> float:
    """0 if `client` may try a key, else how long until it may: after MAX_FAILURES wrong keys in
    FAILURE_WINDOW, counted in the store, so all workers and instances count the same guesses."""
    recent = admin.store().login_failures(client, now - FAILURE_WINDOW)
    if len(recent) < MAX_FAILURES:
        return 0.0
    return recent[-MAX_FAILURES] + FAILURE_WINDOW - now


def record_login_failure(client: str, now: float) -> None:
    admin.store().record_login_failure(client, now, forget_before=now - FAILURE_WINDOW)
