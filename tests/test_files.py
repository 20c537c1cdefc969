"""`/v1/files`: OpenAI's Files API with the official client, stored beside the state, owned by the uploader."""

import io
import os
import sqlite3

import openai
import pytest

from tests.conftest import MASTER_KEY


def bearer(key):
    return {"Authorization": f"Bearer {key}"}


def upload(client, key, content=b'{"a": 1}\n', purpose="batch", filename="in.jsonl"):
    return client.post("/v1/files", headers=bearer(key),
                       data={"purpose": purpose, "file": (io.BytesIO(content), filename)})


def new_key(client, **fields):
    made = client.post("/key/generate", headers=bearer(MASTER_KEY), json=fields)
    assert made.status_code == 200, made.json
    return made.json["key"]


def files_dir(tmp_path):
    return tmp_path / "files"


def test_the_openai_client_uploads_lists_reads_and_deletes_a_file(openai_client, tmp_path):
    content = b'{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {}}\n' * 3
    path = tmp_path / "requests.jsonl"
    path.write_bytes(content)
    with open(path, "rb") as f:
        made = openai_client.files.create(file=f, purpose="batch")
    assert made.id.startswith("file-") and made.object == "file"
    assert (made.bytes, made.filename, made.purpose, made.status) == (len(content), "requests.jsonl", "batch",
                                                                      "processed")
    # Stored beside the SQLite file, under its id, whole.
    assert (files_dir(tmp_path) / made.id).read_bytes() == content

    assert openai_client.files.retrieve(made.id).bytes == len(content)
    assert [f.id for f in openai_client.files.list()] == [made.id]
    assert [f.id for f in openai_client.files.list(purpose="user_data")] == []
    assert openai_client.files.content(made.id).read() == content

    deleted = openai_client.files.delete(made.id)
    assert deleted.deleted and deleted.id == made.id
    assert not (files_dir(tmp_path) / made.id).exists()
    with pytest.raises(openai.NotFoundError) as refused:
        openai_client.files.retrieve(made.id)
    assert refused.value.body["code"] == "file_not_found"


def test_the_list_pages_newest_first_with_after_and_limit(client):
    ids = [upload(client, MASTER_KEY, filename=f"{i}.jsonl").json["id"] for i in range(5)]
    first = client.get("/v1/files?limit=2", headers=bearer(MASTER_KEY)).json
    assert [f["id"] for f in first["data"]] == ids[::-1][:2] and first["has_more"] is True
    rest = client.get(f"/v1/files?limit=10&after={first['last_id']}", headers=bearer(MASTER_KEY)).json
    assert [f["id"] for f in rest["data"]] == ids[::-1][2:] and rest["has_more"] is False
    ascending = client.get("/v1/files?order=asc", headers=bearer(MASTER_KEY)).json
    assert [f["id"] for f in ascending["data"]] == ids


def test_a_file_is_its_owner_and_team_and_admins_only(client):
    for user in ("ana", "ben", "cho"):
        client.post("/user/new", headers=bearer(MASTER_KEY), json={"user_id": user})
    client.post("/team/new", headers=bearer(MASTER_KEY), json={
        "team_id": "research", "members_with_roles": [{"user_id": "ana", "role": "user"},
                                                      {"user_id": "ben", "role": "user"}]})
    client.post("/team/new", headers=bearer(MASTER_KEY), json={
        "team_id": "sales", "members_with_roles": [{"user_id": "cho", "role": "user"}]})
    ana = new_key(client, user_id="ana", team_id="research")
    ana_again = new_key(client, user_id="ana")  # the same user's other key
    colleague = new_key(client, user_id="ben", team_id="research")
    stranger = new_key(client, user_id="cho", team_id="sales")
    made = upload(client, ana).json

    for allowed in (ana, ana_again, colleague, MASTER_KEY):
        assert client.get(f"/v1/files/{made['id']}", headers=bearer(allowed)).status_code == 200
        assert [f["id"] for f in client.get("/v1/files", headers=bearer(allowed)).json["data"]] == [made["id"]]
    for path in (f"/v1/files/{made['id']}", f"/v1/files/{made['id']}/content"):
        refused = client.get(path, headers=bearer(stranger))
        assert refused.status_code == 404 and refused.json["error"]["code"] == "file_not_found"
    assert client.delete(f"/v1/files/{made['id']}", headers=bearer(stranger)).status_code == 404
    assert client.get("/v1/files", headers=bearer(stranger)).json["data"] == []
    assert client.get("/v1/files", headers=bearer("sk-not-a-key")).status_code == 401
    assert client.get(f"/v1/files/{made['id']}", headers=bearer(ana)).status_code == 200  # still there


def test_a_file_over_the_limit_is_refused_with_413_and_leaves_nothing(make_app, base_config, tmp_path):
    base_config["general_settings"]["max_file_size_mb"] = 0.01  # 10,485 bytes
    client = make_app(base_config).test_client()
    refused = upload(client, MASTER_KEY, content=b"x" * 20_000)
    assert refused.status_code == 413 and refused.json["error"]["code"] == "file_too_large"
    assert "max_file_size_mb" in refused.json["error"]["message"]
    assert upload(client, MASTER_KEY, content=b"x" * 10_000).status_code == 200
    assert len(os.listdir(files_dir(tmp_path))) == 1  # no spooled part of the refused one


def test_the_file_limit_is_its_own_not_the_json_body_limit(make_app, base_config, tmp_path):
    base_config["general_settings"]["max_request_size_mb"] = 1
    client = make_app(base_config).test_client()
    made = upload(client, MASTER_KEY, content=b"y" * (3 * 1024 * 1024))
    assert made.status_code == 200 and made.json["bytes"] == 3 * 1024 * 1024


def test_a_configured_files_dir_holds_the_bytes(make_app, base_config, tmp_path):
    base_config["general_settings"]["files_dir"] = str(tmp_path / "shared")
    made = upload(make_app(base_config).test_client(), MASTER_KEY).json
    assert (tmp_path / "shared" / made["id"]).exists()


@pytest.mark.parametrize("data, param", [
    ({"file": (io.BytesIO(b"x"), "a.jsonl")}, "purpose"),
    ({"purpose": "homework", "file": (io.BytesIO(b"x"), "a.jsonl")}, "purpose"),
    ({"purpose": "batch"}, "file"),
    ({"purpose": "batch", "file": (io.BytesIO(b"x"), "a.jsonl"), "other": (io.BytesIO(b"y"), "b.jsonl")}, "file"),
])
def test_a_bad_upload_is_a_400_naming_the_field(client, data, param):
    refused = client.post("/v1/files", headers=bearer(MASTER_KEY), data=data, content_type="multipart/form-data")
    assert refused.status_code == 400 and refused.json["error"]["param"] == param


def test_a_json_body_or_a_bad_query_is_a_clear_400(client):
    refused = client.post("/v1/files", headers=bearer(MASTER_KEY), json={"purpose": "batch"})
    assert refused.status_code == 400 and "multipart/form-data" in refused.json["error"]["message"]
    assert client.get("/v1/files?limit=0", headers=bearer(MASTER_KEY)).json["error"]["param"] == "limit"
    assert client.get("/v1/files?order=up", headers=bearer(MASTER_KEY)).json["error"]["param"] == "order"


def test_an_expired_file_is_gone(client, tmp_path):
    made = upload(client, MASTER_KEY).json
    with sqlite3.connect(tmp_path / "state.sqlite3") as db:
        db.execute("UPDATE files SET expires_at = 1 WHERE file_id = ?", (made["id"],))
    assert client.get(f"/v1/files/{made['id']}", headers=bearer(MASTER_KEY)).status_code == 404
    assert client.get("/v1/files", headers=bearer(MASTER_KEY)).json["data"] == []
    kept = upload(client, MASTER_KEY).json
    # The runner's sweep takes its bytes and row off the disk; other files stay.
    assert client.application.extensions["dheera_ai_state"].files.sweep() == 1
    assert not (files_dir(tmp_path) / made["id"]).exists() and (files_dir(tmp_path) / kept["id"]).exists()
    with sqlite3.connect(tmp_path / "state.sqlite3") as db:
        assert db.execute("SELECT file_id FROM files").fetchall() == [(kept["id"],)]


def test_expires_after_sets_the_expiry(client):
    made = client.post("/v1/files", headers=bearer(MASTER_KEY),
                       data={"purpose": "batch", "expires_after[anchor]": "created_at",
                             "expires_after[seconds]": "7200", "file": (io.BytesIO(b"x"), "a.jsonl")}).json
    assert made["expires_at"] - made["created_at"] in (7199, 7200, 7201)
