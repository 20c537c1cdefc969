"""Attacks a security review tried and found refused (issue #24, item 6), kept refused: SQL
injection in key and admin lookups, a client api_base reaching the gateway's own network, a
client value pointing at the server's environment, a revoked key living on in a cache, a
non-admin key on an admin route, and oversize or malformed multipart uploads.
"""

import io
import time

import pytest

from tests.conftest import MASTER_KEY
from tests.support.services import postgres  # noqa: F401 - a fixture

HI = [{"role": "user", "content": "hi"}]
ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}


def bearer(key):
    return {"Authorization": f"Bearer {key}"}


def generate(client, **fields):
    response = client.post("/key/generate", headers=ADMIN, json=fields)
    assert response.status_code == 200, response.json
    return response.json


def chat(client, key, **body):
    return client.post("/v1/chat/completions", headers=bearer(key),
                       json={"model": "gpt-4o-mini", "messages": HI, **body})


# -- SQL injection in key and admin lookups ---------------------------------------------------------

INJECTIONS = ["' OR '1'='1", "x' OR 1=1 --", "'; DROP TABLE keys; --", "\" OR \"\"=\"", "1) OR (1=1",
              "' UNION SELECT key_hash, key_hash FROM keys --", "%' OR key_alias LIKE '%",
              "\\'; SELECT pg_sleep(5); --"]
LOOKUPS = [("/key/info", "key"), ("/key/list", "user_id"), ("/key/list", "team_id"), ("/key/list", "key_alias"),
           ("/user/info", "user_id"), ("/team/info", "team_id"), ("/spend/logs", "api_key"),
           ("/spend/logs", "user_id"), ("/spend/logs", "tag"), ("/spend/logs", "model")]


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_sql_injection_in_lookups_matches_nothing_and_changes_nothing(make_app, base_config, store, request):
    if store == "postgresql":
        base_config["general_settings"]["database_url"] = request.getfixturevalue("postgres").url
    client = make_app(base_config).test_client()
    made = generate(client, key_alias="victim", metadata={"secret": "kept"})
    for payload in INJECTIONS:
        for path, param in LOOKUPS:
            response = client.get(path, headers=ADMIN, query_string={param: payload})
            assert response.status_code in (200, 400, 404), (path, param, payload, response.json)
            if response.status_code == 200:
                body = response.json
                assert made["token"] not in str(body), (path, param, payload)  # no row matched the payload
        # As a key itself: never authenticates, never errors.
        assert chat(client, payload).status_code == 401
        assert client.post("/key/delete", headers=ADMIN, json={"key_aliases": [payload]}).status_code == 404
    listed = client.get("/key/list", headers=ADMIN).json
    assert listed["total_count"] == 1 and listed["keys"][0]["token"] == made["token"]
    assert chat(client, made["key"], model="demo").status_code == 200  # the table is whole


# -- a client api_base never reaches the gateway's own network --------------------------------------

LOOPBACK_SPELLINGS = [
    "http://127.0.0.1:{port}/v1", "http://127.1:{port}/v1", "http://127.0.1:{port}/v1", "http://2130706433:{port}/v1",
    "http://0x7f000001:{port}/v1", "http://0x7f.0.0.1:{port}/v1", "http://0177.0.0.1:{port}/v1",
    "http://017700000001:{port}/v1", "http://127.255.255.254:{port}/v1", "http://localhost:{port}/v1",
    "http://LOCALHOST:{port}/v1", "http://localhost.:{port}/v1", "http://[::1]:{port}/v1",
    "http://[0:0:0:0:0:0:0:1]:{port}/v1", "http://[::ffff:127.0.0.1]:{port}/v1", "http://[::ffff:7f00:1]:{port}/v1",
    "http://[::127.0.0.1]:{port}/v1", "http://[64:ff9b::7f00:1]:{port}/v1", "http://[2002:7f00:1::]:{port}/v1",
    "http://0.0.0.0:{port}/v1", "http://0:{port}/v1", "http://[::]:{port}/v1", "http://user@127.0.0.1:{port}/v1",
    "https://127.0.0.1:{port}/v1", "HTTP://127.0.0.1:{port}/v1", "http://169.254.169.254/latest",
    "http://[fe80::1%25lo]:{port}/v1", "http://[fd00::1]/v1", "http://10.0.0.1/v1", "http://172.16.0.1/v1",
    "http://192.168.0.1/v1", "http://100.64.0.1/v1", "ftp://127.0.0.1/", "file:///etc/passwd", "gopher://127.0.0.1/",
]


@pytest.fixture
def client_side(make_app, base_config):
    base_config["general_settings"]["allow_client_side_credentials"] = True
    return make_app(base_config).test_client()


@pytest.mark.parametrize("spelling", LOOPBACK_SPELLINGS)
def test_a_client_api_base_to_an_internal_address_is_refused_in_every_spelling(client_side, upstream, spelling):
    api_base = spelling.format(port=upstream.port)
    response = chat(client_side, MASTER_KEY, api_key="sk-client", api_base=api_base)
    assert response.status_code == 400 and response.json["error"]["code"] == "api_base_not_allowed", api_base
    user_config = {"model_list": [{"model_name": "u", "litellm_params": {
        "model": "openai/x", "api_key": "sk-client", "api_base": api_base}}]}
    response = chat(client_side, MASTER_KEY, model="u", user_config=user_config)
    assert response.status_code == 400, api_base
    assert upstream.requests == []


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_to_an_internal_address_is_never_followed(make_app, base_config, upstream, status):
    base_config["general_settings"].update(allow_client_side_credentials=True,
                                           allowed_client_api_base_hosts=["127.0.0.1"])
    client = make_app(base_config).test_client()
    for target in ("http://169.254.169.254/latest/meta-data", f"http://localhost:{upstream.port}/internal"):
        upstream.respond(b"", status=status, headers={"Location": target})
        response = chat(client, MASTER_KEY, api_key="sk-client", api_base=upstream.url + "/mine/v1")
        assert response.status_code == 502 and "redirect" in response.json["error"]["message"]
    assert [r.path for r in upstream.requests] == ["/mine/v1/chat/completions"] * 2


# -- a client value never reads the server's environment ----------------------------------------------

@pytest.mark.parametrize("field,value", [
    ("api_key", "os.environ/OPENAI_API_KEY"), ("api_key", "  os.environ/HOME"), ("api_base", "OS.ENVIRON/API_BASE"),
    ("api_version", "os.environ/AZURE_API_VERSION"),
])
def test_os_environ_in_a_client_value_is_refused(client_side, upstream, field, value):
    extra = {"api_key": "sk-client", field: value}
    response = chat(client_side, MASTER_KEY, **extra)
    assert response.status_code == 400 and response.json["error"]["code"] == "server_reference_refused"
    assert upstream.requests == []


@pytest.mark.parametrize("params", [{"api_key": "os.environ/OPENAI_API_KEY"},
                                    {"api_key": "sk-c", "api_base": "os.environ/OPENAI_API_BASE"},
                                    {"api_key": "sk-c", "extra_headers": {"x": "os.environ/SECRET"}}])
def test_os_environ_anywhere_in_user_config_is_refused(client_side, upstream, params):
    user_config = {"model_list": [{"model_name": "u", "litellm_params": {"model": "openai/x", **params}}]}
    response = chat(client_side, MASTER_KEY, model="u", user_config=user_config)
    assert response.status_code == 400 and response.json["error"]["code"] == "server_reference_refused"
    assert upstream.requests == []


# -- a revoked key is refused at once, cached or not ---------------------------------------------------

@pytest.mark.parametrize("revoke", ["delete", "block", "regenerate", "expire"])
def test_a_revoked_key_is_refused_although_it_was_cached(client, revoke):
    made = generate(client)
    key = made["key"]
    assert chat(client, key, model="demo").status_code == 200  # now in the key cache
    if revoke == "delete":
        client.post("/key/delete", headers=ADMIN, json={"keys": [key]})
    elif revoke == "block":
        client.post("/key/block", headers=ADMIN, json={"key": key})
    elif revoke == "regenerate":
        client.post("/key/regenerate", headers=ADMIN, json={"key": key})
    else:
        assert client.post("/key/update", headers=ADMIN, json={"key": key, "duration": "1s"}).status_code == 200
        time.sleep(1.1)
    assert chat(client, key, model="demo").status_code == 401


def test_a_key_revoked_on_one_worker_is_refused_by_another(make_app, base_config):
    # Two apps on one store: two workers (or instances) with caches of their own.
    first, second = make_app(base_config).test_client(), make_app(base_config).test_client()
    key = generate(first)["key"]
    assert chat(second, key, model="demo").status_code == 200  # cached by the second
    first.post("/key/delete", headers=ADMIN, json={"keys": [key]})
    deadline = time.monotonic() + 5
    while chat(second, key, model="demo").status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert chat(second, key, model="demo").status_code == 401


# -- admin routes need an admin -------------------------------------------------------------------------

# Routes a plain key may call for itself (an internal_user makes its own keys, within its own
# models and budget, as in LiteLLM: tests/test_litellm_compat_admin.py).
SELF_SERVICE = {"/key/info", "/user/info", "/team/info", "/spend/logs", "/spend/report", "/key/generate"}


def test_every_admin_route_refuses_a_plain_key(app, client):
    client.post("/user/new", headers=ADMIN, json={"user_id": "plain", "auto_create_key": False})
    key = generate(client, user_id="plain")["key"]
    routes = [(rule.rule, method) for rule in app.url_map.iter_rules()
              if rule.rule.startswith(("/key/", "/user/", "/team/", "/spend/")) or rule.rule in ("/health", "/metrics")
              for method in rule.methods - {"HEAD", "OPTIONS"} if rule.rule not in SELF_SERVICE]
    assert len(routes) >= 18
    for path, method in routes:
        response = client.open(path, method=method, headers=bearer(key), json={})
        assert response.status_code in (401, 403), (path, method, response.status_code)
    for path in ("/key/info", "/user/info", "/team/info"):  # self-service never reaches someone else
        response = client.get(path, headers=bearer(key), query_string={"key": "sk-other", "user_id": "admin",
                                                                         "team_id": "other"})
        assert response.status_code in (403, 404), path


def test_a_proxy_admin_viewer_cannot_write(client):
    client.post("/user/new", headers=ADMIN, json={"user_id": "viewer", "user_role": "proxy_admin_viewer",
                                                  "auto_create_key": False})
    key = generate(client, user_id="viewer")["key"]
    assert client.post("/key/generate", headers=bearer(key), json={}).status_code == 403


# -- oversize and malformed multipart --------------------------------------------------------------

AUDIO = b"RIFF" + bytes(range(256)) * 64


def upload(client, path, body: bytes, content_type: str):
    return client.post(path, headers=ADMIN, data=body, content_type=content_type)


MALFORMED_FORMS = {
    "no boundary": (b"--B\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\ngpt-4o-mini\r\n--B--\r\n",
                    "multipart/form-data"),
    "truncated": (b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\nRIFF",
                  "multipart/form-data; boundary=B"),
    "part without a name": (b"--B\r\nContent-Disposition: form-data; filename=\"a.wav\"\r\n\r\nRIFF\r\n--B--\r\n",
                            "multipart/form-data; boundary=B"),
    "garbage": (b"\x00\xff" * 500, "multipart/form-data; boundary=B"),
    "not multipart": (b'{"model": "gpt-4o-mini"}', "application/json"),
}


@pytest.mark.parametrize("path", ["/v1/audio/transcriptions", "/v1/images/edits"])
@pytest.mark.parametrize("case", MALFORMED_FORMS)
def test_a_malformed_upload_is_a_400(client, upstream, path, case):
    body, content_type = MALFORMED_FORMS[case]
    response = upload(client, path, body, content_type)
    assert response.status_code == 400 and response.json["error"]["type"] == "invalid_request_error", case
    assert upstream.requests == []


@pytest.mark.parametrize("path,field", [("/v1/audio/transcriptions", "file"), ("/v1/images/edits", "image")])
def test_an_oversize_upload_is_a_413_and_never_reaches_the_upstream(make_app, base_config, upstream, path, field):
    base_config["general_settings"]["max_request_size_mb"] = 0.01
    client = make_app(base_config).test_client()
    response = client.post(path, headers=ADMIN, content_type="multipart/form-data",
                           data={"model": "gpt-4o-mini", "prompt": "x", field: (io.BytesIO(AUDIO * 4), "big.bin")})
    assert response.status_code == 413 and "max_request_size_mb" in response.json["error"]["message"]
    assert upstream.requests == []
