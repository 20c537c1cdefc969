"""The admin UI's rules, through Flask's test client: who may log in, what the cookie is, what a
form needs, what a page never shows, and that the logs page pages by index at 100,000 rows.
(tests/test_ui_browser.py drives the same pages in Chromium.)"""

from __future__ import annotations

import re
import time

import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from proxy_app.store.sqlite import SQLiteStore
from tests.conftest import MASTER_KEY
from tests.support.spend_rows import spend_row


def form_token(page) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)


def log_in(client, key=MASTER_KEY, **environ):
    page = client.get("/ui/login")
    return client.post("/ui/login", data={"api_key": key, "csrf_token": form_token(page)}, **environ)


@pytest.fixture
def ui(client):
    """A test client logged in with the master key; `ui.csrf` is its session's form token."""
    assert log_in(client).status_code == 302
    client.csrf = form_token(client.get("/ui/keys/new"))
    return client


def test_the_session_cookie_is_signed_httponly_strict_and_holds_no_key(client):
    answer = log_in(client)
    assert answer.status_code == 302 and answer.headers["Location"] == "/ui/"
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/ui" in cookie
    assert "Secure" not in cookie  # plain http: a Secure cookie would never come back
    assert MASTER_KEY not in cookie and "Max-Age=28800" in cookie
    assert client.get("/ui/keys").status_code == 200


def test_behind_tls_the_cookie_is_secure(client):
    answer = log_in(client, headers={"X-Forwarded-Proto": "https"})
    assert "Secure" in answer.headers["Set-Cookie"]


def test_a_forged_or_expired_cookie_is_no_session(client, app):
    client.set_cookie("dheera_ai_ui", "eyJ3aG8iOiJtYXN0ZXIifQ.forged.signature", path="/ui")
    assert client.get("/ui/keys").headers["Location"].startswith("/ui/login")
    with app.test_request_context():
        from proxy_app.ui import session
        class SignedLongAgo(TimestampSigner):
            def get_timestamp(self):
                return int(time.time()) - session.SESSION_SECONDS - 5

        payload = {"who": "master", "csrf": "x", "master": session._master_fingerprint()}
        fresh = URLSafeTimedSerializer(session.secret(), salt="dheera_ai.ui.session").dumps(payload)
        old = URLSafeTimedSerializer(session.secret(), salt="dheera_ai.ui.session", signer=SignedLongAgo)
        stale = old.dumps(payload)
    client.set_cookie("dheera_ai_ui", fresh, path="/ui")
    assert client.get("/ui/keys").status_code == 200
    client.set_cookie("dheera_ai_ui", stale, path="/ui")
    assert client.get("/ui/keys").headers["Location"].startswith("/ui/login")


def test_a_configured_session_secret_signs_the_cookie(make_app, base_config):
    base_config["general_settings"]["ui_session_secret"] = "a-long-secret-for-the-ui-cookies"
    client = make_app(base_config).test_client()
    cookie = log_in(client).headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
    signer = URLSafeTimedSerializer("a-long-secret-for-the-ui-cookies", salt="dheera_ai.ui.session")
    assert signer.loads(cookie)["who"] == "master"
    # The same secret, another master key: that master session is over.
    base_config["general_settings"]["master_key"] = "sk-the-rotated-master-key"
    rotated = make_app(base_config).test_client()
    rotated.set_cookie("dheera_ai_ui", cookie, path="/ui")
    assert rotated.get("/ui/keys").headers["Location"].startswith("/ui/login")


def test_a_non_admin_key_is_refused_clearly_and_an_admin_users_key_gets_in(ui, client, auth):
    client.post("/user/new", headers=auth, json={"user_id": "bob", "auto_create_key": False})
    client.post("/user/new", headers=auth, json={"user_id": "root", "user_role": "proxy_admin",
                                                "auto_create_key": False})
    plain = client.post("/key/generate", headers=auth, json={"user_id": "bob"}).json["key"]
    client.post("/team/new", headers=auth, json={"team_id": "platform",  # a key's user must be in its team
                                                "members_with_roles": [{"user_id": "root", "role": "user"}]})
    admin_key = client.post("/key/generate", headers=auth, json={"user_id": "root", "key_alias": "ops",
                                                                "team_id": "platform"}).json["key"]
    client.post("/ui/logout", data={"csrf_token": ui.csrf})
    refused = log_in(client, plain)
    assert refused.status_code == 403 and "is not an admin key" in refused.get_data(as_text=True)
    assert "Set-Cookie" not in refused.headers
    assert log_in(client, admin_key).status_code == 302
    assert "ops" in client.get("/ui/").get_data(as_text=True)
    # The session lasts while the API would let the key in: not with its team blocked, nor blocked itself.
    client.post("/team/update", headers=auth, json={"team_id": "platform", "blocked": True})
    assert client.get("/ui/").status_code == 302
    client.post("/team/update", headers=auth, json={"team_id": "platform", "blocked": False})
    assert client.get("/ui/").status_code == 200
    client.post("/key/block", headers=auth, json={"key": admin_key})
    assert client.get("/ui/").status_code == 302


def test_wrong_keys_are_rate_limited_per_address_across_workers(client, make_app, base_config):
    for _ in range(5):
        assert log_in(client, "sk-wrong-key-123456").status_code == 401
    blocked = log_in(client, MASTER_KEY)  # even the right key waits: the address is guessing
    assert blocked.status_code == 429 and "Too many wrong keys" in blocked.get_data(as_text=True)
    assert log_in(client, MASTER_KEY, environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 302
    # Another worker (another app on the same store) counts the same guesses.
    other_worker = make_app(base_config).test_client()
    assert log_in(other_worker, MASTER_KEY).status_code == 429
    # Behind nginx on this host, each client is counted by the address nginx appended.
    behind_nginx = {"X-Forwarded-For": "10.9.9.9, 192.0.2.7"}
    assert log_in(client.application.test_client(), MASTER_KEY, headers=behind_nginx).status_code == 302


def test_login_needs_its_form_token_and_without_a_master_key_the_ui_is_off(client, make_app, base_config):
    answer = client.post("/ui/login", data={"api_key": MASTER_KEY})
    assert answer.status_code == 403 and "login form has expired" in answer.get_data(as_text=True)
    del base_config["general_settings"]["master_key"]
    open_gateway = make_app(base_config).test_client()
    page = open_gateway.get("/ui/login").get_data(as_text=True)
    assert "has no master key" in page and "api_key" not in page
    assert open_gateway.get("/ui/keys").headers["Location"].startswith("/ui/login")


def test_every_state_changing_form_needs_the_session_csrf_token(ui, client, auth):
    token = client.post("/key/generate", headers=auth, json={"key_alias": "victim"}).json["token"]
    for path in (f"/ui/keys/{token}/block", f"/ui/keys/{token}/delete", f"/ui/keys/{token}/regenerate",
                 "/ui/keys/new", "/ui/users/new", "/ui/teams/new", "/ui/models/health", "/ui/logout"):
        for data in ({}, {"csrf_token": "not-the-token"}):
            answer = client.post(path, data=data)
            assert answer.status_code == 403, path
            assert "did not come from this gateway" in answer.get_data(as_text=True)
    row = client.get("/key/info", headers=auth, query_string={"key": token}).json["info"]
    assert row["blocked"] is False and row["key_alias"] == "victim"
    assert client.post(f"/ui/keys/{token}/block", data={"csrf_token": ui.csrf}).status_code == 302
    assert client.get("/key/info", headers=auth, query_string={"key": token}).json["info"]["blocked"] is True


def test_forms_are_checked_by_the_admin_apis_rules_and_answer_its_messages(ui, client):
    answer = client.post("/ui/keys/new", data={"csrf_token": ui.csrf, "key_alias": "x", "duration": "soon"})
    assert answer.status_code == 400
    assert "Invalid value for &#39;duration&#39;" in answer.get_data(as_text=True)
    answer = client.post("/ui/keys/new", data={"csrf_token": ui.csrf, "team_id": "nope"})
    assert answer.status_code == 400 and "There is no team &#39;nope&#39;" in answer.get_data(as_text=True)


def test_a_key_is_shown_once_and_a_provider_secret_never(ui, client):
    made = client.post("/ui/keys/new", data={"csrf_token": ui.csrf, "key_alias": "once", "rpm_limit": "10"})
    key = re.search(r'id="new-key"[^>]*value="(sk-[^"]+)"', made.get_data(as_text=True)).group(1)
    assert made.headers["Cache-Control"] == "no-store"
    for page in ("/ui/", "/ui/keys", "/ui/keys?q=once", "/ui/logs", "/ui/models", "/ui/users", "/ui/teams",
                 "/ui/playground"):
        text = client.get(page).get_data(as_text=True)
        assert key not in text and "sk-upstream-secret" not in text, page
    token = re.search(r'/ui/keys/([0-9a-f]{64})', client.get("/ui/keys").get_data(as_text=True)).group(1)
    assert key not in client.get(f"/ui/keys/{token}").get_data(as_text=True)
    regenerated = client.post(f"/ui/keys/{token}/regenerate", data={"csrf_token": ui.csrf}).get_data(as_text=True)
    assert "shown once" in regenerated and key not in regenerated


def test_a_log_rows_detail_is_redacted_as_logs_are(ui, client, app):
    store = app.extensions["dheera_ai_state"].store
    store.record_spend([spend_row(time.time(), row_id="r1", key_alias="ci", tags=["eu"])
                        | {"metadata": {"api_key": "sk-live-abcdefghijklmnop", "note": "Bearer abc.def.ghi"}}])
    page = client.get("/ui/logs/r1").get_data(as_text=True)
    assert "sk-live-abcdefghijklmnop" not in page and "abc.def.ghi" not in page and "****" in page
    assert client.get("/ui/logs/no-such-row").status_code == 404


def test_the_keys_list_searches_and_pages(ui, client, auth):
    for i in range(30):
        client.post("/key/generate", headers=auth, json={"key_alias": f"svc-{i:02d}", "user_id": None})
    first = client.get("/ui/keys").get_data(as_text=True)
    assert "30 in all · page 1 of 2" in first and "svc-00" in first and "svc-29" not in first
    assert "svc-29" in client.get("/ui/keys?page=2").get_data(as_text=True)
    found = client.get("/ui/keys?q=SVC-1").get_data(as_text=True)
    assert "10 in all" in found and "svc-15" in found and "svc-25" not in found
    assert "0 in all" in client.get("/ui/keys?q=100%25").get_data(as_text=True)  # % is a character, not a wildcard


@pytest.fixture(scope="module")
def big_store(tmp_path_factory):
    """100,000 spend rows over ten days: 50 keys, 5 users, 3 teams, 4 models, a tag on every tenth."""
    path = tmp_path_factory.mktemp("big") / "state.sqlite3"
    store = SQLiteStore(str(path))
    store.migrate()
    start = 1_780_000_000.0
    batch = []
    for i in range(100_000):
        batch.append(spend_row(start + i * 8.64, row_id=f"r{i:06d}", key_hash=f"k{i % 50}", user_id=f"u{i % 5}",
                               team_id=f"t{i % 3}", model=("gpt-4o", "gpt-4o-mini", "claude", "demo")[i % 4],
                               status=429 if i % 17 == 0 else 200, tags=["batch"] if i % 10 == 0 else []))
        if len(batch) == 5000:
            store.record_spend(batch)
            batch = []
    yield store, str(path)
    store.close()


def plan_of(store, run) -> list[str]:
    """The query plan of each SELECT on spend_logs that `run()` makes."""
    statements = []
    conn = store._connection()
    conn.set_trace_callback(statements.append)
    try:
        run()
    finally:
        conn.set_trace_callback(None)
    plans = []
    for sql in statements:
        if sql.lstrip().upper().startswith("SELECT") and "spend_logs" in sql:
            plans += [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql)]
    return plans


@pytest.mark.parametrize("filters,tag,status", [
    ({}, None, None), ({"key": "k7"}, None, None), ({"user": "u3"}, None, None), ({"team": "t1"}, None, None),
    ({"model": "claude"}, None, None), ({}, None, "error"), ({"key": "k8", "model": "gpt-4o"}, None, None),
    ({}, "batch", None)])
def test_log_pages_at_100000_rows_are_index_reads_never_scans_or_sorts(big_store, filters, tag, status):
    store, _ = big_store
    pages, after = [], None
    for _ in range(3):  # the first page and two deeper ones, each from where the last ended
        def run(after=after):
            pages.append(store.spend_log_page(filters=filters, tag=tag, status=status, after=after, limit=50))
        plans = plan_of(store, run)
        assert plans, "no query seen"
        for line in plans:
            assert "TEMP B-TREE" not in line, line  # no page sorted in memory
            if line.startswith("SCAN") and "spend_logs" in line or line.startswith("SCAN l"):
                assert "USING INDEX" in line or "USING COVERING INDEX" in line, line  # no table scan
        after = (pages[-1][-1]["start_time"], pages[-1][-1]["row_id"])
    rows = [r for page in pages for r in page]
    assert len(rows) == 150 and len({r["row_id"] for r in rows}) == 150
    assert rows == sorted(rows, key=lambda r: (r["start_time"], r["row_id"]), reverse=True)
    for row in rows:
        assert all(row[{"key": "key_hash", "user": "user_id", "team": "team_id", "model": "model_group"}[name]]
                   == value for name, value in filters.items())
        assert (status != "error" or row["status"] >= 400) and (tag is None or tag in row["tags"])


def test_the_logs_page_walks_100000_rows_by_its_older_link(big_store, make_app, base_config):
    _, path = big_store
    base_config["general_settings"]["database_url"] = f"sqlite:///{path}"
    client = make_app(base_config).test_client()
    log_in(client)
    page = client.get("/ui/logs?model=claude&status=error").get_data(as_text=True)
    seen = re.findall(r'/ui/logs/(r\d{6})"', page)
    assert len(seen) == 50
    older = re.search(r'id="older" rel="next" href="\?([^"]+)"', page).group(1).replace("&amp;", "&")
    deeper = client.get("/ui/logs?" + older).get_data(as_text=True)
    more = re.findall(r'/ui/logs/(r\d{6})"', deeper)
    assert len(more) == 50 and not set(seen) & set(more) and max(more) < min(seen)
    assert all(int(r[1:]) % 4 == 2 and int(r[1:]) % 17 == 0 for r in seen + more)  # claude, and failed


def test_a_key_is_edited_and_deleted_after_a_confirmation(ui, client, auth):
    made = client.post("/key/generate", headers=auth, json={"key_alias": "old", "rpm_limit": 5, "models": ["demo"]})
    token, key = made.json["token"], made.json["key"]
    form = client.get(f"/ui/keys/{token}").get_data(as_text=True)
    assert 'value="old"' in form and 'value="5"' in form and key not in form
    saved = client.post(f"/ui/keys/{token}", data={"csrf_token": ui.csrf, "key_alias": "new", "rpm_limit": "",
                                                   "models": "demo, gpt-4o-mini", "metadata": ""})
    assert saved.status_code == 302
    info = client.get("/key/info", headers=auth, query_string={"key": token}).json["info"]
    assert info["key_alias"] == "new" and info["rpm_limit"] is None and info["models"] == ["demo", "gpt-4o-mini"]
    confirm = client.get(f"/ui/keys/{token}/delete").get_data(as_text=True)
    assert "Delete key <strong>new</strong>?" in confirm and 'method="post"' in confirm
    assert client.post(f"/ui/keys/{token}/delete", data={"csrf_token": ui.csrf}).status_code == 302
    refused = client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                          json={"model": "demo", "messages": [{"role": "user", "content": "hi"}]})
    assert refused.status_code == 401


def test_users_and_teams_are_made_edited_joined_and_deleted(ui, client, auth):
    data = {"csrf_token": ui.csrf}
    assert client.post("/ui/teams/new", data={**data, "team_id": "eng", "team_alias": "Engineering",
                                              "models": "demo", "max_budget": "100"}).status_code == 302
    made = client.post("/ui/users/new", data={**data, "user_id": "ann", "user_role": "internal_user"})
    assert made.status_code == 302  # no key asked for: straight to the user's page
    assert client.get("/user/info", headers=auth, query_string={"user_id": "ann"}).json["keys"] == []
    client.post("/ui/users/ann/edit", data={**data, "user_email": "ann@example.com", "user_role": "proxy_admin",
                                            "max_budget": "", "models": ""})
    user = client.get("/user/info", headers=auth, query_string={"user_id": "ann"}).json["user_info"]
    assert user["user_email"] == "ann@example.com" and user["user_role"] == "proxy_admin"
    client.post("/ui/teams/eng/members", data={**data, "member_user_id": "ann", "member_role": "admin"})
    team = client.get("/team/info", headers=auth, query_string={"team_id": "eng"}).json["team_info"]
    assert team["members_with_roles"] == [{"user_id": "ann", "role": "admin"}]
    # An unknown member is made on the fly, as LiteLLM (and /team/member_add) does.
    assert client.post("/ui/teams/eng/members", data={**data, "member_user_id": "newbie"}).status_code == 302
    assert client.get("/user/info", headers=auth, query_string={"user_id": "newbie"}).status_code == 200
    client.post("/ui/teams/eng/members/remove", data={**data, "user_id": "newbie"})
    client.post("/ui/teams/eng/edit", data={**data, "team_alias": "Eng", "max_budget": "250", "models": "demo"})
    assert client.get("/team/info", headers=auth, query_string={"team_id": "eng"}).json["team_info"][
        "max_budget"] == 250
    client.post("/ui/teams/eng/members/remove", data={**data, "user_id": "ann"})
    assert client.get("/team/info", headers=auth, query_string={"team_id": "eng"}).json["team_info"][
        "members_with_roles"] == []
    assert client.post("/ui/users/ann/delete", data=data).status_code == 302
    assert client.post("/ui/teams/eng/delete", data=data).status_code == 302
    assert client.get("/user/info", headers=auth, query_string={"user_id": "ann"}).status_code == 404
    assert client.get("/team/info", headers=auth, query_string={"team_id": "eng"}).status_code == 404
