"""Images: `/images/generations` (JSON) and `/images/edits` (multipart: `image`, `image[]`, `mask`)."""

from flask import Blueprint

from proxy_app import calls
from proxy_app.blueprints import route
from proxy_app.schemas import ImageEditRequestSchema, ImageGenerationRequestSchema

bp = Blueprint("images", __name__)
_generation = ImageGenerationRequestSchema()
_edit = ImageEditRequestSchema()


@route(bp, "/images/generations")
def image_generations(model=None):
    return calls.run("image_generations", _generation, model)


@route(bp, "/images/edits")
def image_edits(model=None):
    return calls.run_upload("image_edits", _edit, model)
