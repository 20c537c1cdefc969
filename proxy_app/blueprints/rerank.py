"""Rerank in Cohere's shape: `/rerank`, `/v1/rerank`, `/v2/rerank`."""

from flask import Blueprint

from proxy_app import calls
from proxy_app.blueprints import route
from proxy_app.schemas import RerankRequestSchema

bp = Blueprint("rerank", __name__)
_schema = RerankRequestSchema()


@route(bp, "/rerank", prefixes=("", "/v1", "/v2"))
def rerank():
    return calls.run("rerank", _schema)
