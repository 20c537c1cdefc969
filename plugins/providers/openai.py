"""OpenAI, and any server that speaks its API (`api_base`), passed through with minimal decoding."""

from __future__ import annotations

from urllib.parse import quote

import orjson

from dheera_ai import hookimpl, http
from dheera_ai.errors import APIError, BadRequestError
from dheera_ai.multipart import MultipartBody
from dheera_ai.providers import Provider, require_param, server_environ
from dheera_ai.sse import relay_openai_events, relay_responses_events
from dheera_ai.translate.cohere import rerank_response_from_cohere, rerank_usage
from dheera_ai.types import Call, Deployment, Reply, Usage


class OpenAIProvider(Provider):
    name = "openai"
    default_api_base = "https://api.openai.com/v1"
    api_key_env = "OPENAI_API_KEY"
    api_base_envs = ("OPENAI_BASE_URL", "OPENAI_API_BASE")

    def api_base(self, deployment: Deployment) -> str:
        base = deployment.param("api_base") or server_environ(deployment, *self.api_base_envs) \
            or self.default_api_base
        return base.rstrip("/")

    def url(self, deployment: Deployment, operation: str) -> str:
        """Where `operation` ("chat/completions", "embeddings", ...) of this deployment is served;
        subclasses with other URL schemes (Azure) override this and `auth_headers` only."""
        return f"{self.api_base(deployment)}/{operation}"

    def auth_headers(self, deployment: Deployment) -> dict:
        return {"Authorization": "Bearer " + require_param(deployment, "api_key", self.api_key_env)}

    def model_name(self, deployment: Deployment) -> str:
        """The `model` the upstream is sent (Azure: the deployment name less any route marker)."""
        return deployment.model

    # -- the Files and Batch API, where the gateway forwards batches (proxy_app.batches.forward) --
    batch_api = True

    def batch_url(self, deployment: Deployment, path: str) -> str:
        """Where `files`, `batches/{id}`, ... of this deployment's account are served."""
        return f"{self.api_base(deployment)}/{path}"

    def batch_endpoint(self, endpoint: str) -> str:
        """A batch's `endpoint` (and its lines' `url`) as this provider spells it."""
        return endpoint

    def chat_completions(self, call: Call, deployment: Deployment) -> Reply:
        return self._generation(call, deployment, "chat/completions")

    def completions(self, call: Call, deployment: Deployment) -> Reply:
        return self._generation(call, deployment, "completions")

    def embeddings(self, call: Call, deployment: Deployment) -> Reply:
        return self._json(call, deployment, "embeddings")

    def moderations(self, call: Call, deployment: Deployment) -> Reply:
        return self._json(call, deployment, "moderations")

    def image_generations(self, call: Call, deployment: Deployment) -> Reply:
        return _count_images(self._json(call, deployment, "images/generations"))

    def image_edits(self, call: Call, deployment: Deployment) -> Reply:
        return _count_images(self._multipart(call, deployment, "images/edits"))

    def audio_transcriptions(self, call: Call, deployment: Deployment) -> Reply:
        return self._multipart(call, deployment, "audio/transcriptions")

    def audio_translations(self, call: Call, deployment: Deployment) -> Reply:
        return self._multipart(call, deployment, "audio/translations")

    def audio_speech(self, call: Call, deployment: Deployment) -> Reply:
        """Audio relayed as it arrives, with the upstream's content type; never held whole."""
        response = self._post(call, deployment, "audio/speech", stream=True)
        reply = Reply(content_type=response.headers.get("Content-Type") or "application/octet-stream",
                      usage=Usage(details={"characters": len(str(call.body.get("input") or ""))}))
        reply.stream = _closing(response, http.iter_body(response))
        return reply

    def rerank(self, call: Call, deployment: Deployment) -> Reply:
        """Cohere-shaped rerank on a server with a `/rerank` route (vLLM, Jina, Infinity, ...)."""
        answer = orjson.loads(self._post(call, deployment, "rerank").content)
        usage = Usage.from_openai(answer.get("usage")) or Usage()
        try:
            data = rerank_response_from_cohere(answer, call.body)
        except (ValueError, KeyError, TypeError) as e:
            raise APIError(f"{self.name}: the upstream's rerank answer is malformed ({e})", provider=self.name) \
                from None
        usage.details.update(rerank_usage(answer))
        return Reply(data=data, usage=usage)

    def responses(self, call: Call, deployment: Deployment) -> Reply:
        response = self._post(call, deployment, "responses", stream=call.stream)
        if not call.stream:
            return Reply(body=response.content, usage=_usage_of(response.content))
        reply = Reply(content_type="text/event-stream")
        reply.stream = _closing(response, relay_responses_events(http.iter_body(response), reply))
        return reply

    def responses_get(self, call: Call, deployment: Deployment) -> Reply:
        return self._stored_response(call, deployment, "GET", "")

    def responses_delete(self, call: Call, deployment: Deployment) -> Reply:
        return self._stored_response(call, deployment, "DELETE", "")

    def responses_input_items(self, call: Call, deployment: Deployment) -> Reply:
        return self._stored_response(call, deployment, "GET", "/input_items")

    # -- the ways a call goes upstream ------------------------------------------------------
    def _generation(self, call: Call, deployment: Deployment, operation: str) -> Reply:
        """Chat or text completions: plain, or streamed with usage always asked for."""
        body = dict(call.body)
        client_wants_usage = False
        if call.stream:
            options = dict(body.get("stream_options") or {})
            client_wants_usage = bool(options.get("include_usage"))
            # Always ask for usage, so a stream is billed from what the upstream counted.
            options["include_usage"] = True
            body["stream_options"] = options
        response = self._post(call, deployment, operation, body=body, stream=call.stream)
        if not call.stream:
            content = response.content
            return Reply(body=content, usage=_usage_of(content))
        reply = Reply(content_type="text/event-stream")
        reply.stream = _closing(response, relay_openai_events(http.iter_body(response), reply, client_wants_usage))
        return reply

    def _json(self, call: Call, deployment: Deployment, operation: str) -> Reply:
        """A JSON answer passed through as received; usage read from it."""
        content = self._post(call, deployment, operation).content
        return Reply(body=content, usage=_usage_of(content))

    def _multipart(self, call: Call, deployment: Deployment, operation: str) -> Reply:
        """Uploads streamed upstream from where the gateway spooled them; the answer passed through."""
        fields = dict(call.body, model=self.model_name(deployment))
        body = MultipartBody(fields, call.files)
        response = http.post(self.url(deployment, operation), data=body,
                             headers={**self.auth_headers(deployment), "Content-Type": body.content_type},
                             timeout=deployment.param("timeout"), provider=self.name, call=call)
        content_type = response.headers.get("Content-Type") or "application/json"
        content = response.content
        usage = _usage_of(content) if content_type.startswith("application/json") else None
        return Reply(body=content, content_type=content_type, usage=_with_audio_seconds(usage, content))

    def _post(self, call: Call, deployment: Deployment, operation: str, body: dict | None = None,
              stream: bool = False):
        body = dict(call.body if body is None else body, model=self.model_name(deployment))
        timeout = deployment.param("stream_timeout" if stream else "timeout") or deployment.param("timeout")
        return http.post(self.url(deployment, operation), json_body=body, headers=self.auth_headers(deployment),
                         timeout=timeout, stream=stream, provider=self.name, call=call)

    def _stored_response(self, call: Call, deployment: Deployment, method: str, suffix: str) -> Reply:
        """GET/DELETE `responses/{id}...` where it was created; list parameters pass through."""
        response_id = call.body.get("response_id")
        if not isinstance(response_id, str) or not response_id:
            raise BadRequestError("A response id is required.", param="response_id")
        response_id = quote(response_id, safe="")  # an id never changes which URL is called
        params = {k: v for k, v in call.body.items() if k not in ("response_id", "model")}
        response = http.request(method, self.url(deployment, f"responses/{response_id}{suffix}"),
                                headers=self.auth_headers(deployment), params=params or None,
                                timeout=deployment.param("timeout"), provider=self.name, call=call)
        return Reply(body=response.content)


def _usage_of(content: bytes) -> Usage | None:
    try:
        parsed = orjson.loads(content)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(parsed, dict):
        return None
    return Usage.from_openai(parsed.get("usage"), parsed.get("model"), parsed.get("id"))


def _count_images(reply: Reply) -> Reply:
    """Images are billed per image: their count goes into the usage, beside any tokens."""
    try:
        count = len(orjson.loads(reply.body).get("data") or [])
    except (orjson.JSONDecodeError, AttributeError):
        return reply
    reply.usage = reply.usage or Usage()
    reply.usage.details["images"] = count
    return reply


def _with_audio_seconds(usage: Usage | None, content: bytes) -> Usage | None:
    """Transcriptions report seconds of audio (`usage.seconds`, or `duration` in verbose_json)."""
    if usage is None:
        try:
            parsed = orjson.loads(content)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(parsed, dict) or parsed.get("duration") is None:
            return None
        usage = Usage()
        usage.details["audio_seconds"] = float(parsed["duration"])
    elif "seconds" in usage.details:
        usage.details["audio_seconds"] = float(usage.details.pop("seconds"))
    return usage


def _closing(response, events):
    """The events, with the upstream connection closed however the stream ends."""
    try:
        yield from events
    finally:
        response.close()


@hookimpl
def dheera_ai_register_providers(register):
    register("openai", OpenAIProvider())
