"""Embeddings: `/embeddings` (strings or token arrays; `encoding_format`, `dimensions` passed on)."""

from flask import Blueprint

from proxy_app import calls
from proxy_app.blueprints import route
from proxy_app.schemas import EmbeddingRequestSchema

bp = Blueprint("embeddings", __name__)
_schema = EmbeddingRequestSchema()


@route(bp, "/embeddings")
def embeddings(model=None):
    return calls.run("embeddings", _schema, model)
