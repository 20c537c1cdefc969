"""Moderations: `/moderations`."""

from flask import Blueprint

from proxy_app import calls
from proxy_app.blueprints import route
from proxy_app.schemas import ModerationRequestSchema

bp = Blueprint("moderations", __name__)
_schema = ModerationRequestSchema()


@route(bp, "/moderations")
def moderations(model=None):
    return calls.run("moderations", _schema, model)
