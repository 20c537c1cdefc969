"""One structured log line per call: what happened, for whom, how long it took, what it used."""

import logging

import orjson

from dheera_ai import hookimpl

log = logging.getLogger("dheera_ai.calls")


def _line(call, outcome) -> str:
    deployment = call.deployment
    usage = outcome.usage
    record = {
        "event": "call",
        "call_id": call.call_id,
        "call_type": call.call_type,
        "model": call.model,
        "deployment": deployment.id if deployment else None,
        "provider": deployment.provider if deployment else None,
        "status": outcome.status,
        "latency_ms": round(outcome.latency_seconds * 1000, 2),
        "prompt_tokens": usage.prompt_tokens if usage else None,
        "completion_tokens": usage.completion_tokens if usage else None,
        "stream": call.stream,
    }
    if outcome.stream_cut:
        record["stream_cut"] = True
    if call.tags:
        record["tags"] = call.tags
    if outcome.error is not None:
        record["error_type"] = type(outcome.error).__name__
        record["error"] = getattr(outcome.error, "message", str(outcome.error))[:500]
    return orjson.dumps(record).decode()


@hookimpl(trylast=True)
def dheera_ai_post_call_success(call, outcome):
    if log.isEnabledFor(logging.INFO):  # build the line only when someone reads it
        log.info(_line(call, outcome))


@hookimpl(trylast=True)
def dheera_ai_post_call_failure(call, outcome):
    if log.isEnabledFor(logging.WARNING):
        log.warning(_line(call, outcome))
