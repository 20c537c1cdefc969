"""The five vulnerabilities of issue #25, each as the review reproduced it, now refused.

1. server provider keys sent to a client-chosen host; 2. client-set prices; 3. fallbacks that
escape a key's model list; 4. token estimates that move a budget hold; 5. one bad row that stops
all spend recording. Every test here failed on the code the review found.
"""

import hashlib
import json
import os

import pytest

from dheera_ai.config import ConfigError
from dheera_ai.errors import BadRequestError, DheeraAIError
from plugins.providers.openai_compatible import TABLE
from proxy_app.store import StoreUnavailableError, store_for_url
from tests.conftest import MASTER_KEY
from tests.support.engine import make_engine, run
from tests.support.fake_upstream import FakeUpstream, chat_chunks, chat_completion
from tests.support.services import PostgresSchema

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
HI = [{"role": "user", "content": "hi"}]
# The shipped price table's gpt-4o-mini and gpt-4o; the fake upstream reports 9 + 7 tokens.
MINI_COST = 9 * 1.5e-7 + 7 * 6.0e-7
GPT4O_COST = 9 * 2.5e-6 + 7 * 1.0e-5


@pytest.fixture(autouse=True)
def state_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


# -- 1. server provider keys never go to a client-chosen host -------------------------------------

# Every variable a built-in provider reads for a key, and for an address.
KEY_VARIABLES = sorted({"OPENAI_API_KEY", "AZURE_API_KEY", "AZURE_AD_TOKEN", "GEMINI_API_KEY", "GOOGLE_API_KEY",
                        "ANTHROPIC_API_KEY", "COHERE_API_KEY", "DHEERA_AI_PROXY_API_KEY",
                        *(name for spec in TABLE for name in (spec.key_env, *spec.key_aliases))})
BASE_VARIABLES = sorted({"OPENAI_BASE_URL", "OPENAI_API_BASE", "AZURE_API_BASE", "GEMINI_API_BASE",
                         "ANTHROPIC_API_BASE", "ANTHROPIC_BASE_URL", "COHERE_API_BASE", "DHEERA_AI_PROXY_API_BASE",
                         *(spec.base_env for spec in TABLE)})
PROVIDERS = sorted({"openai", "azure", "anthropic", "gemini", "cohere", "dheera_ai_proxy",
                    *(spec.name for spec in TABLE)})
KEYLESS = {spec.name for spec in TABLE if not spec.key_required}
SECRET = "server-secret-"


@pytest.fixture
def internal():
    """The server's own (internal) upstream, where its environment points every provider."""
    server = FakeUpstream()
    yield server
    server.close()


@pytest.fixture
def server_environment(monkeypatch, internal):
    for name in KEY_VARIABLES:
        monkeypatch.setenv(name, SECRET + name)
    for name in BASE_VARIABLES:
        monkeypatch.setenv(name, internal.url + "/v1")


def client_engine():
    return make_engine([{"model_name": "demo", "dheera_ai_params": {"model": "mock/demo"}}],
                       general_settings={"allow_client_side_credentials": True,
                                         "allowed_client_api_base_hosts": ["127.0.0.1"]})


def call_through(engine, provider: str, params: dict) -> DheeraAIError | None:
    """One call of a kind `provider` serves, through a user_config deployment with `params`; the
    fake upstream answers in OpenAI's shape, so other providers may fail to read it (returned)."""
    kind, body = next((k, b) for k, b in (("chat_completions", {"messages": HI}), ("embeddings", {"input": "hi"}),
                                          ("rerank", {"query": "q", "documents": ["a"]}))
                      if engine.pipeline.providers[provider].supports(k))
    user_config = {"model_list": [{"model_name": "u", "litellm_params": {"model": f"{provider}/m", **params}}]}
    try:
        run(engine, kind, "u", {**body, "user_config": user_config})
    except DheeraAIError as error:
        return error
    return None


def sent(upstream) -> str:
    return json.dumps([(r.method, r.path, r.headers, r.body.decode("utf-8", "replace")) for r in upstream.requests])


def test_the_list_of_providers_checked_here_is_every_provider():
    # sagemaker is registered but not built: every call is a 501 before anything is sent. The
    # cloud providers sign with the server's own credentials: refused for a client outright (below).
    # pass_through serves no model call at all, only the pass-through routes (tests/test_passthrough.py).
    assert PROVIDERS == [n for n in client_engine().pipeline.providers.names()
                         if n not in ("mock", "sagemaker", "pass_through", *CLOUDS)]


CLOUDS = ("bedrock", "vertex_ai")


@pytest.mark.parametrize("provider", CLOUDS)
def test_a_user_config_deployment_on_a_cloud_provider_is_refused(provider, server_environment, upstream, internal):
    error = call_through(client_engine(), provider, {"api_base": upstream.url + "/v1", "api_key": "client-own"})
    assert isinstance(error, BadRequestError) and error.code == "client_provider_refused"
    assert upstream.requests == []


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_user_config_api_base_without_a_key_never_gets_the_servers(provider, server_environment, upstream,
                                                                       internal):
    engine = client_engine()
    error = call_through(engine, provider, {"api_base": upstream.url + "/v1"})
    if provider in KEYLESS:  # a local server: the call goes out, with nothing of the server's
        assert error is None and len(upstream.requests) == 1
    else:  # the review's repro: azure/, gemini/, ... sent AZURE_API_KEY, GOOGLE_API_KEY to HOST
        assert isinstance(error, BadRequestError) and error.code == "client_api_key_required"
        assert upstream.requests == []
    assert SECRET not in sent(upstream)
    assert internal.requests == []


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_user_config_with_its_own_key_sends_that_key_and_nothing_of_the_servers(provider, server_environment,
                                                                                  upstream, internal):
    call_through(client_engine(), provider, {"api_base": upstream.url + "/v1", "api_key": "sk-client-own"})
    assert len(upstream.requests) == 1 and "sk-client-own" in sent(upstream)
    assert SECRET not in sent(upstream)
    assert internal.requests == []


@pytest.mark.parametrize("provider", ["azure", "hosted_vllm", "dheera_ai_proxy"])
def test_a_user_config_without_an_api_base_never_goes_to_the_servers_address(provider, server_environment,
                                                                             internal):
    assert call_through(client_engine(), provider, {"api_key": "sk-client-own"}) is not None
    assert internal.requests == []


class CarelessProvider:
    """A third-party provider that reads the environment itself, as the review's azure/ did."""

    from dheera_ai import hookimpl

    @hookimpl
    def dheera_ai_register_providers(self, register):
        from plugins.providers.openai import OpenAIProvider

        class Careless(OpenAIProvider):
            def auth_headers(self, deployment):
                return {"Authorization": "Bearer " + (deployment.param("api_key") or ""),
                        "x-extra": os.environ["AZURE_API_KEY"]}
        register("careless", Careless())


def test_the_last_gate_stops_any_provider_sending_a_server_secret_to_a_client_host(server_environment,
                                                                                   upstream):
    import importlib

    import plugins
    from dheera_ai.engine import Engine

    own = {"model_name": "own", "dheera_ai_params": {"model": "careless/m", "api_base": upstream.url + "/own/v1",
                                                     "api_key": "sk-x"}}
    engine = Engine.from_raw_config(
        {"model_list": [own], "general_settings": {"allow_client_side_credentials": True,
                                                   "allowed_client_api_base_hosts": ["127.0.0.1"]}},
        load_entrypoints=False, plugins=[*(importlib.import_module(p) for p in plugins.BUILTIN), CarelessProvider()])
    error = call_through(engine, "careless", {"api_base": upstream.url + "/v1", "api_key": "sk-client-own"})
    assert error is not None and error.code == "server_credential_refused"
    assert upstream.requests == []
    # The same provider on a deployment of the server's own config still uses what the server gave it.
    assert run(engine, "chat_completions", "own", {"messages": HI}).status == 200
    assert upstream.last.headers["x-extra"] == SECRET + "AZURE_API_KEY"


def test_the_reviews_repro_through_the_gateway(live_app, upstream, internal, server_environment):
    import openai

    server = live_app({"model_list": [{"model_name": "demo", "dheera_ai_params": {"model": "mock/demo"}}],
                       "general_settings": {"master_key": MASTER_KEY, "allow_client_side_credentials": True,
                                            "allowed_client_api_base_hosts": ["127.0.0.1"]}})
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=MASTER_KEY, max_retries=0)
    for model in ("azure/d", "gemini/g", "hosted_vllm/v", "ollama/o"):
        user_config = {"model_list": [{"model_name": "u", "litellm_params": {"model": model,
                                                                            "api_base": upstream.url}}]}
        try:
            client.chat.completions.create(model="u", messages=HI, extra_body={"user_config": user_config})
        except openai.BadRequestError as error:
            assert error.code == "client_api_key_required" and not model.startswith(("hosted_vllm", "ollama"))
    assert SECRET not in sent(upstream)
    assert internal.requests == []


# -- 2. a client never sets its own price -------------------------------------------------------------

def gateway_config(upstream, **general):
    return {"model_list": [
        {"model_name": "cheap", "model_info": {"id": "cheap-a"},
         "dheera_ai_params": {"model": "openai/gpt-4o-mini", "api_base": upstream.url + "/cheap/v1",
                              "api_key": "sk-upstream-secret"}},
        {"model_name": "expensive", "model_info": {"id": "expensive-b"},
         "dheera_ai_params": {"model": "openai/gpt-4o", "api_base": upstream.url + "/expensive/v1",
                              "api_key": "sk-upstream-secret"}},
    ], "router_settings": {"retry_after": 0.001},
        "general_settings": {"master_key": MASTER_KEY, "allow_client_side_credentials": True,
                             "allowed_client_api_base_hosts": ["127.0.0.1"], "spend_flush_seconds": 3600,
                             **general}}


def rows(app):
    app.extensions["dheera_ai_state"].spend.flush()
    response = app.test_client().get("/spend/logs", headers=AUTH, query_string={"size": 1000})
    assert response.status_code == 200, response.json
    return response.json["data"]


def generate(client, **fields):
    response = client.post("/key/generate", headers=AUTH, json=fields)
    assert response.status_code == 200, response.json
    return response.json["key"]


def chat(client, key=MASTER_KEY, model="cheap", **body):
    return client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                       json={"model": model, "messages": HI, **body})


def own_router(upstream, model, **entry):
    return {"model_list": [{"model_name": "mine", "litellm_params": {
        "model": model, "api_base": upstream.url + "/mine/v1", "api_key": "sk-client-own"}, **entry}]}


def test_a_user_configs_model_info_never_sets_its_price(make_app, upstream):
    app = make_app(gateway_config(upstream))
    key = generate(app.test_client(), max_budget=1.0)
    free = {"input_cost_per_token": 0, "output_cost_per_token": 0, "base_model": "gpt-3.5-turbo"}
    response = chat(app.test_client(), key, model="mine",
                    user_config=own_router(upstream, "openai/gpt-4o-mini", model_info=free))
    assert response.status_code == 200, response.json
    assert float(response.headers["x-dheera-ai-response-cost"]) == pytest.approx(MINI_COST)
    [row] = rows(app)
    assert row["cost"] == pytest.approx(MINI_COST) and row["priced"] is True
    info = app.test_client().get("/key/info", headers={"Authorization": f"Bearer {key}"}).json
    assert info["info"]["spend"] == pytest.approx(MINI_COST)
    # The review's -$10 a call: a negative price is no price at all, refused before anything is sent.
    negative = own_router(upstream, "openai/gpt-4o-mini", model_info={"input_cost_per_token": -1})
    refused = chat(app.test_client(), key, model="mine", user_config=negative)
    assert refused.status_code == 400 and "input_cost_per_token" in refused.json["error"]["message"]
    assert upstream.count("/mine/") == 1


def test_prices_are_not_shared_by_position_between_two_user_configs(make_app, upstream):
    app = make_app(gateway_config(upstream))
    client = app.test_client()
    for model in ("openai/gpt-4o", "openai/gpt-4o-mini"):  # both are `user-config-0`
        assert chat(client, model="mine", user_config=own_router(upstream, model)).status_code == 200
    assert sorted(r["cost"] for r in rows(app)) == [pytest.approx(MINI_COST), pytest.approx(GPT4O_COST)]


def test_an_unpriced_client_model_is_refused_under_a_budget_and_unpriced_without(make_app, upstream):
    app = make_app(gateway_config(upstream))
    client = app.test_client()
    budgeted, free = generate(client, max_budget=1.0), generate(client)
    refused = chat(client, budgeted, model="mine", user_config=own_router(upstream, "openai/no-such-price"))
    assert refused.status_code == 400 and refused.json["error"]["code"] == "unpriced_model_under_budget"
    assert upstream.count("/mine/") == 0
    answered = chat(client, free, model="mine", user_config=own_router(upstream, "openai/no-such-price"))
    assert answered.status_code == 200
    assert [r["priced"] for r in rows(app) if r["status"] == 200] == [False]


def test_no_cost_is_negative_whatever_a_client_chosen_upstream_reports(make_app, upstream):
    app = make_app(gateway_config(upstream))
    key = generate(app.test_client(), max_budget=1.0)
    answer = chat_completion()
    answer["usage"] = {"prompt_tokens": -10**9, "completion_tokens": -10**9, "total_tokens": -2 * 10**9,
                       "prompt_tokens_details": {"cached_tokens": 10**9}}
    upstream.respond(json.dumps(answer).encode())
    response = chat(app.test_client(), key, model="mine", user_config=own_router(upstream, "openai/gpt-4o-mini"))
    assert response.status_code == 200
    assert float(response.headers["x-dheera-ai-response-cost"]) == 0.0
    [row] = rows(app)
    assert row["cost"] == 0.0 and row["prompt_tokens"] >= 0 and row["completion_tokens"] >= 0


def test_a_negative_configured_price_stops_start_up(make_app, upstream):
    config = gateway_config(upstream)
    config["model_list"][0]["model_info"]["input_cost_per_token"] = -1e-6
    with pytest.raises(ConfigError, match=r"model_list\[0\]\.model_info\.input_cost_per_token"):
        make_app(config)


# -- 3. every attempt and fallback stays inside the key's models ----------------------------------

FALLBACKS = {
    "fallbacks": ({"status": 500}, {"fallbacks": [{"cheap": ["expensive"]}]}),
    "default_fallbacks": ({"status": 503}, {"default_fallbacks": ["expensive"]}),
    "context_window_fallbacks": ({"status": 400, "message": "This model's maximum context length is 128000 tokens",
                                  "code": "context_length_exceeded"},
                                 {"context_window_fallbacks": [{"cheap": ["expensive"]}]}),
    "content_policy_fallbacks": ({"status": 400, "message": "rejected by our content_policy",
                                  "code": "content_policy_violation"},
                                 {"content_policy_fallbacks": [{"cheap": ["expensive"]}]}),
}


@pytest.mark.parametrize("kind", FALLBACKS)
def test_no_fallback_reaches_a_model_the_key_may_not_use(make_app, upstream, kind):
    failure, settings = FALLBACKS[kind]
    config = gateway_config(upstream)
    config["router_settings"].update(settings, num_retries=1)
    app = make_app(config)
    client = app.test_client()
    upstream.always("/cheap/", **failure)
    limited = generate(client, models=["cheap"])

    response = chat(client, limited)
    assert response.status_code == failure["status"]  # cheap's own failure, not expensive's answer
    assert upstream.count("/expensive/") == 0
    # The same call with a key that may use both falls back as configured.
    assert chat(client, generate(client, models=["cheap", "expensive"])).status_code == 200
    assert upstream.count("/expensive/") == 1


def test_a_teams_models_bound_every_fallback_too(make_app, upstream):
    config = gateway_config(upstream)
    config["router_settings"]["fallbacks"] = [{"cheap": ["expensive"]}]
    app = make_app(config)
    client = app.test_client()
    assert client.post("/team/new", headers=AUTH, json={"team_id": "eng", "models": ["cheap"]}).status_code == 200
    upstream.always("/cheap/", status=500)
    assert chat(client, generate(client, team_id="eng")).status_code == 500
    assert upstream.count("/expensive/") == 0


# -- 4. token estimates cannot move a budget hold -------------------------------------------------

class HoldWatcher:
    """Reads the key's budget hold while its call is being dispatched (the hold is then taken)."""

    def __init__(self):
        self.store = self.key_hash = None
        self.seen = []

    from dheera_ai import hookimpl

    @hookimpl(tryfirst=True)
    def dheera_ai_dispatch(self, call, deployment, provider):
        self.seen.append(self.store.budget_counter("key", self.key_hash, 0.0)[1])


def test_a_fallback_onto_a_costlier_model_holds_that_models_estimate(make_app, upstream):
    watcher = HoldWatcher()
    config = gateway_config(upstream)
    config["router_settings"]["fallbacks"] = [{"cheap": ["expensive"]}]
    app = make_app(config, extra_plugins=[watcher])
    key = generate(app.test_client(), max_budget=1.0)
    watcher.store, watcher.key_hash = app.extensions["dheera_ai_state"].store, hashlib.sha256(key.encode()).hexdigest()
    upstream.always("/cheap/", status=500)
    assert chat(app.test_client(), key).status_code == 200
    cheap, expensive = watcher.seen  # 1,024 answer tokens at $6e-7, then at $1e-5
    assert cheap == pytest.approx(1024 * 6.0e-7, rel=0.1) and expensive == pytest.approx(1024 * 1.0e-5, rel=0.1)


@pytest.mark.parametrize("field, value", [("max_output_tokens", -10**15), ("max_output_tokens", -1e15),
                                          ("max_tokens", 10**12), ("max_completion_tokens", 10**12)])
def test_a_hold_is_never_negative_nor_beyond_the_budget(make_app, upstream, field, value):
    watcher = HoldWatcher()
    app = make_app(gateway_config(upstream), extra_plugins=[watcher])
    budget = 0.5
    key = generate(app.test_client(), max_budget=budget)
    watcher.store, watcher.key_hash = app.extensions["dheera_ai_state"].store, hashlib.sha256(key.encode()).hexdigest()
    chat(app.test_client(), key, **{field: value})
    [held] = watcher.seen
    assert 0.0 < held <= budget
    # An answer bound past any model's is cut to 128,000 tokens (gpt-4o-mini: $0.0768).
    assert held < 128_000 * 6.0e-7 * 1.01


def test_a_negative_estimate_cannot_open_a_spent_budget_to_others(make_app, upstream, live_app):
    """The review's repro: with one stream open on a $0.003 budget, 40 of 40 calls were admitted."""
    import requests

    config = gateway_config(upstream)
    config["model_list"][0]["model_info"].update(input_cost_per_token=1e-4, output_cost_per_token=1e-4)
    server = live_app(config)
    key = requests.post(server.url + "/key/generate", headers=AUTH, json={"max_budget": 0.003}).json()["key"]
    upstream.stream(chat_chunks(), hold=3.0)
    with requests.post(server.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                       json={"model": "cheap", "messages": HI, "stream": True, "max_output_tokens": -10**15},
                       stream=True, timeout=10) as opened:
        next(opened.iter_content(64))  # the stream is under way, its hold taken
        others = [requests.post(server.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                                json={"model": "cheap", "messages": HI}, timeout=10).status_code for _ in range(5)]
    assert others.count(400) == 5, others


# -- 5. one bad row never stops spend recording ---------------------------------------------------

def nested(levels: int):
    value = "bottom"
    for _ in range(levels):
        value = {"n": value}
    return value


@pytest.mark.parametrize("body, param", [({"metadata": nested(60)}, "metadata"),
                                         ({"metadata": {"note": "x\u0000y"}}, "metadata"),
                                         ({"metadata": {"k\u0000": 1}}, "metadata"),
                                         ({"tags": ["team\u0000a"]}, "tags"),
                                         ({"metadata": {"tags": ["a\u0000"]}}, "metadata"),
                                         ({"metadata": {"blob": "x" * 70_000}}, "metadata")])
def test_a_request_whose_metadata_or_tags_cannot_be_stored_is_a_400(make_app, upstream, body, param):
    app = make_app(gateway_config(upstream))
    response = chat(app.test_client(), **body)
    assert response.status_code == 400, response.json
    assert response.json["error"]["param"] == param
    assert upstream.requests == []
    [row] = rows(app)  # the refusal has its row, as every call does
    assert row["status"] == 400


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/state.sqlite3"
        return
    schema = PostgresSchema()
    yield schema.url
    schema.drop()


def test_a_nul_in_the_model_name_still_leaves_a_stored_row(make_app, upstream, database_url):
    app = make_app(gateway_config(upstream, database_url=database_url))
    client = app.test_client()
    assert chat(client, model="x\u0000").status_code == 400
    assert chat(client).status_code == 200
    stored = rows(app)
    assert sorted(r["model_group"] for r in stored) == ["cheap", "x\ufffd"]


def test_a_row_the_store_refuses_is_quarantined_and_the_rest_recorded(make_app, upstream, database_url):
    app = make_app(gateway_config(upstream, database_url=database_url))
    spend = app.extensions["dheera_ai_state"].spend
    client = app.test_client()
    assert chat(client).status_code == 200
    # A row spooled before this fix (or by any other way): a value no store can take.
    poisoned = {**rows(app)[0], "row_id": "poisoned-row", "prompt_tokens": 2**63}
    if database_url.startswith("postgresql"):
        poisoned["model_group"] = "x\u0000"  # PostgreSQL text cannot hold a NUL
    spend.spool.append(poisoned)
    for _ in range(3):
        assert chat(client).status_code == 200

    stored = rows(app)  # flushing does not fail, and stops nothing
    assert len(stored) == 4 and "poisoned-row" not in [r["row_id"] for r in stored]
    with open(spend.spool.dead_letter_path(), "rb") as f:
        [kept] = [json.loads(line) for line in f]
    assert kept["row_id"] == "poisoned-row"
    assert chat(client).status_code == 200
    assert len(rows(app)) == 5  # later rows go in too, and the bad one is not tried again
    readiness = client.get("/health/readiness").json
    assert readiness["status"] == "degraded" and readiness["spool"]["quarantined_rows"] == 1
    metrics = client.get("/metrics", headers=AUTH).get_data(as_text=True)
    assert "dheera_ai_spend_rows_quarantined 1.0" in metrics


def test_a_store_that_is_down_quarantines_nothing(make_app, upstream, store_refuses_spend):
    app = make_app(gateway_config(upstream))
    store_refuses_spend(app)
    spend = app.extensions["dheera_ai_state"].spend
    assert chat(app.test_client()).status_code == 200
    with pytest.raises(StoreUnavailableError):
        spend.flush()
    assert spend.spool.quarantined_rows() == 0 and spend.spool.pending_bytes() > 0
    assert not os.path.exists(spend.spool.dead_letter_path())


@pytest.mark.parametrize("nul", ["\u0000", ""])
@pytest.mark.parametrize("levels", [100, 300])  # past storable's cut-off only; past the JSON encoder's too
def test_the_store_takes_every_row_a_call_can_make(database_url, tmp_path, levels, nul):
    """At the store itself: a row made storable as the spool encodes it goes in on both backends."""
    from dheera_ai.storable import storable_json

    store = store_for_url(database_url, str(tmp_path))
    store.migrate()
    try:
        line = storable_json({
            "row_id": "r1", "request_id": f"c{nul}", "call_type": "chat_completions", "key_hash": None,
            "key_alias": None, "user_id": None, "team_id": None, "model_group": f"x{nul}", "deployment": None,
            "provider": None, "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0, "cost": 0.0,
            "priced": False, "usage_estimated": False, "tags": [f"t{nul}"], "metadata": nested(levels),
            "status": 400, "error_type": "X", "stream": False, "stream_cut": False, "retries": 0, "fallbacks": 0,
            "start_time": 1.0, "end_time": 2.0, "latency_ms": 1.0, "budgets": []})
        assert b"\\u0000" not in line
        assert store.record_spend([json.loads(line)]) == 1
    finally:
        store.close()
