"""The pass_through provider: sends a `dheera_ai.passthrough.Forward` the blueprint built, with the
server's credentials put on last (api key, SigV4 by botocore, a Google token by google-auth), and
relays the answer as it is: status, headers, body; a stream chunk by chunk, its usage read on the way.

A deployment of this provider is only ever built by the pass-through blueprint, never by config.
"""

from __future__ import annotations

import orjson
import requests

from dheera_ai import hookimpl, http
from dheera_ai.errors import APIConnectionError, AuthenticationError, BadRequestError, Timeout
from dheera_ai.passthrough import StreamUsage, relayed_headers, usage_of
from dheera_ai.providers import Provider
from dheera_ai.types import Call, Deployment, Reply

# A whole (not streamed) native answer is read for its usage up to this size.
MAX_PARSED_ANSWER = 8 << 20


class PassThroughProvider(Provider):
    name = "pass_through"
    key_params = ()
    server_credentials_only = True

    def pass_through(self, call: Call, deployment: Deployment) -> Reply:
        forward = deployment.params.get("forward")
        if forward is None:  # a model name (a wildcard's `pass_through/x`) is no pass-through request
            raise BadRequestError("pass_through is not a model provider; call a pass-through route "
                                  "(/anthropic/..., /bedrock/..., ...) instead.", param="model", code="invalid_model")
        headers = _with_credentials(forward)
        timeout = float(deployment.param("timeout") or http.DEFAULT_TIMEOUT)
        try:
            response = http.session().request(forward.method, forward.url, data=forward.data or None,
                                              headers=headers, stream=True, allow_redirects=False,
                                              timeout=(http.CONNECT_TIMEOUT, timeout))
        except requests.exceptions.Timeout:
            raise Timeout(f"{forward.route}: no answer within {timeout:g}s") from None
        except requests.exceptions.RequestException as exc:
            raise APIConnectionError(f"{forward.route}: connection failed ({type(exc).__name__})") from None
        content_type = response.headers.get("content-type", "application/octet-stream")
        reply = Reply(status=response.status_code, content_type=content_type,
                      headers=relayed_headers(response.headers))
        reply.headers.pop("content-type", None)
        reply.headers.pop("Content-Type", None)
        if content_type.startswith(("text/event-stream", "application/vnd.amazon.eventstream")) \
                or "stream" in forward.url.rsplit("/", 1)[-1].lower():
            reply.stream = _relayed(response, reply)
            return reply
        reply.body = response.content
        response.close()
        if response.status_code < 300 and content_type.startswith("application/json") \
                and len(reply.body) <= MAX_PARSED_ANSWER:
            try:
                reply.usage = usage_of(orjson.loads(reply.body))
            except ValueError:
                pass
        return reply


def _relayed(response, reply: Reply):
    """Each chunk as it arrives; closing this (the client left) closes the upstream connection."""
    usage = StreamUsage()
    try:
        for chunk in http.iter_body(response):
            usage.feed(chunk)
            reply.usage = usage.usage()
            yield chunk
    finally:
        response.close()


def _with_credentials(forward) -> dict:
    from dheera_ai.passthrough import NATIVE_APIS, api_key

    headers = dict(forward.headers)
    if forward.auth == "none":
        return headers
    if forward.auth == "sigv4":
        from dheera_ai import aws
        return aws.signed_headers(forward.method, forward.url, forward.data, headers, forward.params)
    if forward.auth == "google_token":
        from dheera_ai import gcp
        headers["Authorization"] = f"Bearer {gcp.access_token(forward.params.get('vertex_credentials'))}"
        return headers
    api = next(a for a in NATIVE_APIS.values() if a.auth == forward.auth)
    key = api_key(api, forward.params)
    if not key:
        raise AuthenticationError(f"/{api.name} pass-through: the gateway has no {api.name} key (set api_key on a "
                                  f"{api.name}/ model_list deployment, or {api.key_env}).",
                                  code="missing_provider_credentials")
    if forward.auth == "x-api-key":
        headers["x-api-key"] = key
        headers.setdefault("anthropic-version", "2023-06-01")
    elif forward.auth == "goog":
        headers["x-goog-api-key"] = key
    else:
        headers["Authorization"] = f"Bearer {key}"
    return headers


@hookimpl
def dheera_ai_register_providers(register):
    register("pass_through", PassThroughProvider())
