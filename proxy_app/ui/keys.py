"""`/ui/keys`: list, search, create (the key shown once), edit, block, regenerate, delete."""

from __future__ import annotations

import math

from flask import make_response, redirect, render_template, request, url_for

from dheera_ai.errors import DheeraAIError
from proxy_app import admin
from proxy_app.admin_schemas import KeyGenerateSchema, KeyUpdateSchema
from proxy_app.blueprints import keys as key_routes
from proxy_app.ui import forms
from proxy_app.ui.blueprint import bp
from proxy_app.ui.session import login_required, safe_target

FIELDS = ("key_alias", "models", "max_budget", "budget_duration", "duration", "rpm_limit", "tpm_limit",
          "max_parallel_requests", "team_id", "user_id", "tags", "metadata")
_generate, _update = KeyGenerateSchema(), KeyUpdateSchema()


@bp.get("/keys")
@login_required
def keys():
    store = admin.store()
    search = request.args.get("q", "").strip() or None
    page = forms.page_number(request.args)
    rows, total = store.list_keys(search=search, offset=(page - 1) * forms.PAGE_SIZE, limit=forms.PAGE_SIZE)
    shown = [{**key_routes.key_view(r), "spend": store.spend_of("key", r["key_hash"])} for r in rows]
    return render_template("keys.html", keys=shown, q=search or "", page=page, total=total,
                           pages=max(1, math.ceil(total / forms.PAGE_SIZE)))


@bp.route("/keys/new", methods=["GET", "POST"])
@login_required
def key_new():
    if request.method == "GET":
        return render_template("key_form.html", key=None, values={})
    try:
        created = key_routes.create_key(admin.store(), forms.body(request.form, FIELDS, _generate))
    except DheeraAIError as error:
        return render_template("key_form.html", key=None, values=request.form, error=error), error.status
    return _show_once(created, "created")


def _show_once(created: dict, what: str):
    """The one page that ever shows the key: not cached, not kept in history."""
    response = make_response(render_template("key_created.html", created=created, what=what))
    response.headers["Cache-Control"] = "no-store"
    return response


def _key_or_404(token: str) -> dict:
    return key_routes.key_view(key_routes.existing_key(admin.store(), token))


@bp.route("/keys/<token>", methods=["GET", "POST"])
@login_required
def key_edit(token):
    key = _key_or_404(token)
    if request.method == "GET":
        return render_template("key_form.html", key=key, values=forms.values_of(key))
    try:
        data = forms.body(request.form, FIELDS, _update, clear_empty=True, key=token)
        key_routes.update_key(admin.store(), data)
    except DheeraAIError as error:
        return render_template("key_form.html", key=key, values=request.form, error=error), error.status
    return redirect(url_for("ui.keys", saved=key["key_alias"] or key["key_name"]))


@bp.post("/keys/<token>/block")
@login_required
def key_block(token):
    key_routes.set_blocked(admin.store(), token, True)
    return redirect(safe_target(request.form.get("back"), "ui.keys"))


@bp.post("/keys/<token>/unblock")
@login_required
def key_unblock(token):
    key_routes.set_blocked(admin.store(), token, False)
    return redirect(safe_target(request.form.get("back"), "ui.keys"))


@bp.route("/keys/<token>/regenerate", methods=["GET", "POST"])
@login_required
def key_regenerate(token):
    key = _key_or_404(token)
    if request.method == "GET":
        return render_template("confirm.html", title="Regenerate key", action="Regenerate",
                               what=key["key_alias"] or key["key_name"],
                               detail="The current key stops working at once; callers need the new one.",
                               cancel=url_for("ui.keys"))
    return _show_once(key_routes.regenerate_key(admin.store(), {"key": token}), "regenerated")


@bp.route("/keys/<token>/delete", methods=["GET", "POST"])
@login_required
def key_delete(token):
    key = _key_or_404(token)
    if request.method == "GET":
        return render_template("confirm.html", title="Delete key", action="Delete", danger=True,
                               what=key["key_alias"] or key["key_name"],
                               detail="Calls with this key are refused from now on. Its spend history stays.",
                               cancel=url_for("ui.keys"))
    key_routes.delete_keys(admin.store(), {"keys": [token]})
    return redirect(url_for("ui.keys"))
