"""`/ui/users` and `/ui/teams`: list, search, create, edit, members, delete."""

from __future__ import annotations

import math

from flask import make_response, redirect, render_template, request, url_for

from dheera_ai.errors import DheeraAIError, NotFoundError
from proxy_app import admin
from proxy_app.admin_schemas import (
    TEAM_ROLES,
    USER_ROLES,
    TeamMemberAddSchema,
    TeamNewSchema,
    TeamUpdateSchema,
    UserNewSchema,
    UserUpdateSchema,
)
from proxy_app.blueprints import teams as team_routes
from proxy_app.blueprints import users as user_routes
from proxy_app.blueprints.keys import key_view
from proxy_app.ui import forms
from proxy_app.ui.blueprint import bp
from proxy_app.ui.session import login_required

LIMITS = ("models", "max_budget", "budget_duration", "rpm_limit", "tpm_limit", "max_parallel_requests", "metadata")
USER_FIELDS = ("user_id", "user_email", "user_role", *LIMITS)
TEAM_FIELDS = ("team_id", "team_alias", "tags", *LIMITS)
_user_new, _user_update = UserNewSchema(), UserUpdateSchema()
_team_new, _team_update, _member_add = TeamNewSchema(), TeamUpdateSchema(), TeamMemberAddSchema()


def _listing(template: str, lister, scope: str, id_column: str, **extra):
    store = admin.store()
    search = request.args.get("q", "").strip() or None
    page = forms.page_number(request.args)
    rows, total = lister(search=search, offset=(page - 1) * forms.PAGE_SIZE, limit=forms.PAGE_SIZE)
    shown = [{**admin.view(r), "spend": store.spend_of(scope, r[id_column])} for r in rows]
    return render_template(template, rows=shown, q=search or "", page=page, total=total,
                           pages=max(1, math.ceil(total / forms.PAGE_SIZE)), **extra)


# -- users ---------------------------------------------------------------------------------------

@bp.get("/users")
@login_required
def users():
    return _listing("users.html", admin.store().list_users, "user", "user_id")


@bp.route("/users/new", methods=["GET", "POST"])
@login_required
def user_new():
    if request.method == "GET":
        return render_template("user_form.html", user=None, values={"user_role": "internal_user"}, roles=USER_ROLES)
    try:
        data = forms.body(request.form, USER_FIELDS, _user_new,
                          auto_create_key=request.form.get("auto_create_key") == "on")
        created = user_routes.new_user(admin.store(), data)
    except DheeraAIError as error:
        return render_template("user_form.html", user=None, values=request.form, error=error,
                               roles=USER_ROLES), error.status
    if "key" in created:
        response = make_response(render_template("key_created.html", created=created, what="created",
                                                 for_user=created["user_id"]))
        response.headers["Cache-Control"] = "no-store"
        return response
    return redirect(url_for("ui.user_edit", user_id=created["user_id"]))


def _user_or_404(user_id: str) -> dict:
    user = admin.store().get_user(user_id)
    if user is None:
        raise NotFoundError(f"There is no user '{user_id}'.", param="user_id", code="user_not_found")
    return user


@bp.route("/users/<path:user_id>/edit", methods=["GET", "POST"])
@login_required
def user_edit(user_id):
    store = admin.store()
    user = _user_or_404(user_id)
    context = {"user": admin.view(user), "roles": USER_ROLES, "teams": store.user_teams(user_id),
               "keys": [key_view(k) for k in store.list_keys(user_id=user_id, limit=100)[0]],
               "spend": store.spend_of("user", user_id)}
    if request.method == "GET":
        return render_template("user_form.html", values=forms.values_of(user), **context)
    try:
        data = forms.body(request.form, USER_FIELDS[1:], _user_update, clear_empty=True, user_id=user_id)
        user_routes.update_user(store, data)
    except DheeraAIError as error:
        return render_template("user_form.html", values=request.form, error=error, **context), error.status
    return redirect(url_for("ui.users"))


@bp.route("/users/<path:user_id>/delete", methods=["GET", "POST"])
@login_required
def user_delete(user_id):
    _user_or_404(user_id)
    if request.method == "GET":
        return render_template("confirm.html", title="Delete user", action="Delete", danger=True, what=user_id,
                               detail="The user's keys are deleted with it and stop working at once.",
                               cancel=url_for("ui.users"))
    user_routes.delete_users(admin.store(), [user_id])
    return redirect(url_for("ui.users"))


# -- teams ---------------------------------------------------------------------------------------

@bp.get("/teams")
@login_required
def teams():
    store = admin.store()
    return _listing("teams.html", store.list_teams, "team", "team_id", members=store.team_members)


@bp.route("/teams/new", methods=["GET", "POST"])
@login_required
def team_new():
    if request.method == "GET":
        return render_template("team_form.html", team=None, values={})
    try:
        created = team_routes.new_team(admin.store(), forms.body(request.form, TEAM_FIELDS, _team_new))
    except DheeraAIError as error:
        return render_template("team_form.html", team=None, values=request.form, error=error), error.status
    return redirect(url_for("ui.team_edit", team_id=created["team_id"]))


@bp.route("/teams/<path:team_id>/edit", methods=["GET", "POST"])
@login_required
def team_edit(team_id):
    store = admin.store()
    team = team_routes.existing_team(store, team_id)
    context = {"team": team_routes.team_view(store, team), "member_roles": TEAM_ROLES,
               "keys": [key_view(k) for k in store.list_keys(team_id=team_id, limit=100)[0]],
               "spend": store.spend_of("team", team_id)}
    if request.method == "GET":
        return render_template("team_form.html", values=forms.values_of(team), **context)
    try:
        data = forms.body(request.form, TEAM_FIELDS[1:], _team_update, clear_empty=True, team_id=team_id)
        team_routes.update_team(store, data)
    except DheeraAIError as error:
        return render_template("team_form.html", values=request.form, error=error, **context), error.status
    return redirect(url_for("ui.team_edit", team_id=team_id, saved=1))


@bp.post("/teams/<path:team_id>/members")
@login_required
def team_member_add(team_id):
    member = {"user_id": request.form.get("member_user_id", "").strip(),
              "role": request.form.get("member_role", "user")}
    data = forms.load(_member_add, {"team_id": team_id, "member": member})
    team_routes.add_members(admin.store(), data)
    return redirect(url_for("ui.team_edit", team_id=team_id))


@bp.post("/teams/<path:team_id>/members/remove")
@login_required
def team_member_remove(team_id):
    team_routes.remove_members(admin.store(), {"team_id": team_id, "user_id": request.form.get("user_id", "")})
    return redirect(url_for("ui.team_edit", team_id=team_id))


@bp.route("/teams/<path:team_id>/delete", methods=["GET", "POST"])
@login_required
def team_delete(team_id):
    team = team_routes.existing_team(admin.store(), team_id)
    if request.method == "GET":
        return render_template("confirm.html", title="Delete team", action="Delete", danger=True,
                               what=team["team_alias"] or team_id,
                               detail="The team's keys are deleted with it and stop working at once.",
                               cancel=url_for("ui.teams"))
    team_routes.delete_teams(admin.store(), [team_id])
    return redirect(url_for("ui.teams"))
