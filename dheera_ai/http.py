"""Outbound HTTP for providers: one pooled `requests.Session` per process, explicit timeouts,
and every failure turned into the error tree, so nothing from `requests` escapes a provider.
"""

from __future__ import annotations

import http.cookiejar
import logging
import os
import select
import sys
import time
import urllib.request

import orjson
import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import check_header_validity
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from dheera_ai import netguard
from dheera_ai.errors import (
    APIConnectionError,
    ContentPolicyViolationError,
    ContextWindowExceededError,
    DheeraAIError,
    InternalServerError,
    Timeout,
    error_for_status,
)
from dheera_ai.redact import is_secret_name, redact  # redact: providers call http.redact

log = logging.getLogger("dheera_ai.http")

CONNECT_TIMEOUT = 5.0  # seconds; an upstream that cannot accept a connection in 5 s is down
DEFAULT_TIMEOUT = 600.0
_NO_PROXIES: dict = {}
_URLS_KEPT = 4096  # prepared URLs remembered; a deployment calls a handful, response ids add more
_prepared_urls: dict[str, str] = {}
# Connection pools kept at once, one per upstream host: beyond it the least recently used pool is
# closed, so calls spread over more hosts than this reconnect on most calls. `expect_hosts` raises
# it to cover the config's hosts; this much is spare, for hosts that are not in it.
SPARE_POOLS = 32
_pools = SPARE_POOLS
_session = None
_session_pid = None
_guarded: dict = {}  # allowed hosts -> session for client-supplied addresses, this process
# The SDK's async transport (`dheera_ai.sdk.aio`), once an async SDK call has run: code it runs
# sends its requests, reads its bodies and waits on the caller's event loop, not with `requests`.
# None in the gateway, so its path has no check beyond this one.
async_bridge = None


def expect_hosts(count: int) -> None:
    """Keep a pool for each of `count` upstream hosts (the config's) besides the spare ones."""
    global _pools, _session
    if count + SPARE_POOLS > _pools:
        _pools = count + SPARE_POOLS
        _session = None  # made again, with room for them all, on next use


def session() -> requests.Session:
    """The process's session, made on first use: after fork, after gevent's monkey-patching."""
    global _session, _session_pid
    if _session is None or _session_pid != os.getpid():
        s = _upstream_session()
        adapter = _UpstreamAdapter(pool_connections=_pools, pool_maxsize=1024, max_retries=0)
        adapter.poolmanager.pool_classes_by_scheme = _pool_classes()
        s.mount("http://", adapter)
        s.mount("https://", adapter)
        # With trust_env, requests re-reads the whole environment (proxy variables) and stats
        # ~/.netrc on every request: most of a pass-through's client-side cost. Proxies are
        # only looked for once; where some are configured, requests' per-request handling
        # stays on, since it alone applies NO_PROXY host by host.
        s.trust_env = bool(urllib.request.getproxies())
        _session, _session_pid = s, os.getpid()
    return _session


def client_session(allowed: tuple = ()) -> requests.Session:
    """A session for client-supplied addresses: every connection's address is vetted
    (`dheera_ai.netguard`), and no proxy from the environment is used (it would be the address)."""
    key = (os.getpid(), allowed)
    s = _guarded.get(key)
    if s is None:
        s = _upstream_session()
        adapter = _UpstreamAdapter(pool_connections=8, pool_maxsize=256, max_retries=0)
        adapter.poolmanager.pool_classes_by_scheme = _pool_classes(netguard.vetting(allowed))
        s.mount("http://", adapter)
        s.mount("https://", adapter)
        s.trust_env = False
        _guarded[key] = s
    return s


class _QuickLivenessCheck:
    """urllib3 asks whether a pooled connection is still open before reusing it, with a poll that
    does not wait. Under gevent `select.poll` is gevent's cooperative one (watchers, a turn of the
    loop): ~20 us a call against ~1 us for the operating system's, which never blocks at a zero
    timeout and so is safe to call from a greenlet."""

    @property
    def is_connected(self) -> bool:
        if self.sock is None:
            return False
        poll = _os_poll()
        poll.register(self.sock, select.POLLIN)
        return not poll.poll(0)  # readable while idle: closed by the peer (or it sent garbage)


def _os_poll():
    """The operating system's poll object, even where gevent has patched `select`. (A process
    that never imported gevent.monkey has nothing patched, and the SDK does not import gevent.)"""
    global _poll_factory
    if _poll_factory is None:
        monkey = sys.modules.get("gevent.monkey")
        _poll_factory = monkey.get_original("select", "poll") if monkey else select.poll
    return _poll_factory()


_poll_factory = None


def _pool_classes(*mixins: type) -> dict:
    """urllib3 pool classes (by scheme) whose connections take `mixins` and the quick check."""
    http_conn = type("HTTPConnection", (*mixins, _QuickLivenessCheck, HTTPConnection), {})
    https_conn = type("HTTPSConnection", (*mixins, _QuickLivenessCheck, HTTPSConnection), {})
    return {"http": type("HTTPConnectionPool", (HTTPConnectionPool,), {"ConnectionCls": http_conn}),
            "https": type("HTTPSConnectionPool", (HTTPSConnectionPool,), {"ConnectionCls": https_conn})}


class _UpstreamAdapter(HTTPAdapter):
    """requests' adapter, remembering what it works out from each URL it sends to: its pool's key
    and its path. requests parses a URL five times a call, and Python keeps the last 128 parsed:
    calls spread over more hosts than that parsed every one of them, every time. The pool itself is
    still looked up in the pool manager on each call, so a pool it closed is never used."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._pool_keys: dict = {}  # (url, verify, cert) -> (host params, pool kwargs)
        self._paths: dict = {}  # url -> the request line's target

    def get_connection_with_tls_context(self, request, verify, proxies=None, cert=None):
        if proxies:  # a proxy's pool and key depend on more than the URL
            return super().get_connection_with_tls_context(request, verify, proxies, cert)
        memo = (request.url, verify, cert)
        key = self._pool_keys.get(memo)
        if key is None:
            pool = super().get_connection_with_tls_context(request, verify, proxies, cert)  # checks the URL
            _keep(self._pool_keys, memo, self.build_connection_pool_key_attributes(request, verify, cert))
            return pool
        host_params, pool_kwargs = key
        return self.poolmanager.connection_from_host(**host_params, pool_kwargs=pool_kwargs)

    def request_url(self, request, proxies):
        if proxies:
            return super().request_url(request, proxies)
        path = self._paths.get(request.url)
        if path is None:
            path = _keep(self._paths, request.url, super().request_url(request, proxies))
        return path


def _keep(memo: dict, key, value):
    """`memo[key] = value`, emptying `memo` first when it holds `_URLS_KEPT` entries."""
    if len(memo) >= _URLS_KEPT:
        memo.clear()
    memo[key] = value
    return value


def _upstream_session() -> requests.Session:
    """A session that never keeps an upstream's cookies: it is shared by every caller of the
    gateway, so a cookie one call received must not ride along on another's. Of requests' default
    headers, those HTTP/1.1 implies (`Accept: */*`, `Connection: keep-alive`) are left out: each
    header costs its validation on every call."""
    s = requests.Session()
    s.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    for implied in ("Accept", "Connection"):
        s.headers.pop(implied, None)
    return s


def _session_for(call) -> requests.Session:
    deployment = getattr(call, "deployment", None)
    if deployment is not None and deployment.from_client:
        return client_session(deployment.allowed_hosts)
    return session()


def post(url: str, *, json_body=None, data=None, files=None, headers=None, params=None,
         timeout: float | None = None, stream: bool = False, provider: str = "", call=None):
    """POST and return the `requests.Response` of a 2xx answer; raise a `DheeraAIError` otherwise.

    `timeout` bounds each wait for the upstream (connect is always short). The time spent is
    added to `call.upstream_seconds` so the gateway can report its own overhead.
    """
    return request("POST", url, json_body=json_body, data=data, files=files, headers=headers, params=params,
                   timeout=timeout, stream=stream, provider=provider, call=call)


def request(method: str, url: str, *, json_body=None, data=None, files=None, headers=None, params=None,
            timeout: float | None = None, stream: bool = False, provider: str = "", call=None):
    headers = dict(headers or {})
    traced = getattr(call, "upstream_headers", None)
    if traced:  # the attempt's trace context (dheera_ai_attempt_started), on every request it makes
        headers.update(traced)
    if json_body is not None:
        data = orjson.dumps(json_body)
        headers.setdefault("Content-Type", "application/json")
    deployment = getattr(call, "deployment", None)
    if deployment is not None and deployment.from_client:
        _refuse_server_secrets(provider, url, headers, params, data)
    read_timeout = timeout or DEFAULT_TIMEOUT
    # The whole call's bound (`call.deadline`, set per attempt by the pipeline) caps every wait;
    # `timeout` alone bounds each read, which a slowly trickling answer could otherwise outlast.
    deadline = getattr(call, "deadline", None) if not stream else None
    if deadline is not None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise Timeout(f"{provider or 'upstream'}: no answer within the call's timeout", provider=provider)
        read_timeout = min(read_timeout, remaining)
    started = time.perf_counter()
    bridge = async_bridge
    if bridge is not None and bridge.active() and not (deployment is not None and deployment.from_client):
        try:
            response = bridge.send(method, url, data=data, files=files, headers=headers, params=params,
                                   connect_timeout=min(CONNECT_TIMEOUT, read_timeout), read_timeout=read_timeout,
                                   stream=stream, deadline=deadline, provider=provider)
        finally:
            if call is not None:
                call.upstream_seconds += time.perf_counter() - started
        if response.status_code >= 300:
            raise upstream_error(response, provider)
        return response
    try:
        response = _send(_session_for(call), method, url, data=data, files=files, headers=headers, params=params,
                         timeout=(min(CONNECT_TIMEOUT, read_timeout), read_timeout),
                         stream=stream or deadline is not None)
        if deadline is not None and response.status_code < 300:
            _read_by(response, deadline, provider)
    except requests.exceptions.ConnectTimeout:
        raise APIConnectionError(f"{provider or 'upstream'}: could not connect within "
                                 f"{min(CONNECT_TIMEOUT, read_timeout):g}s", provider=provider) from None
    except requests.exceptions.Timeout:
        raise Timeout(f"{provider or 'upstream'}: no answer within {read_timeout:g}s", provider=provider) from None
    except requests.exceptions.RequestException as e:
        raise APIConnectionError(f"{provider or 'upstream'}: connection failed ({_reason(e)})",
                                 provider=provider) from None
    finally:
        if call is not None:
            call.upstream_seconds += time.perf_counter() - started
    if response.status_code >= 300:
        raise upstream_error(response, provider)
    return response


# Environment values shorter than this are not taken for secrets (flags, ports, regions).
_SECRET_MIN_CHARS = 12


def _refuse_server_secrets(provider: str, url: str, headers: dict, params, data) -> None:
    """The last gate before a client-chosen address: nothing that leaves for it may carry the
    value of one of the server's secret environment variables (`AZURE_API_KEY`, ...), whichever
    provider (a third-party one too) put it there. Providers read the environment through
    `providers.server_environ`, which gives client-built deployments nothing, so this only
    ever stops a provider that does not."""
    secrets = [v for k, v in os.environ.items() if len(v) >= _SECRET_MIN_CHARS and is_secret_name(k)]
    if not secrets:
        return
    texts = [url, *map(str, headers.values()), *(map(str, params.values()) if isinstance(params, dict) else ())]
    leaked = any(secret in text for secret in secrets for text in texts)
    if not leaked and isinstance(data, bytes):
        leaked = any(secret.encode() in data for secret in secrets)
    if leaked:
        log.error("%s tried to send one of the gateway's own credentials to a client-chosen address; refused",
                  provider or "a provider")
        raise InternalServerError(f"{provider or 'upstream'}: refused to send a server credential to a "
                                  "client-chosen address.", code="server_credential_refused", provider=provider)


def _send(session: requests.Session, method: str, url: str, *, data, files, headers: dict, params, timeout,
          stream: bool) -> requests.Response:
    """`session.request(...)` without redirects, and for the common case (a body of bytes, no
    files, query or proxies) without the per-call work requests does to merge session settings,
    cookies and the environment into every request: a third of a pass-through's cost in requests.
    The connection pools, TLS checks and response handling are requests' own."""
    if files is not None or params is not None or session.trust_env or not isinstance(data, (bytes, type(None))):
        return session.request(method, url, data=data, files=files, headers=headers, params=params,
                               timeout=timeout, stream=stream, allow_redirects=False)
    prepared = requests.PreparedRequest()
    prepared.method = method
    prepared.url = _prepared_url(url)
    prepared.headers = CaseInsensitiveDict(session.headers)
    for header in headers.items():
        check_header_validity(header)  # no CR/LF smuggled into a header from a value
    prepared.headers.update(headers)
    prepared.body = data
    if data is not None or method not in ("GET", "HEAD"):
        prepared.headers["Content-Length"] = str(len(data or b""))
    prepared.hooks = {"response": []}
    response = session.get_adapter(prepared.url).send(prepared, stream=stream, timeout=timeout, verify=session.verify,
                                                       cert=session.cert, proxies=_NO_PROXIES)
    if not stream:
        response.content  # noqa: B018 - read it all now, as requests does, so the connection goes back
    return response


def _prepared_url(url: str) -> str:
    """The URL as requests would send it (IDNA host, quoting), worked out once per URL."""
    prepared = _prepared_urls.get(url)
    if prepared is None:
        request = requests.PreparedRequest()
        request.prepare_url(url, None)
        prepared = _keep(_prepared_urls, url, request.url)
    return prepared


def _read_by(response, deadline: float, provider: str) -> None:
    """Read the whole body before `deadline`, each socket wait shortened to what is left."""
    chunks = []
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise requests.exceptions.ReadTimeout()
            sock = getattr(getattr(response.raw, "connection", None), "sock", None)
            if sock is not None:
                sock.settimeout(remaining)
            data = response.raw.read1(65536, decode_content=True)
            if not data:
                break
            chunks.append(data)
    except requests.exceptions.RequestException:
        response.close()
        raise
    except Exception as exc:  # urllib3's read errors
        response.close()
        if time.monotonic() >= deadline:
            raise requests.exceptions.ReadTimeout() from None
        raise requests.exceptions.ConnectionError(str(exc)) from None
    response._content = b"".join(chunks)  # what `response.content` returns from now on
    response._content_consumed = True


def upstream_error(response, provider: str) -> DheeraAIError:
    """An upstream's error answer as our error: its status, its message (secrets masked), Retry-After."""
    try:
        body = response.content[:65536]
    finally:
        response.close()
    message, code, param = _error_fields(body)
    message = f"{provider}: {redact(message)}" if provider else redact(message)
    headers = {}
    if response.headers.get("retry-after"):
        headers["Retry-After"] = response.headers["retry-after"]
    status = response.status_code
    if status < 400:  # a redirect: never followed, since it could lead anywhere
        return APIConnectionError(f"{provider}: the upstream answered with a redirect ({status})", provider=provider)
    lowered = (message + " " + (code or "")).lower()
    if status == 400 and ("context_length" in lowered or "context length" in lowered or "maximum context" in lowered):
        error = ContextWindowExceededError(message, code=code, param=param, provider=provider)
    elif status == 400 and any(m in lowered for m in ("content_policy", "content_filter",
                                                      "content management policy")):
        error = ContentPolicyViolationError(message, code=code, param=param, provider=provider)
    else:
        error = error_for_status(status, message, code=code, param=param, provider=provider, headers=headers)
    # Kept for providers whose error bodies say more than the status (see providers.upstream_errors).
    error.upstream_status, error.upstream_body, error.upstream_headers = status, body, response.headers
    return error


def _error_fields(body: bytes) -> tuple[str, str | None, str | None]:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body.decode("utf-8", "replace").strip()
        return (text[:500] or "the upstream returned an error with no body"), None, None
    error = parsed.get("error", parsed) if isinstance(parsed, dict) else parsed
    if isinstance(error, dict):
        message = error.get("message") or error.get("detail") or orjson.dumps(error).decode()
        code = error.get("code") if isinstance(error.get("code"), str) else None
        param = error.get("param") if isinstance(error.get("param"), str) else None
        return str(message), code, param
    return str(error), None, None


def _reason(exc: Exception) -> str:
    text = str(exc)
    for marker in ("clients may not reach", "Connection refused", "Name or service not known", "Connection reset",
                   "Remote end closed connection", "Max retries exceeded"):
        if marker in text:
            return marker.lower()
    return type(exc).__name__


def wait(seconds: float) -> None:
    """Wait between attempts: on the caller's event loop in an async SDK call, else sleep."""
    bridge = async_bridge
    if bridge is not None and bridge.active():
        bridge.sleep(seconds)
    else:
        time.sleep(seconds)


def iter_body(response, chunk_size: int = 65536):
    """The body as it arrives: each read returns what the socket has, never waits to fill a buffer
    (so a close-delimited or content-length stream is not held back), gzip decoded."""
    bridged = getattr(response, "iter_body", None)  # a response of the async transport
    if bridged is not None:
        yield from bridged(chunk_size)
        return
    raw = response.raw
    try:
        while True:
            data = raw.read1(chunk_size, decode_content=True)
            if not data:
                return
            yield data
    except Exception as exc:  # urllib3/http.client errors must not escape a provider
        raise APIConnectionError(f"the upstream stream broke off ({_reason(exc)})") from None
