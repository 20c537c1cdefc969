"""Client-supplied routing (`api_key`/`api_base`/`api_version` in the body, `user_config`), as the
OpenAI SDK sends it with `extra_body`: off by default, gated when on, and never a way into the
gateway's secrets or its network.

The fake upstream listens on 127.0.0.1, which a client api_base may not reach unless
`general_settings.allowed_client_api_base_hosts` says so: the positive cases allow it.
"""

import openai
import pytest
import requests

from dheera_ai import http
from tests.conftest import MASTER_KEY

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(autouse=True)
def state_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def gateway(live_app, upstream, allow=False, allowed_hosts=(), **params):
    general = {"master_key": MASTER_KEY, "allow_client_side_credentials": allow,
               "allowed_client_api_base_hosts": list(allowed_hosts)}
    config = {"model_list": [
        {"model_name": "gpt-4o-mini",
         "dheera_ai_params": {"model": "openai/gpt-4o-mini", "api_base": upstream.url + "/server/v1",
                              "api_key": "sk-upstream-secret", **params}},
        {"model_name": "demo", "dheera_ai_params": {"model": "mock/demo"}},
    ], "general_settings": general}
    server = live_app(config)
    return openai.OpenAI(base_url=server.url + "/v1", api_key=MASTER_KEY, max_retries=0)


def ask(client, model="gpt-4o-mini", **extra_body):
    return client.chat.completions.with_raw_response.create(model=model, messages=HI, extra_body=extra_body)


def refused(client, **extra_body) -> openai.BadRequestError:
    with pytest.raises(openai.BadRequestError) as exc:
        ask(client, **extra_body)
    return exc.value


# -- off by default -------------------------------------------------------------------------------

@pytest.mark.parametrize("extra", [{"api_key": "sk-mine"}, {"api_base": "https://example.com/v1"},
                                   {"api_version": "2024-10-21"}, {"base_url": "https://example.com/v1"},
                                   {"user_config": {"model_list": []}}])
def test_everything_client_side_is_refused_unless_enabled(live_app, upstream, extra):
    error = refused(gateway(live_app, upstream), **extra)
    assert error.code == "client_side_credentials_disabled"
    assert "allow_client_side_credentials" in error.message
    assert upstream.requests == []


# -- client credentials -----------------------------------------------------------------------------

def test_a_client_api_key_replaces_the_deployments(live_app, upstream):
    client = gateway(live_app, upstream, allow=True)
    ask(client, api_key="sk-client-own-key")
    assert upstream.last.headers["authorization"] == "Bearer sk-client-own-key"
    assert upstream.last.path == "/server/v1/chat/completions"
    assert "api_key" not in upstream.last.json


def test_a_deployment_may_allow_just_the_api_key(live_app, upstream):
    client = gateway(live_app, upstream, configurable_clientside_auth_params=["api_key"])
    ask(client, api_key="sk-client-own-key")
    assert upstream.last.headers["authorization"] == "Bearer sk-client-own-key"

    error = refused(client, api_key="sk-client-own-key", api_base=upstream.url + "/mine/v1")
    assert error.code == "client_side_credentials_disabled"
    assert "configurable_clientside_auth_params" in error.message
    assert refused(client, model="demo", api_key="sk-x").code == "client_side_credentials_disabled"


def test_a_deployment_may_allow_api_bases_matching_a_pattern(live_app, upstream):
    pattern = r"^http://127\.0\.0\.1:\d+/tenant-[a-z]+/v1$"
    client = gateway(live_app, upstream, allowed_hosts=["127.0.0.1"],
                     configurable_clientside_auth_params=["api_key", {"api_base": pattern}])
    ask(client, api_key="sk-tenant", api_base=upstream.url + "/tenant-acme/v1")
    assert upstream.last.path == "/tenant-acme/v1/chat/completions"

    error = refused(client, api_key="sk-tenant", api_base=upstream.url + "/elsewhere/v1")
    assert error.code == "client_side_credentials_disabled"
    assert upstream.count("/elsewhere/") == 0


def test_a_client_api_base_never_receives_the_servers_key(live_app, upstream, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-server-environment-key")
    client = gateway(live_app, upstream, allow=True, allowed_hosts=["127.0.0.1"])

    error = refused(client, api_base=upstream.url + "/mine/v1")
    assert error.code == "client_api_key_required"
    assert upstream.requests == []

    ask(client, api_base=upstream.url + "/mine/v1", api_key="sk-client-own-key")
    assert upstream.last.path == "/mine/v1/chat/completions"
    assert upstream.last.headers["authorization"] == "Bearer sk-client-own-key"
    assert all("sk-upstream-secret" not in str(r.headers) and "sk-server-environment" not in str(r.headers)
               for r in upstream.requests)


@pytest.mark.parametrize("value", ["os.environ/OPENAI_API_KEY", " OS.ENVIRON/HOME"])
def test_a_client_value_is_never_read_from_the_servers_environment(live_app, upstream, value):
    client = gateway(live_app, upstream, allow=True)
    error = refused(client, api_key=value)
    assert error.code == "server_reference_refused"
    assert upstream.requests == []


@pytest.mark.parametrize("api_base", [
    "http://127.0.0.1:{port}/v1",  # loopback
    "http://localhost:{port}/v1",  # a name resolving to loopback
    "http://[::1]:{port}/v1",
    "http://169.254.169.254/latest/meta-data",  # cloud metadata (link-local)
    "http://10.0.0.7/v1",  # private
    "http://192.168.1.1/v1",
    "http://100.100.100.200/v1",  # shared address space (another cloud's metadata)
    "http://0.0.0.0:{port}/v1",
    "file:///etc/passwd",
])
def test_a_client_api_base_may_not_reach_internal_addresses(live_app, upstream, api_base):
    client = gateway(live_app, upstream, allow=True)
    error = refused(client, api_key="sk-client", api_base=api_base.format(port=upstream.port))
    assert error.code == "api_base_not_allowed" and error.param == "api_base"
    assert upstream.requests == []


def test_the_connection_itself_is_checked_so_a_name_cannot_re_resolve_inside(upstream):
    # What a client-supplied deployment connects through: the address is vetted when connecting,
    # not only when the request was accepted (a DNS answer may change in between).
    with pytest.raises(requests.ConnectionError) as exc:
        http.client_session(()).get(upstream.url + "/v1/models", timeout=2)
    assert "clients may not reach" in str(exc.value)
    assert upstream.requests == []
    assert http.client_session(()).trust_env is False  # no proxy decides the address


def test_allowed_hosts_open_internal_addresses_one_by_one(live_app, upstream):
    client = gateway(live_app, upstream, allow=True, allowed_hosts=["127.0.0.0/8"])
    ask(client, api_key="sk-client", api_base=upstream.url + "/mine/v1")
    assert upstream.count("/mine/") == 1
    assert refused(client, api_key="sk-client", api_base="http://10.0.0.7/v1").code == "api_base_not_allowed"


# -- user_config ------------------------------------------------------------------------------------

def user_config(upstream, **extra):
    return {
        "model_list": [
            {"model_name": "user-primary",
             "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": upstream.url + "/primary/v1",
                                "api_key": "sk-user-primary", "timeout": 10}, "tpm": 240000, "rpm": 1800},
            {"model_name": "user-backup",
             "litellm_params": {"model": "openai/gpt-4o", "api_base": upstream.url + "/backup/v1",
                                "api_key": "sk-user-backup"}},
        ],
        "num_retries": 1, "retry_after": 0.001, "allowed_fails": 3,
        "fallbacks": [{"user-primary": ["user-backup"]}],
        **extra,
    }


def test_user_config_routes_one_call_with_its_own_models_retries_and_fallbacks(live_app, upstream):
    client = gateway(live_app, upstream, allow=True, allowed_hosts=["127.0.0.1"])
    upstream.always("/primary/", status=500)
    raw = ask(client, model="user-primary", user_config=user_config(upstream))

    assert raw.parse().choices[0].message.content == "Hello from the fake upstream."
    assert raw.headers["x-dheera-ai-model-group"] == "user-backup"
    assert raw.headers["x-dheera-ai-attempted-retries"] == "1"
    assert raw.headers["x-dheera-ai-attempted-fallbacks"] == "1"
    assert upstream.count("/primary/") == 2
    assert upstream.last.headers["authorization"] == "Bearer sk-user-backup"
    assert "user_config" not in upstream.last.json


def test_user_config_is_thrown_away_after_the_call(live_app, upstream):
    client = gateway(live_app, upstream, allow=True, allowed_hosts=["127.0.0.1"])
    ask(client, model="user-primary", user_config=user_config(upstream))
    assert "user-primary" not in [m.id for m in client.models.list()]
    assert refused(client, model="user-primary").code == "model_not_found"
    # ... and the server's own models are not part of a user_config router.
    assert refused(client, user_config=user_config(upstream)).code == "model_not_found"


def test_user_config_deployments_never_borrow_the_servers_key(live_app, upstream, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-server-environment-key")
    client = gateway(live_app, upstream, allow=True, allowed_hosts=["127.0.0.1"])
    config = user_config(upstream)
    del config["model_list"][0]["litellm_params"]["api_key"]
    error = refused(client, model="user-primary", user_config={**config, "fallbacks": []})
    assert error.code == "client_api_key_required"
    assert error.param == "user_config.model_list[0].litellm_params.api_key"
    assert upstream.requests == []


def test_user_config_may_not_read_the_servers_environment(live_app, upstream):
    client = gateway(live_app, upstream, allow=True, allowed_hosts=["127.0.0.1"])
    config = user_config(upstream)
    config["model_list"][0]["litellm_params"]["api_key"] = "os.environ/OPENAI_API_KEY"
    error = refused(client, model="user-primary", user_config=config)
    assert error.code == "server_reference_refused"
    assert error.param == "user_config.model_list[0].litellm_params.api_key"


def test_user_config_api_bases_are_checked_like_any_client_address(live_app, upstream):
    client = gateway(live_app, upstream, allow=True)  # 127.0.0.1 not allowed here
    error = refused(client, model="user-primary", user_config=user_config(upstream))
    assert error.code == "api_base_not_allowed"
    assert upstream.requests == []


def test_an_invalid_user_config_is_a_400_naming_the_problem(live_app, upstream):
    client = gateway(live_app, upstream, allow=True, allowed_hosts=["127.0.0.1"])
    bad_provider = {"model_list": [{"model_name": "x", "litellm_params": {"model": "opnai/gpt-4o"}}]}
    error = refused(client, model="x", user_config=bad_provider)
    assert error.code == "invalid_user_config" and "unknown provider 'opnai'" in error.message
    error = refused(client, model="user-primary", user_config=user_config(upstream, routing_strategy="fastest"))
    assert error.code == "invalid_user_config" and "routing_strategy" in error.message


def test_user_config_with_the_mock_provider_needs_no_upstream(live_app, upstream):
    client = gateway(live_app, upstream, allow=True)
    config = {"model_list": [{"model_name": "mine", "litellm_params": {"model": "mock/mine",
                                                                        "mock_response": "from your config"}}]}
    raw = ask(client, model="mine", user_config=config)
    assert raw.parse().choices[0].message.content == "from your config"
    assert upstream.requests == []  # nothing reached the network


def test_a_redirect_from_a_client_api_base_is_never_followed(live_app, upstream):
    client = gateway(live_app, upstream, allow=True, allowed_hosts=["127.0.0.1"])
    upstream.respond(b"", status=307, headers={"Location": "http://169.254.169.254/latest/meta-data"})
    with pytest.raises(openai.APIStatusError) as exc:
        ask(client, api_key="sk-client", api_base=upstream.url + "/mine/v1")
    assert exc.value.status_code == 502 and "redirect" in exc.value.message
    assert len(upstream.requests) == 1


def test_a_client_api_version_reaches_the_provider(make_app, upstream, auth):
    from dheera_ai import hookimpl
    from dheera_ai.types import Reply

    seen = []

    class Recorder:
        @hookimpl(tryfirst=True)
        def dheera_ai_dispatch(self, deployment):
            seen.append(deployment)
            return Reply(data={"ok": True})

    config = {"model_list": [{"model_name": "m", "dheera_ai_params": {
        "model": "openai/m", "api_key": "sk-server", "api_version": "2024-02-01",
        "configurable_clientside_auth_params": ["api_version"]}}], "general_settings": {"master_key": MASTER_KEY}}
    client = make_app(config, [Recorder()]).test_client()
    response = client.post("/v1/chat/completions", headers=auth,
                           json={"model": "m", "messages": HI, "api_version": "2025-01-01-preview"})
    assert response.status_code == 200
    assert seen[0].params["api_version"] == "2025-01-01-preview"
    assert seen[0].params["api_key"] == "sk-server" and not seen[0].from_client
