"""`dheera_ai.success_callback` / `failure_callback`: plain Python callables run after each SDK
call, with LiteLLM's signature `callback(kwargs, completion_response, start_time, end_time)`.

`kwargs` describes the call (`model`, `messages`/`input`, `call_type`, `stream`, `response_cost`,
`litellm_call_id`, `custom_llm_provider`, `api_base`, `metadata`, `optional_params`, and for a
failure `exception`); `completion_response` is the result (a stream once it has ended; None for a
failure); the times are `datetime`s. An `async def` callback is awaited (on the caller's loop in an
async call). A callback that raises is logged and changes nothing about the call; a name (a
string, as LiteLLM's `"langfuse"`) is not a callable and is skipped: destinations are
`dheera_ai.callbacks` / the gateway's config.
"""

from __future__ import annotations

import datetime
import inspect
import logging

import dheera_ai

log = logging.getLogger("dheera_ai.sdk")
# What the call's arguments say about it, beside the request body (`optional_params`).
_INPUTS = ("messages", "input", "prompt", "query", "documents")
_SECRET_OPTIONS = ("api_key", "extra_headers")


def wanted() -> bool:
    return bool(getattr(dheera_ai, "success_callback", None) or getattr(dheera_ai, "failure_callback", None))


def now() -> datetime.datetime:
    return datetime.datetime.now()


def call_kwargs(call_type: str, model: str, params: dict, hidden: dict, call_id: str) -> dict:
    body = {k: v for k, v in params.items() if v is not None}
    kwargs = {name: body.get(name) for name in _INPUTS if name in body}
    metadata = body.get("metadata") or (body.get("extra_body") or {}).get("metadata") or {}
    kwargs.update(
        model=model, call_type=call_type, stream=bool(body.get("stream")), litellm_call_id=call_id, call_id=call_id,
        response_cost=hidden.get("response_cost"), custom_llm_provider=hidden.get("custom_llm_provider"),
        model_id=hidden.get("model_id"), api_base=hidden.get("api_base"), metadata=metadata,
        optional_params={k: v for k, v in body.items() if k not in _INPUTS and k not in _SECRET_OPTIONS},
        litellm_params={"metadata": metadata, "api_base": hidden.get("api_base"),
                        "custom_llm_provider": hidden.get("custom_llm_provider")})
    return kwargs


def succeeded(kwargs: dict, response, start_time, end_time) -> None:
    _run_each(getattr(dheera_ai, "success_callback", None), kwargs, response, start_time, end_time)


def failed(kwargs: dict, error: Exception, start_time, end_time) -> None:
    _run_each(getattr(dheera_ai, "failure_callback", None), {**kwargs, "exception": error}, None, start_time,
              end_time)


def _run_each(callbacks, kwargs, response, start_time, end_time) -> None:
    for callback in list(callbacks or ()):
        if not callable(callback):
            continue  # a destination's name: the gateway's or `dheera_ai.callbacks`' business
        kwargs["end_time"], kwargs["start_time"] = end_time, start_time
        try:
            result = callback(kwargs, response, start_time, end_time)
            if inspect.isawaitable(result):
                _await(result)
        except Exception:  # noqa: BLE001 - a callback never fails the call it reports
            log.exception("callback %r raised; ignored", callback)


def _await(awaitable) -> None:
    from dheera_ai.sdk import aio

    if aio.active():
        aio.wait_for(awaitable)
        return
    import asyncio

    async def wrapped():
        return await awaitable

    asyncio.run(wrapped())
