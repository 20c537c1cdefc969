"""`GET /openapi.json`: the gateway's own OpenAPI 3 document, built from the app's routes
(`app.url_map`) and the marshmallow request schemas (apispec), and `/docs`, Swagger UI served
from the `swagger-ui-bundle` package's files (nothing fetched from the internet).

Every route is listed: a route nobody described here still appears, with the error answers every
route shares, so the document cannot silently fall behind the app.
"""

from __future__ import annotations

import functools
import re

from flask import Blueprint, Response, current_app, send_from_directory

import dheera_ai
from dheera_ai.errors import NotFoundError
from proxy_app import admin_schemas as admin
from proxy_app import schemas
from proxy_app.blueprints import azure

bp = Blueprint("openapi", __name__)

OPENAPI_VERSION = "3.0.3"  # what the bundled Swagger UI (4.x) and schemathesis both read
JSON, MULTIPART, SSE = "application/json", "multipart/form-data", "text/event-stream"

# endpoint -> (summary, request schema, body content type, streams?)
OPERATIONS = {
    "chat.chat_completions": ("Chat completion (plain or streamed)", schemas.ChatCompletionRequestSchema, JSON, True),
    "completions.completions": ("Legacy text completion", schemas.CompletionRequestSchema, JSON, True),
    "embeddings.embeddings": ("Embeddings", schemas.EmbeddingRequestSchema, JSON, False),
    "images.image_generations": ("Image generation", schemas.ImageGenerationRequestSchema, JSON, False),
    "images.image_edits": ("Image edit (multipart: image, mask)", schemas.ImageEditRequestSchema, MULTIPART, False),
    "audio.audio_speech": ("Text to speech (audio streamed out)", schemas.SpeechRequestSchema, JSON, False),
    "audio.audio_transcriptions": ("Transcription (multipart: file)", schemas.TranscriptionRequestSchema,
                                   MULTIPART, False),
    "audio.audio_translations": ("Translation to English (multipart: file)", schemas.TranscriptionRequestSchema,
                                 MULTIPART, False),
    "moderations.moderations": ("Moderation", schemas.ModerationRequestSchema, JSON, False),
    "rerank.rerank": ("Rerank (Cohere's shape)", schemas.RerankRequestSchema, JSON, False),
    "responses.create": ("Responses API: create", schemas.ResponseCreateRequestSchema, JSON, True),
    "responses.retrieve": ("Responses API: get a stored response", None, None, False),
    "responses.delete": ("Responses API: delete a stored response", None, None, False),
    "responses.input_items": ("Responses API: a stored response's input items", None, None, False),
    "messages.messages": ("Anthropic Messages API", schemas.AnthropicMessagesRequestSchema, JSON, True),
    "models.list_models": ("The model names this key may use", None, None, False),
    "models.get_model": ("One model", None, None, False),
    "models.routes": ("Every route served (LiteLLM's /routes)", None, None, False),
    "spend.global_spend_teams": ("Spend per team, per day and in all (LiteLLM's shape)", None, None, False),
    "spend.global_spend_report": ("Spend per day per team, key, customer or model (LiteLLM's shape)",
                                  None, None, False),
    "health.liveness": ("Liveness: the process answers", None, None, False),
    "health.readiness": ("Readiness: state store, Redis, cooldowns, spool", None, None, False),
    "health.health": ("Every deployment checked (admin)", None, None, False),
    "metrics.metrics": ("Prometheus metrics", None, None, False),
    "keys.generate": ("Make a virtual key", admin.KeyGenerateSchema, JSON, False),
    "keys.info": ("One key", None, None, False),
    "keys.list_keys": ("Keys, paged", None, None, False),
    "keys.update": ("Change a key", admin.KeyUpdateSchema, JSON, False),
    "keys.delete": ("Delete keys", admin.KeyDeleteSchema, JSON, False),
    "keys.regenerate": ("A new secret for a key", admin.KeyRegenerateSchema, JSON, False),
    "keys.block": ("Block a key", admin.KeyRefSchema, JSON, False),
    "keys.unblock": ("Unblock a key", admin.KeyRefSchema, JSON, False),
    "users.new": ("Make a user", admin.UserNewSchema, JSON, False),
    "users.info": ("One user", None, None, False),
    "users.update": ("Change a user", admin.UserUpdateSchema, JSON, False),
    "users.delete": ("Delete users", admin.UserDeleteSchema, JSON, False),
    "teams.new": ("Make a team", admin.TeamNewSchema, JSON, False),
    "teams.info": ("One team", None, None, False),
    "teams.update": ("Change a team", admin.TeamUpdateSchema, JSON, False),
    "teams.member_add": ("Add team members", admin.TeamMemberAddSchema, JSON, False),
    "teams.member_delete": ("Remove team members", admin.TeamMemberDeleteSchema, JSON, False),
    "teams.delete": ("Delete teams", admin.TeamDeleteSchema, JSON, False),
    "users.list_users": ("Users, paged (LiteLLM's shape)", None, None, False),
    "teams.list_teams": ("Every team with its members and spend", None, None, False),
    "teams.member_update": ("Change a team member's role", admin.TeamMemberUpdateSchema, JSON, False),
    "model_admin.info": ("The deployments this key may use, secrets masked (LiteLLM's /model/info)",
                         None, None, False),
    "model_admin.group_info": ("One entry per model group: providers, limits, prices", None, None, False),
    "model_admin.new": ("Add a model (kept in the state store, served by every instance)", None, JSON, False),
    "model_admin.update": ("Change a model added with /model/new", None, JSON, False),
    "model_admin.delete": ("Delete a model added with /model/new", None, JSON, False),
    "openapi.document": ("This document", None, None, False),
    "openapi.docs": ("Swagger UI for this document", None, None, False),
    "openapi.docs_asset": ("Swagger UI's files", None, None, False),
}

QUERY = {  # endpoint -> query parameters it reads
    "keys.info": ["key"],
    "keys.list_keys": ["page", "size", "user_id", "team_id", "key_alias"],
    "users.info": ["user_id"],
    "teams.info": ["team_id"],
    "models.list_models": ["only_model_access_groups"],
    "users.list_users": ["page", "page_size", "role"],
    "model_admin.info": ["litellm_model_id", "model"],
    "model_admin.group_info": ["model_group"],
    "health.health": ["model", "timeout"],
    "azure.deployment_call": ["api-version"],
}
PUBLIC = {"health.liveness", "health.readiness", "openapi.document", "openapi.docs", "openapi.docs_asset"}
FILE_FIELDS = {"images.image_edits": ["image", "mask"], "audio.audio_transcriptions": ["file"],
               "audio.audio_translations": ["file"]}
ERROR_STATUSES = {"400": "Bad request (the field is named in `param`)", "401": "Missing or wrong key",
                  "403": "The key may not do this", "404": "Unknown route or object",
                  "413": "Body over the size limit", "429": "Rate limited or every deployment cooling down",
                  "500": "Unexpected (the call id is in the message)"}
_TEXT = {"schema": {"type": "string"}}
OTHER_SUCCESS_CONTENT = {  # endpoints whose success is not JSON
    "audio.audio_speech": {"audio/mpeg": {"schema": {"type": "string", "format": "binary"}}},
    "metrics.metrics": {"text/plain": _TEXT},
    "openapi.docs": {"text/html": _TEXT},
    "openapi.docs_asset": {"text/css": _TEXT, "text/javascript": _TEXT},
}
_PARAM = re.compile(r"<(?:[a-z]+:)?([a-zA-Z_]+)>")


def error_schema() -> dict:
    """OpenAI's error object, which every route answers with (`/v1/messages`: Anthropic's)."""
    inner = {"type": "object", "required": ["message", "type"], "properties": {
        "message": {"type": "string"}, "type": {"type": "string"},
        "param": {"type": "string", "nullable": True}, "code": {"type": "string", "nullable": True}}}
    return {"type": "object", "required": ["error"], "properties": {"error": inner}}


def build(app) -> dict:
    # Imported here: a worker that is never asked for its document does not carry apispec.
    from apispec import APISpec
    from apispec.ext.marshmallow import MarshmallowPlugin

    spec = APISpec(title="Dheera AI", version=dheera_ai.__version__, openapi_version=OPENAPI_VERSION,
                   plugins=[MarshmallowPlugin()],
                   info={"description": "An OpenAI-compatible LLM gateway. Keys go in `Authorization: Bearer`."})
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    spec.components.schema("Error", error_schema())
    paths: dict = {}
    for rule in app.url_map.iter_rules():
        if not is_api(rule):
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            for path, described, prefix in _expanded(rule):
                operation = _operation(spec, described)
                operation["summary"] = prefix + operation["summary"]
                operation["operationId"] = method.lower() + re.sub(r"[^a-zA-Z0-9]+", "_", path).rstrip("_")
                params = _path_params(path) + [{"in": "query", "name": q, "required": False,
                                                "schema": {"type": "string"}} for q in QUERY.get(rule.endpoint, ())]
                if params:
                    operation["parameters"] = params
                paths.setdefault(path, {})[method.lower()] = operation
    for path, operations in sorted(paths.items()):
        spec.path(path=path, operations=operations)
    return spec.to_dict()


def is_api(rule) -> bool:
    """Every route but the admin UI's pages (`/ui`: HTML and forms for people, not operations)."""
    return not rule.endpoint.startswith("ui.")


def _expanded(rule):
    """(OpenAPI path, the endpoint whose description it takes, a summary prefix) for a rule:
    Azure's one rule is one path per operation, each described as the family's own route."""
    if rule.endpoint == "azure.deployment_call":
        for name, view in azure.OPERATIONS.items():
            family = view.__module__.rsplit(".", 1)[-1]
            yield f"/openai/deployments/{{deployment}}/{name}", f"{family}.{view.__name__}", "Azure OpenAI: "
        return
    yield _PARAM.sub(r"{\1}", rule.rule), rule.endpoint, ""


def _operation(spec, endpoint: str) -> dict:
    summary, schema, content_type, streams = OPERATIONS.get(endpoint, (endpoint, None, None, False))
    ok_content = {JSON: {"schema": {"type": "object"}}}
    if streams:
        ok_content[SSE] = {"schema": {"type": "string"}}
    ok_content = OTHER_SUCCESS_CONTENT.get(endpoint, ok_content)
    error = {"content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}}}
    operation = {"summary": summary,
                 "responses": {"200": {"description": "OK", "content": ok_content},
                               **{status: {"description": text, **error} for status, text in ERROR_STATUSES.items()}}}
    if endpoint not in PUBLIC:
        operation["security"] = [{"bearer": []}]
    if schema is not None:
        name = schema.__name__.removesuffix("Schema")
        if name not in spec.components.schemas:
            spec.components.schema(name, schema=schema)
        body_schema: dict = {"$ref": f"#/components/schemas/{name}"}
        if content_type == MULTIPART:
            files = {f: {"type": "string", "format": "binary"} for f in FILE_FIELDS.get(endpoint, ())}
            body_schema = {"allOf": [body_schema, {"type": "object", "properties": files}]}
        operation["requestBody"] = {"required": True, "content": {content_type: {"schema": body_schema}}}
    return operation


def _path_params(path: str) -> list:
    return [{"in": "path", "name": name, "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"{([^}]+)}", path)]


@functools.cache
def _swagger_dir() -> str | None:
    try:
        import swagger_ui_bundle
    except ImportError:
        return None
    return swagger_ui_bundle.swagger_ui_path


@bp.get("/openapi.json")
def document():
    cached = current_app.extensions.get("dheera_ai.openapi")
    if cached is None:
        cached = current_app.extensions["dheera_ai.openapi"] = current_app.json.dumps(build(current_app))
    return Response(cached, content_type=JSON)


DOCS_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Dheera AI API</title>
<link rel="stylesheet" href="/docs/swagger-ui.css"></head>
<body><div id="ui"></div><script src="/docs/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/openapi.json", dom_id: "#ui", validatorUrl: null});</script></body></html>
"""


@bp.get("/docs")
def docs():
    if _swagger_dir() is None:
        raise NotFoundError("/docs needs the swagger-ui-bundle package; /openapi.json is always served.")
    return Response(DOCS_PAGE, content_type="text/html; charset=utf-8")


@bp.get("/docs/<name>")
def docs_asset(name):
    directory = _swagger_dir()
    if directory is None or name not in ("swagger-ui.css", "swagger-ui-bundle.js"):
        raise NotFoundError("No such file; see /docs.")
    return send_from_directory(directory, name, max_age=86400)
