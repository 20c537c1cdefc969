"""Cohere: rerank and embeddings, on Cohere's v2 API by default or v1 (`api_version: v1`).

`POST {api_base}/v2/rerank` (or `/v1/rerank`) and `/v2/embed` (or `/v1/embed`) with
`Authorization: Bearer <key>`. Request and response shapes are translated by
`dheera_ai.translate.cohere`; the gateway answers rerank in Cohere's shape whichever version served it.
"""

from __future__ import annotations

from dheera_ai import hookimpl, http
from dheera_ai.errors import BadRequestError
from dheera_ai.providers import (
    Provider,
    bad_request,
    embedding_inputs,
    encode_embeddings,
    require_param,
    server_environ,
    upstream_errors,
)
from dheera_ai.translate import cohere as translate
from dheera_ai.types import Call, Deployment, Reply, Usage

DEFAULT_API_BASE = "https://api.cohere.com"
MAX_TEXTS_PER_EMBED = 96  # Cohere's limit per embed call; longer inputs are sent in batches


def error_kind(status: int, body) -> str:
    return translate.cohere_error_to_status(body if isinstance(body, dict) else {}, status)[0]


class CohereProvider(Provider):
    name = "cohere"

    def api_version(self, deployment: Deployment) -> int:
        version = str(deployment.param("api_version", "v2")).lower().removeprefix("v")
        if version not in ("1", "2"):
            raise BadRequestError(f"cohere: api_version must be v1 or v2, not {version!r}.", param="api_version")
        return int(version)

    def url(self, deployment: Deployment, operation: str) -> str:
        base = deployment.param("api_base") or server_environ(deployment, "COHERE_API_BASE") or DEFAULT_API_BASE
        base = base.rstrip("/")
        base = base.removesuffix("/v1").removesuffix("/v2")
        return f"{base}/v{self.api_version(deployment)}/{operation}"

    def auth_headers(self, deployment: Deployment) -> dict:
        return {"Authorization": "Bearer " + require_param(deployment, "api_key", "COHERE_API_KEY")}

    def _post(self, call: Call, deployment: Deployment, operation: str, body: dict) -> dict:
        with upstream_errors(error_kind, self.name):
            response = http.post(self.url(deployment, operation), json_body=body,
                                 headers=self.auth_headers(deployment), timeout=deployment.param("timeout"),
                                 provider=self.name, call=call)
        return response.json()

    def rerank(self, call: Call, deployment: Deployment) -> Reply:
        """A Cohere-shaped rerank request, answered in Cohere's shape (documents re-attached)."""
        try:
            body = translate.rerank_request_for_cohere(call.body, deployment.model, self.api_version(deployment))
            result = translate.rerank_response_from_cohere(self._post(call, deployment, "rerank", body), call.body)
        except ValueError as exc:
            raise bad_request(exc, self.name) from None
        return Reply(data=result, usage=Usage(details=result["meta"]["billed_units"]))

    def embeddings(self, call: Call, deployment: Deployment) -> Reply:
        version = self.api_version(deployment)
        try:
            inputs = embedding_inputs(call.body)
            batches = [translate.embed_request_for_cohere(
                inputs[i:i + MAX_TEXTS_PER_EMBED], deployment.model, call.body.get("input_type"),
                call.body.get("dimensions"), call.body.get("encoding_format"), version)
                for i in range(0, len(inputs), MAX_TEXTS_PER_EMBED)]
        except ValueError as exc:
            raise bad_request(exc, self.name) from None
        data, tokens = [], 0
        for body in batches:
            part = translate.cohere_embed_to_openai(self._post(call, deployment, "embed", body), deployment.model)
            data += [dict(item, index=len(data) + item["index"]) for item in part["data"]]
            tokens += part["usage"]["prompt_tokens"]
        result = {"object": "list", "model": deployment.model, "data": data,
                  "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
        return Reply(data=encode_embeddings(result, call.body.get("encoding_format")),
                     usage=Usage(tokens, 0, tokens))


@hookimpl
def dheera_ai_register_providers(register):
    register("cohere", CohereProvider())
