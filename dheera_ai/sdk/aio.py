"""The async functions' machinery: the SDK's one (synchronous) call path, run on the caller's
event loop, with its HTTP sent by an async client (httpx) instead of `requests`.

`run(function, ...)` runs `function` in a greenlet; when the code in it reaches the network
(`dheera_ai.http.request`, a body read, a stream's next bytes, the wait before a retry), it hands
an awaitable to `run`, which awaits it on the loop and resumes the greenlet with the result (the
bridge SQLAlchemy's asyncio support uses). So the pipeline, hooks, router and every provider stay
one implementation, written once; only the transport differs, and no call takes a thread.

httpx rather than aiohttp: it is already here (the openai and anthropic packages bring it), it has
connect/read timeouts of the shape `requests` has, its responses read like `requests`' (headers,
status, streamed bytes), and cancelling a task that awaits it closes that connection.

Connections are pooled per event loop (a connection belongs to the loop that opened it), in
httpx clients that each carry at most `SHARD` requests at once: httpx's pool looks at every one of
its connections on every request and response, so one client with 1,000 open streams spends
its time there (measured: 600 streams took 72 s, most of it in httpcore's `is_idle`). No cookies
are kept, and there is no limit on connections in all.
"""

from __future__ import annotations

import asyncio
import contextvars
import http.cookiejar
import sys
import time
import weakref

import greenlet
import httpx

from dheera_ai import http as sync_http
from dheera_ai.errors import APIConnectionError, Timeout

SHARD = 32  # requests in flight per httpx client
_pools: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # event loop -> its `_Pool`


class _Bridged(greenlet.greenlet):
    """A greenlet whose code may wait for awaitables on the event loop of its parent."""


async def run(function, *args, **kwargs):
    """`function(*args, **kwargs)`, awaited: its network waits happen on this event loop.

    Cancelling the awaiting task raises `CancelledError` where the function waits, so its
    `finally` blocks (closing an upstream stream) run, and their own waits are still served."""
    if sync_http.async_bridge is None:
        sync_http.async_bridge = _BRIDGE
    bridged = _Bridged(function, greenlet.getcurrent())
    bridged.gr_context = contextvars.copy_context()  # the caller's context (a trace's parent span, ...)
    result = bridged.switch(*args, **kwargs)
    while not bridged.dead:
        try:
            value = await result
        except BaseException:  # noqa: BLE001 - cancellation too: it must reach the code that waits
            result = bridged.throw(*sys.exc_info())
        else:
            result = bridged.switch(value)
    return result


def active() -> bool:
    """Whether the running code was started by `run` (and so may wait on the loop)."""
    return type(greenlet.getcurrent()) is _Bridged


def wait_for(awaitable):
    """The awaitable's result, from code running under `run`."""
    current = greenlet.getcurrent()
    if type(current) is not _Bridged:
        raise RuntimeError("dheera_ai.sdk.aio.wait_for outside an async SDK call")
    return current.parent.switch(awaitable)


def sleep(seconds: float) -> None:
    wait_for(asyncio.sleep(seconds))


class _Lease:
    """One request's share of a client: given back once, when its answer is read or closed."""

    __slots__ = ("client", "_pool", "_returned")

    def __init__(self, pool, client):
        self.client, self._pool, self._returned = client, pool, False

    def give_back(self) -> None:
        if not self._returned:
            self._returned = True
            self._pool.in_flight[self.client] -= 1


class _Pool:
    """This loop's httpx clients, each with at most `SHARD` requests in flight."""

    def __init__(self):
        self.in_flight: dict = {}  # client -> requests

    def lease(self) -> _Lease:
        for found, count in self.in_flight.items():
            if count < SHARD and not found.is_closed:
                self.in_flight[found] = count + 1
                return _Lease(self, found)
        jar = http.cookiejar.CookieJar(policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        made = httpx.AsyncClient(cookies=jar, follow_redirects=False,
                                 limits=httpx.Limits(max_connections=None, max_keepalive_connections=SHARD,
                                                     keepalive_expiry=60))
        self.in_flight[made] = 1
        return _Lease(self, made)

    async def aclose(self) -> None:
        for found in list(self.in_flight):
            await found.aclose()
        self.in_flight.clear()


def _pool() -> _Pool:
    loop = asyncio.get_running_loop()
    found = _pools.get(loop)
    if found is None:
        found = _pools[loop] = _Pool()
    return found


async def aclose() -> None:
    """Close this event loop's connections (e.g. before the loop ends)."""
    found = _pools.pop(asyncio.get_running_loop(), None)
    if found is not None:
        await found.aclose()


def send(method: str, url: str, *, data, files, headers: dict, params, connect_timeout: float, read_timeout: float,
         stream: bool, deadline: float | None, provider: str) -> Response:
    """One request, as `dheera_ai.http.request` makes it, sent with this loop's async client."""
    return wait_for(_send(method, url, data=data, files=files, headers=headers, params=params,
                          connect_timeout=connect_timeout, read_timeout=read_timeout, stream=stream,
                          deadline=deadline, provider=provider))


async def _send(method, url, *, data, files, headers, params, connect_timeout, read_timeout, stream, deadline,
                provider) -> Response:
    where = provider or "upstream"
    if files is not None:
        content, form = None, data
    elif isinstance(data, (bytes, type(None))):
        content, form = data, None
    elif isinstance(data, dict):
        content, form = None, data
    else:  # a streamed body (dheera_ai.multipart): bounded by the upload limits, so sent whole
        content, form = b"".join(data), None
    lease = _pool().lease()
    async_client = lease.client
    request = async_client.build_request(
        method, url, content=content, data=form, files=files, headers=headers, params=params,
        timeout=httpx.Timeout(read_timeout, connect=connect_timeout, pool=None))
    try:
        try:
            if deadline is None:
                response = await async_client.send(request, stream=True)
                if not stream:
                    await response.aread()
            else:  # the call's whole bound covers connecting, the answer and its body
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    response = await async_client.send(request, stream=True)
                    await response.aread()
        except BaseException:
            lease.give_back()
            raise
    except (httpx.ConnectTimeout, httpx.PoolTimeout):
        raise APIConnectionError(f"{where}: could not connect within {connect_timeout:g}s",
                                 provider=provider) from None
    except (httpx.TimeoutException, TimeoutError):
        raise Timeout(f"{where}: no answer within {read_timeout:g}s", provider=provider) from None
    except httpx.HTTPError as e:
        raise APIConnectionError(f"{where}: connection failed ({_reason(e)})", provider=provider) from None
    if response.is_stream_consumed:
        lease.give_back()
    return Response(response, provider, lease)


class Response:
    """An httpx response read the way providers read a `requests` one: `status_code`, `headers`
    (case-insensitive), `content`, `json()`, `close()`, and its bytes as they arrive (`iter_body`)."""

    def __init__(self, response: httpx.Response, provider: str = "", lease: _Lease | None = None):
        self._response = response
        self._provider = provider
        self._lease = lease
        self.status_code = response.status_code
        self.headers = response.headers
        self.url = str(response.url)

    @property
    def content(self) -> bytes:
        if not self._response.is_stream_consumed:
            try:
                wait_for(self._response.aread())
            except httpx.HTTPError as e:
                raise self._broken(e) from None
            finally:
                self._give_back()
        return self._response.content

    @property
    def text(self) -> str:
        return self.content.decode(self._response.encoding or "utf-8", "replace")

    def json(self):
        import orjson

        return orjson.loads(self.content)

    def iter_body(self, chunk_size: int = 65536):
        """The (decoded) body as it arrives."""
        chunks = self._response.aiter_bytes()
        try:
            while True:
                try:
                    yield wait_for(anext(chunks))
                except StopAsyncIteration:
                    return
        except httpx.HTTPError as e:
            raise self._broken(e) from None
        finally:
            self._give_back()

    def close(self) -> None:
        """Close the connection (a stream left before its end is not read on)."""
        self._give_back()
        if self._response.is_closed:
            return
        if active():
            wait_for(self._response.aclose())
            return
        try:  # closed outside a call (a stream dropped and collected): on the loop, if it still runs
            asyncio.get_running_loop().create_task(self._response.aclose())
        except RuntimeError:
            pass

    def _give_back(self) -> None:
        if self._lease is not None:
            self._lease.give_back()

    def _broken(self, error: Exception):
        if isinstance(error, httpx.TimeoutException):
            return Timeout(f"{self._provider or 'upstream'}: the answer stopped arriving", provider=self._provider)
        return APIConnectionError(f"the upstream stream broke off ({_reason(error)})", provider=self._provider)


def _reason(error: Exception) -> str:
    """A short reason, as `dheera_ai.http` words it, from the error or what caused it."""
    seen = []
    while error is not None and len(seen) < 6:
        seen.append(error)
        if isinstance(error, ConnectionRefusedError):
            return "connection refused"
        if isinstance(error, BaseExceptionGroup):
            seen += list(error.exceptions)
        error = error.__cause__ or error.__context__
    text = " ".join(str(e) for e in seen)
    for marker in ("Connection refused", "Name or service not known", "Connection reset", "Server disconnected"):
        if marker in text:
            return marker.lower()
    return type(seen[0]).__name__ if seen else "unknown"


class _Bridge:
    """What `dheera_ai.http` asks of an async transport (see `http.async_bridge`)."""

    active = staticmethod(active)
    send = staticmethod(send)
    sleep = staticmethod(sleep)


_BRIDGE = _Bridge()
