"""The Files and Batch APIs from the SDK (`dheera_ai.create_file`, `create_batch`, ...), LiteLLM's names.

They are resource calls, not model calls: no model, no router, no pricing, so they go straight to
where `custom_llm_provider` says, with the providers' own addresses and credentials (the same
deployment a model call builds, and the same provider classes' `api_base`/`auth_headers`):

- `openai` (the default): `{api_base}/files`, `{api_base}/batches`; `OPENAI_API_KEY`, `OPENAI_API_BASE`;
- `azure`: `{api_base}/openai/files?api-version=...` (or `/openai/v1/...` for the v1 API), an
  `api-key` header; `AZURE_API_BASE`, `AZURE_API_KEY`, `AZURE_API_VERSION`;
- a Dheera AI gateway: `custom_llm_provider="dheera_ai_proxy"`, `use_dheera_ai_proxy=True` or
  `dheera_ai.use_dheera_ai_proxy`, at `api_base`/`dheera_ai.api_base`/`DHEERA_AI_PROXY_API_BASE`.

Requests go through `dheera_ai.http` (so the async twins' go through the caller's event loop); an
upload is a `dheera_ai.multipart.MultipartBody` read from the file in blocks as it is sent.
"""

from __future__ import annotations

import contextlib
from urllib.parse import quote

import orjson

from dheera_ai import http
from dheera_ai.errors import BadRequestError
from dheera_ai.sdk import objects
from dheera_ai.sdk.uploads import uploads

GATEWAY = "dheera_ai_proxy"
SUPPORTED = ("openai", "azure", GATEWAY)
# Arguments that say where and how to call, not what to send.
OPTIONS = ("api_base", "base_url", "api_key", "api_version", "timeout", "custom_llm_provider",
           "use_dheera_ai_proxy", "extra_body", "extra_headers", "extra_query")


class _Target:
    """Where one call goes: the provider, the deployment built from the call's options."""

    def __init__(self, options: dict):
        from dheera_ai.sdk import client

        provider_name = options.get("custom_llm_provider") or "openai"
        if provider_name == GATEWAY:
            options = {**options, "use_dheera_ai_proxy": True}
        self.deployment = client.deployment_for("", {**options, "custom_llm_provider": provider_name})
        self.name = self.deployment.provider
        if self.name not in SUPPORTED:
            raise BadRequestError(f"Files and batches go to {', '.join(SUPPORTED)}; not to '{self.name}'.",
                                  param="custom_llm_provider", code="unsupported_provider")
        self.provider = client.engine().providers[self.name]
        self.options = options

    def url(self, path: str) -> str:
        """The URL of `path` ("files", "batches/b1/cancel"): the provider's own (Azure's is the
        resource's `/openai/...` with its `api-version`), as the gateway forwards batches there."""
        return self.provider.batch_url(self.deployment, path)

    def send(self, method: str, path: str, *, query: dict | None = None, json_body: dict | None = None,
             data=None, headers: dict | None = None, stream: bool = False):
        """The upstream's 2xx answer; its error answer raised as the SDK's error class, its message kept."""
        url = self.url(path)
        params = {**{k: v for k, v in (query or {}).items() if v is not None},
                  **(self.options.get("extra_query") or {})}
        headers = {**self.provider.auth_headers(self.deployment), **(headers or {}),
                   **(self.options.get("extra_headers") or {})}
        timeout = self.options.get("timeout")
        with self._errors():
            return http.request(method, url, json_body=json_body, data=data, headers=headers,
                                params=params or None, timeout=float(timeout) if timeout is not None else None,
                                stream=stream, provider=self.name)

    def json(self, method: str, path: str, result, **kwargs):
        response = self.send(method, path, **kwargs)
        return result(orjson.loads(response.content), self.hidden())

    def hidden(self) -> dict:
        return {"custom_llm_provider": self.name, "api_base": self.provider.api_base(self.deployment),
                "response_cost": 0.0}

    def _errors(self):
        if self.name != GATEWAY:
            return contextlib.nullcontext()
        # A gateway's error keeps the class it raised there (its code and type read back).
        from dheera_ai.providers import upstream_errors
        from plugins.providers.dheera_ai_proxy import _raised_there

        return upstream_errors(_raised_there, GATEWAY)


def _split(params: dict) -> tuple[dict, dict]:
    """(where and how to call, what to send): None means "not given" and is left out."""
    from dheera_ai.sdk import client

    return client.split_options(params, OPTIONS)


def _id(value, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise BadRequestError(f"{name} is required.", param=name)
    return quote(value, safe="")  # an id never changes which URL is called


def _form_fields(body: dict) -> dict:
    """Form fields as OpenAI's API takes them: a dict is `name[key]` fields (`expires_after[seconds]`)."""
    fields = {}
    for name, value in body.items():
        if isinstance(value, dict):
            fields.update({f"{name}[{key}]": item for key, item in value.items() if item is not None})
        else:
            fields[name] = value
    return fields


# -- files -------------------------------------------------------------------------------------
def create_file(file, purpose: str, params: dict) -> objects.FileObject:
    from dheera_ai.multipart import MultipartBody

    options, body = _split(params)
    if not purpose:
        raise BadRequestError("purpose is required ('batch', 'fine-tune', 'assistants', 'user_data', ...).",
                              param="purpose")
    target = _Target(options)
    with uploads([("file", file)]) as files:
        form = MultipartBody(_form_fields({"purpose": purpose, **body}), files)
        return target.json("POST", "files", objects.FileObject, data=form,
                           headers={"Content-Type": form.content_type})


def file_retrieve(file_id: str, params: dict) -> objects.FileObject:
    options, _ = _split(params)
    return _Target(options).json("GET", f"files/{_id(file_id, 'file_id')}", objects.FileObject)


def file_list(params: dict) -> objects.FileList:
    options, query = _split(params)
    return _Target(options).json("GET", "files", objects.FileList, query=query)


def file_delete(file_id: str, params: dict) -> objects.FileDeleted:
    options, _ = _split(params)
    return _Target(options).json("DELETE", f"files/{_id(file_id, 'file_id')}", objects.FileDeleted)


def file_content(file_id: str, params: dict) -> objects.BinaryResponse:
    """The file's bytes as they arrive (`.content`, `.text`, `.read()`, `.iter_bytes()`, `.write_to_file()`)."""
    options, _ = _split(params)
    target = _Target(options)
    response = target.send("GET", f"files/{_id(file_id, 'file_id')}/content", stream=True)
    return objects.BinaryResponse(_closing(response), response.headers.get("Content-Type")
                                  or "application/octet-stream", target.hidden())


def _closing(response):
    try:
        yield from http.iter_body(response)
    finally:
        response.close()


# -- batches -----------------------------------------------------------------------------------
def create_batch(params: dict) -> objects.Batch:
    options, body = _split(params)
    for name in ("input_file_id", "endpoint"):
        if not body.get(name):
            raise BadRequestError(f"{name} is required.", param=name)
    return _Target(options).json("POST", "batches", objects.Batch, json_body=body)


def retrieve_batch(batch_id: str, params: dict) -> objects.Batch:
    options, _ = _split(params)
    return _Target(options).json("GET", f"batches/{_id(batch_id, 'batch_id')}", objects.Batch)


def list_batches(params: dict) -> objects.BatchList:
    options, query = _split(params)
    return _Target(options).json("GET", "batches", objects.BatchList, query=query)


def cancel_batch(batch_id: str, params: dict) -> objects.Batch:
    options, body = _split(params)
    return _Target(options).json("POST", f"batches/{_id(batch_id, 'batch_id')}/cancel", objects.Batch,
                                 json_body=body or None)
