"""The `/ui` blueprint object, shared by the page modules that add routes to it."""

from flask import Blueprint

from proxy_app.admin import timestamp
from proxy_app.ui.charts import dollars

bp = Blueprint("ui", __name__, url_prefix="/ui", template_folder="templates", static_folder="static",
               static_url_path="/static")


@bp.app_template_filter("isotime")
def isotime(seconds) -> str:
    """Epoch seconds as ISO 8601 UTC (how spend rows keep times)."""
    return timestamp(seconds) or ""


bp.add_app_template_filter(dollars, "money")
