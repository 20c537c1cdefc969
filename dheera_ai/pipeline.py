"""The pipeline: the only code that calls hooks. Authenticate, pre-call, route, dispatch, record."""

from __future__ import annotations

import logging
import time

import orjson

from dheera_ai.errors import AuthenticationError, DheeraAIError, InternalServerError
from dheera_ai.types import Call, Credentials, Outcome, Principal, Reply

log = logging.getLogger("dheera_ai.pipeline")


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
        try:
            self.hook.dheera_ai_pre_call(call=call, settings=self.config)
            deployment = self.router.choose(call)
            call.deployment = deployment
            reply = self.hook.dheera_ai_dispatch(call=call, deployment=deployment,
                                                 provider=self.providers[deployment.provider])
            if reply is None:
                raise InternalServerError(f"No plugin answered the call (call id {call.call_id}).")
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
            self.record_success(call, Outcome(reply.status, time.perf_counter() - call.started, reply.usage))
        return reply

    def _recorded_stream(self, call: Call, reply: Reply, upstream):
        """Relay the provider's stream; whatever ends it, close the upstream and record the call.

        Headers are already sent when this runs, so an error becomes an error event in the stream.
        """
        finished = False
        error = None
        try:
            yield from upstream
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
                self.record_success(call, Outcome(reply.status, latency, call.usage, stream_cut=not finished))
        if error is not None:
            yield reply.error_event(error) if reply.error_event else b"data: " + orjson.dumps(error.to_dict()) + b"\n\n"

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
            except Exception:  # noqa: BLE001 - the contract is that recording never fails a call
                log.exception("plugin %s raised in %s; ignored", impl.plugin_name, name)


def _close_quietly(stream) -> None:
    """Close a provider's stream (and so its upstream connection); a failure here changes nothing."""
    close = getattr(stream, "close", None)
    if close is not None:
        try:
            close()
        except Exception:  # noqa: BLE001
            log.debug("closing an upstream stream failed", exc_info=True)
