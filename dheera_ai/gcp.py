"""Google Cloud access tokens for Vertex AI, made and refreshed by google-auth (never by hand).

`vertex_credentials` is a service-account (or authorized-user, or workload-identity-federation)
JSON: a path to the file, or the JSON itself (`os.environ/...` resolved by the config); without
it, Application Default Credentials (`GOOGLE_APPLICATION_CREDENTIALS`, gcloud's, the metadata
server). The cloud-platform scope is always asked for explicitly: credentials made without a
scope (workload identity) otherwise get tokens Vertex refuses. One credentials object per source
per process, so its token is reused by every call and refreshed once, shortly before it expires
(google-auth's `valid` turns false 3m45s ahead), never per call.
"""

from __future__ import annotations

import json
import threading

from dheera_ai.errors import AuthenticationError

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
TOKEN_TIMEOUT = 10  # seconds for the token endpoint or metadata server
_cache: dict = {}  # credential source -> _Source
_lock = threading.Lock()


class _Source:
    """One credentials object, its project, and the lock that keeps refreshes to one at a time."""

    def __init__(self, credentials, project: str | None):
        self.credentials, self.project = credentials, project
        self.lock = threading.Lock()


def access_token(vertex_credentials=None) -> str:
    """A valid access token for these credentials (ADC when None), refreshed only when due."""
    source = _source(vertex_credentials)
    creds = source.credentials
    if not creds.valid:
        with source.lock:
            if not creds.valid:  # another caller may have refreshed it while this one waited
                _refresh(creds)
    return creds.token


def project(vertex_credentials=None) -> str | None:
    """The project the credentials name (a service account's project_id, ADC's project)."""
    return _source(vertex_credentials).project


def _source(vertex_credentials) -> _Source:
    key = json.dumps(vertex_credentials, sort_keys=True) if isinstance(vertex_credentials, dict) \
        else vertex_credentials
    found = _cache.get(key)
    if found is None:
        with _lock:
            found = _cache.get(key)
            if found is None:
                found = _cache[key] = _load(vertex_credentials)
    return found


def _load(vertex_credentials) -> _Source:
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        if vertex_credentials is None:
            creds, project_id = google.auth.default(scopes=SCOPES)
        else:
            info = _info(vertex_credentials)
            creds = _from_info(info)
            project_id = info.get("project_id") or info.get("quota_project_id")
    except (DefaultCredentialsError, ValueError) as exc:
        where = "vertex_credentials" if vertex_credentials is not None else "Application Default Credentials"
        raise AuthenticationError(f"vertex_ai: {where} could not be loaded ({_reason(exc)})",
                                  code="missing_provider_credentials", provider="vertex_ai") from None
    return _Source(creds, project_id)


def _from_info(info: dict):
    """Credentials of the JSON's type, each through its own loader (never a generic one that
    would accept any type a file names)."""
    kind = info.get("type")
    if kind == "service_account":
        from google.oauth2 import service_account

        return service_account.Credentials.from_service_account_info(info, scopes=SCOPES)
    if kind == "authorized_user":
        from google.oauth2 import credentials

        return credentials.Credentials.from_authorized_user_info(info, scopes=SCOPES)
    if kind == "external_account":  # workload identity federation
        source = info.get("credential_source") or {}
        if str(source.get("environment_id", "")).startswith("aws"):
            from google.auth import aws as loader
        elif "executable" in source:
            from google.auth import pluggable as loader
        else:
            from google.auth import identity_pool as loader
        return loader.Credentials.from_info(info, scopes=SCOPES)
    if kind == "impersonated_service_account":
        from google.auth import impersonated_credentials

        return impersonated_credentials.Credentials.from_impersonated_service_account_info(info, scopes=SCOPES)
    raise ValueError(f"credentials of type {kind!r} are not supported")


def _info(vertex_credentials) -> dict:
    """The credentials JSON from a dict, a JSON text, or a file path."""
    if isinstance(vertex_credentials, dict):
        return vertex_credentials
    text = str(vertex_credentials).strip()
    if not text.startswith("{"):
        try:
            with open(text, encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            raise ValueError(f"cannot read the file: {exc.strerror}") from None
    try:
        info = json.loads(text)
    except json.JSONDecodeError:
        raise ValueError("not valid JSON") from None
    if not isinstance(info, dict):
        raise ValueError("the JSON must be an object")
    return info


def _refresh(creds) -> None:
    import google.auth.transport.requests
    from google.auth.exceptions import GoogleAuthError

    class BoundedRequest(google.auth.transport.requests.Request):
        """google-auth's transport with each wait bounded (it would wait 120 s by default)."""

        def __call__(self, url, method="GET", body=None, headers=None, timeout=None, **kwargs):
            return super().__call__(url, method, body, headers, timeout=min(timeout or TOKEN_TIMEOUT, TOKEN_TIMEOUT),
                                    **kwargs)

    try:
        creds.refresh(BoundedRequest())
    except GoogleAuthError as exc:
        raise AuthenticationError(f"vertex_ai: could not get a Google access token ({_reason(exc)})",
                                  code="google_token_refresh_failed", provider="vertex_ai") from None


def _reason(exc: Exception) -> str:
    from dheera_ai.redact import redact

    first = exc.args[0] if exc.args else exc  # google-auth's errors carry (message, response body)
    return redact(str(first))[:300]
