"""The pipeline: the only code that calls hooks. Authenticate, pre-call, route, dispatch, record.

Between pre-call and the answer runs the attempt loop: the router picks a deployment, dispatch
tries it, and a failure is retried (`num_retries`, `retry_policy`, backoff) within the model
group, then handed to the fallback groups for that kind of error. Every attempt is first put to
the pre-attempt hooks (the caller's allowed models, its budget): a fallback is a new model, and
must be one the caller may use. A stream counts as answered once its first chunk has arrived: a
failure before that is retried like any other.
"""

from __future__ import annotations

import logging
import time
import traceback

import orjson

from dheera_ai import http
from dheera_ai.errors import AuthenticationError, DheeraAIError, InternalServerError, Timeout
from dheera_ai.redact import redact
from dheera_ai.router import policy
from dheera_ai.router.client_side import client_routing
from dheera_ai.types import Call, Credentials, Deployment, Outcome, Principal, Reply

log = logging.getLogger("dheera_ai.pipeline")

MAX_DELIVERED_CHUNKS = 20_000


class Pipeline:
    def __init__(self, plugin_manager, config, router, providers):
        self.hook = plugin_manager.hook
        self.config = config
        self.router = router
        self.providers = providers

    def authenticate(self, credentials: Credentials) -> Principal:
        principal = self.hook.dheera_ai_authenticate(credentials=credentials, settings=self.config)
        if principal is None:
            raise AuthenticationError("Authentication failed: no valid API key was given.", code="invalid_api_key")
        return principal

    def run(self, call: Call) -> Reply:
        """Carry out `call`; the Reply's stream, if any, records the call when it ends."""
        def routed() -> Reply:
            router, credentials = client_routing(call, self.config, self.router, self.providers)
            return self._attempts(call, router, credentials)
        return self._carry_out(call, routed)

    def run_on(self, call: Call, deployment: Deployment) -> Reply:
        """Carry out `call` on `deployment`, which the caller built rather than the config (the
        SDK builds one from a call's own arguments: model, api_base, api_key, ...).

        The same hooks, recording and stream handling as `run`, but one attempt: no model group,
        no retries or fallbacks, no client-side credential checks (the caller is the operator),
        and a failure never cools the deployment down.
        """
        def attempt() -> Reply:
            self.hook.dheera_ai_pre_attempt(call=call, deployment=deployment)
            return self._attempt(call, self.router, deployment, shared=False)
        return self._carry_out(call, attempt)

    def _carry_out(self, call: Call, attempts) -> Reply:
        try:
            self.hook.dheera_ai_pre_call(call=call, settings=self.config)
            reply = attempts()
            self.hook.dheera_ai_check_reply(call=call, reply=reply)
        except DheeraAIError as error:
            self.record_failure(call, error)
            raise
        except Exception as exc:
            log.exception("call %s failed unexpectedly", call.call_id)
            error = InternalServerError(f"Internal error; call id {call.call_id}.")
            self.record_failure(call, error)
            raise error from exc
        if reply.stream is not None:
            reply.stream = self._recorded_stream(call, reply, reply.stream)
        else:
            call.usage = reply.usage
            self.record_success(call, Outcome(reply.status, time.perf_counter() - call.started, reply.usage,
                                              reply=reply))
        return reply

    def _attempts(self, call: Call, router, credentials) -> Reply:
        """The model group, then its fallback groups for the kind of error it ended with."""
        groups = [call.model]
        failure = None
        for index, group in enumerate(groups):  # grows once, after the first group's failure
            try:
                return self._attempts_in_group(call, router, credentials, group, fallback=index > 0)
            except _AttemptRefused as refused:
                if failure is None:
                    raise refused.error from None
                log.info("call %s: fallback group %s skipped (%s)", call.call_id, group, refused.error.message)
            except DheeraAIError as error:
                failure = error
                if index == 0:
                    groups += [g for g in policy.fallbacks_for(router.settings, group, error) if g != group]
            if index == len(groups) - 1:
                raise failure
            log.info("call %s: model group %s failed (%s); falling back to %s",
                     call.call_id, group, type(failure).__name__, groups[index + 1])
        raise AssertionError("unreachable")

    def _attempts_in_group(self, call: Call, router, credentials, group: str, fallback: bool) -> Reply:
        exclude = credentials.excluded(router.group(group).deployments) if credentials else frozenset()
        tried: set = set()
        retries = 0
        error = previous = None
        while True:
            deployment = self._next_deployment(call, router, group, exclude, tried)
            if credentials is not None:
                deployment = credentials.apply(deployment)
            try:
                self.hook.dheera_ai_pre_attempt(call=call, deployment=deployment)
            except DheeraAIError as refusal:
                # Refused before it was tried: the group's own last failure stands, if it had one.
                if error is not None:
                    raise error from None
                raise _AttemptRefused(refusal) from None
            if error is not None:
                http.wait(policy.wait_before_retry(router.settings, retries - 1, error,
                                                    same_deployment=deployment.id == previous.id))
            elif fallback:
                call.attempted_fallbacks += 1
            try:
                return self._attempt(call, router, deployment, shared=credentials is None)
            except DheeraAIError as failure:
                if retries >= policy.retries_for(router.settings, failure, deployment):
                    raise
                retries += 1
                error, previous = failure, deployment
                tried.add(deployment.id)
                call.attempted_retries += 1

    def _next_deployment(self, call: Call, router, group: str, exclude, tried) -> Deployment:
        """A deployment not tried yet when there is one, else any the group still offers."""
        if tried:
            try:
                return router.choose(call, group, exclude | tried)
            except DheeraAIError:
                pass
        return router.choose(call, group, exclude)

    def _attempt(self, call: Call, router, deployment: Deployment, shared: bool) -> Reply:
        """One try at one deployment; for a stream, until its first chunk is in hand."""
        call.deployment = deployment
        timeout = deployment.param("timeout")
        call.deadline = time.monotonic() + float(timeout) if timeout and not call.stream else None
        router.started(deployment)
        self._call_each("dheera_ai_attempt_started", call=call, deployment=deployment)
        began = time.perf_counter()
        try:
            reply = self.hook.dheera_ai_dispatch(call=call, deployment=deployment,
                                                 provider=self.providers[deployment.provider])
            if reply is None:
                raise InternalServerError(f"No plugin answered the call (call id {call.call_id}).")
            if reply.stream is not None:
                waiting = time.perf_counter()
                reply.stream = _primed(reply.stream)
                # Waiting for the first chunk is the upstream's time, not the gateway's overhead.
                call.upstream_seconds += time.perf_counter() - waiting
        except DheeraAIError as error:
            router.failed(deployment, error, count=shared, seconds=time.perf_counter() - began)
            self._attempt_ended(call, deployment, error)
            raise
        except Exception:
            router.finished(deployment, None)
            self._attempt_ended(call, deployment, InternalServerError(f"Internal error; call id {call.call_id}."))
            raise
        finally:
            call.deadline = None
        seconds = time.perf_counter() - began if reply.from_deployment else None

        def tokens() -> int:
            return reply.usage.total_tokens if reply.usage and reply.from_deployment else 0

        if reply.stream is None:
            router.finished(deployment, seconds, tokens())
            self._attempt_ended(call, deployment, None)
        else:
            def ended(error=None):
                router.finished(deployment, seconds, tokens())
                self._attempt_ended(call, deployment, error)
            reply.stream = _on_end(reply.stream, ended)
        return reply

    def _attempt_ended(self, call: Call, deployment: Deployment, error) -> None:
        call.upstream_headers = None
        self._call_each("dheera_ai_attempt_ended", call=call, deployment=deployment, error=error)

    def _recorded_stream(self, call: Call, reply: Reply, upstream):
        """Relay the provider's stream; whatever ends it, close the upstream and record the call.

        Headers are already sent when this runs, so an error becomes an error event in the stream.
        """
        finished = False
        error = None
        # Kept for billing a stream the client leaves before its usage chunk (SSE only, bounded).
        delivered = call.delivered if reply.content_type.startswith("text/event-stream") else None
        try:
            for chunk in upstream:
                if delivered is not None and len(delivered) < MAX_DELIVERED_CHUNKS:
                    delivered.append(chunk)
                yield chunk
            finished = True
        except DheeraAIError as exc:
            error = exc
        except Exception as exc:  # noqa: BLE001 - the client must get an event, not a cut stream
            log.exception("stream of call %s failed", call.call_id)
            error = InternalServerError(f"Internal error during the stream; call id {call.call_id}.")
            error.__cause__ = exc
        finally:
            _close_quietly(upstream)
            call.usage = reply.usage or call.usage
            latency = time.perf_counter() - call.started
            if error is not None:
                self.record_failure(call, error, stream_cut=True)
            else:
                self.record_success(call, Outcome(reply.status, latency, call.usage, stream_cut=not finished,
                                                  reply=reply))
        if error is not None:
            yield reply.error_event(error) if reply.error_event else b"data: " + orjson.dumps(error.to_dict()) + b"\n\n"

    def probe(self, call: Call, deployment: Deployment, timeout: float) -> Reply:
        """One attempt at one named deployment, for health checks: no routing, retries, cooldowns
        or post-call records (a check must not change the state it reports). Raises a
        `DheeraAIError` when the deployment fails; a stream is read to its end."""
        call.deployment = deployment
        call.deadline = time.monotonic() + timeout
        try:
            reply = self.hook.dheera_ai_dispatch(call=call, deployment=deployment,
                                                 provider=self.providers[deployment.provider])
            if reply is None:
                raise InternalServerError("No plugin answered the health check.")
            if reply.stream is not None:
                for _ in reply.stream:
                    if time.monotonic() > call.deadline:
                        raise Timeout("the health check's stream did not end in time")
                _close_quietly(reply.stream)
            return reply
        finally:
            call.deadline = None

    def record_success(self, call: Call, outcome: Outcome) -> None:
        self._call_each("dheera_ai_post_call_success", call=call, outcome=outcome)

    def record_failure(self, call: Call, error: Exception, stream_cut: bool = False) -> None:
        status = getattr(error, "status", 500)
        outcome = Outcome(status, time.perf_counter() - call.started, call.usage, error=error, stream_cut=stream_cut)
        self._call_each("dheera_ai_post_call_failure", call=call, outcome=outcome)

    def _call_each(self, name: str, **kwargs) -> None:
        """Call every implementation of a must-not-raise hook, so one failing plugin stops no other."""
        caller = getattr(self.hook, name)
        # pluggy runs implementations last-registered first; keep that order.
        for impl in reversed(caller.get_hookimpls()):
            try:
                impl.function(*[kwargs[arg] for arg in impl.argnames])
            except Exception as exc:  # noqa: BLE001 - the contract is that recording never fails a call
                # The error and its traceback are in the message itself, redacted, so every
                # handler shows them (the host's too, when it configured logging) with no secret.
                log.error("plugin %s raised in %s; ignored: %s\n%s", impl.plugin_name, name,
                          redact(f"{type(exc).__name__}: {exc}"), redact(traceback.format_exc()).rstrip())


class _AttemptRefused(Exception):
    """A pre-attempt hook refused a group's first attempt (`error` says why)."""

    def __init__(self, error: DheeraAIError):
        super().__init__(error.message)
        self.error = error


def _primed(stream):
    """The stream with its first chunk already read, so a failure before any byte reaches the
    client raises here, where it can still be retried; an empty stream stays empty."""
    stream = iter(stream)
    try:
        first = next(stream)
    except StopIteration:
        _close_quietly(stream)
        return iter(())
    except BaseException:
        _close_quietly(stream)
        raise
    return _Relay(stream, first=first)


def _on_end(stream, callback):
    return _Relay(stream, on_end=callback)


class _Relay:
    """`first` (when given), then the rest of `stream`; `on_end(error)` runs once when it is
    exhausted or closed (`error`: the `DheeraAIError` that broke it, or None). Unlike a generator,
    closing it before it was ever read still closes `stream` (a plugin that refuses a stream
    before its first byte closes the upstream connection)."""

    __slots__ = ("_stream", "_first", "_on_end", "_closed", "_error")
    _NOTHING = object()

    def __init__(self, stream, first=_NOTHING, on_end=None):
        self._stream, self._first, self._on_end, self._closed = iter(stream), first, on_end, False
        self._error = None

    def __iter__(self):
        return self

    def __next__(self):
        first = self._first
        if first is not _Relay._NOTHING:
            self._first = _Relay._NOTHING
            return first
        try:
            return next(self._stream)
        except BaseException as exc:
            if isinstance(exc, DheeraAIError):
                self._error = exc
            self.close()
            raise

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            _close_quietly(self._stream)
            if self._on_end is not None:
                self._on_end(self._error)


def _close_quietly(stream) -> None:
    """Close a provider's stream (and so its upstream connection); a failure here changes nothing."""
    close = getattr(stream, "close", None)
    if close is not None:
        try:
            close()
        except Exception:  # noqa: BLE001
            log.debug("closing an upstream stream failed", exc_info=True)
