"""One structured JSON log line per call: what happened, for whom, how long it took, what it used.

Logger `dheera_ai.calls`: INFO for answered calls, WARNING for failed ones. At DEBUG
(`dheera_ai --detailed_debug`) the line also carries the request: its headers and body fields,
and the deployment's address (never its key). Everything passes through `dheera_ai.redact`.
"""

import logging

import orjson

from dheera_ai import hookimpl
from dheera_ai.redact import redact, redact_data

log = logging.getLogger("dheera_ai.calls")
DEBUG_STRING_LIMIT = 2000  # characters of any one body string in a debug line


def cost_of(call, outcome):
    """The call's cost in USD, as the spend plugin priced it (it runs first); null if unpriced."""
    return call.cost


def record(call, outcome, detailed: bool = False) -> dict:
    deployment = call.deployment
    principal = call.principal
    usage = outcome.usage
    line = {
        "event": "call",
        "call_id": call.call_id,
        "client_call_id": call.client_call_id,
        "call_type": call.call_type,
        "key_alias": principal.key_alias if principal else None,
        "user_id": principal.user_id if principal else None,
        "team_id": principal.team_id if principal else None,
        "model": call.model,
        "model_group": deployment.model_name if deployment else None,
        "deployment": deployment.id if deployment else None,
        "provider": deployment.provider if deployment else None,
        "status": outcome.status,
        "latency_ms": round(outcome.latency_seconds * 1000, 2),
        "prompt_tokens": usage.prompt_tokens if usage else None,
        "completion_tokens": usage.completion_tokens if usage else None,
        "total_tokens": usage.total_tokens if usage else None,
        "cost": cost_of(call, outcome),
        "stream": call.stream,
    }
    if call.attempted_retries or call.attempted_fallbacks:
        line["retries"], line["fallbacks"] = call.attempted_retries, call.attempted_fallbacks
    if outcome.stream_cut:
        line["stream_cut"] = True
    if call.cache is not None:
        line["cache"] = call.cache.result
        if call.cache.similarity is not None:
            line["cache_similarity"] = round(call.cache.similarity, 4)
    if call.tags:
        line["tags"] = redact_data(list(call.tags))
    if call.guardrails:
        line["guardrails"] = call.guardrails
    if outcome.error is not None:
        line["error_type"] = type(outcome.error).__name__
        line["error"] = redact(str(getattr(outcome.error, "message", outcome.error)))[:500]
    if detailed:
        line["request"] = request_details(call)
    return line


def request_details(call) -> dict:
    """What `--detailed_debug` adds: the request as the gateway saw it, secrets masked."""
    deployment = call.deployment
    return {
        "headers": redact_data(call.headers),
        "body": redact_data(call.body, DEBUG_STRING_LIMIT),
        "gateway_params": redact_data(call.gateway_params, DEBUG_STRING_LIMIT),
        "metadata": redact_data(call.metadata, DEBUG_STRING_LIMIT),
        "api_base": redact(str(deployment.params.get("api_base"))) if deployment and deployment.params.get(
            "api_base") else None,
        "files": [{"field": f.field, "filename": f.filename, "size": f.size} for f in call.files],
    }


class JSONLine(dict):
    """A log message that is a JSON object. The gateway's JSON formatter takes its fields as they
    are (no text to parse back); any other formatter prints it as JSON text."""

    def __str__(self) -> str:
        return orjson.dumps(self, default=str).decode()


def _write(level: int, call, outcome) -> None:
    if log.isEnabledFor(level):  # build the line only when someone reads it
        log.log(level, JSONLine(record(call, outcome, detailed=log.isEnabledFor(logging.DEBUG))))


@hookimpl(trylast=True)
def dheera_ai_post_call_success(call, outcome):
    _write(logging.INFO, call, outcome)


@hookimpl(trylast=True)
def dheera_ai_post_call_failure(call, outcome):
    _write(logging.WARNING, call, outcome)
