"""Config loading: LiteLLM files load unchanged, and a bad config names the key that is wrong."""

import datetime

import pytest

from dheera_ai.config import ConfigError, build_config, read_config_file

PROVIDERS = {"openai", "mock", "anthropic"}


def load(raw):
    return build_config(raw, PROVIDERS)


def problems_of(raw):
    with pytest.raises(ConfigError) as exc:
        load(raw)
    return exc.value.problems


def test_a_litellm_config_loads_unchanged(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    # A LiteLLM user with the langfuse callback has its keys in the environment.
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", "pk-lf-1")
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", "sk-lf-1")
    path = tmp_path / "config.yaml"
    path.write_text("""
model_list:
  - model_name: gpt-3.5-turbo
    litellm_params:
      model: gpt-3.5-turbo
      api_key: os.environ/OPENAI_API_KEY
      rpm: 600
    model_info:
      description: the default
  - model_name: claude
    litellm_params: {model: anthropic/claude-3-5-sonnet-20241022, api_version: 2024-02-01}
litellm_settings:
  drop_params: true
  success_callback: ["langfuse"]
router_settings:
  routing_strategy: simple-shuffle
general_settings:
  master_key: sk-1234-abcd
""")
    config = load(read_config_file(str(path)))

    first, second = config.deployments
    assert (first.provider, first.model, first.params["api_key"]) == ("openai", "gpt-3.5-turbo", "sk-from-env")
    assert first.params["rpm"] == 600 and first.model_info == {"description": "the default"}
    # YAML reads 2024-02-01 as a date; it is an API version string.
    assert second.params["api_version"] == "2024-02-01"
    assert config.dheera_ai_settings["drop_params"] is True
    assert config.master_key == "sk-1234-abcd"
    assert config.callbacks == {"langfuse": {"success": True, "failure": False, "capture_content": True}}


def test_an_unknown_provider_is_named_with_its_path():
    raw = {"model_list": [{"model_name": f"m{i}", "dheera_ai_params": {"model": "mock/x"}} for i in range(2)]
           + [{"model_name": "m2", "dheera_ai_params": {"model": "opnai/gpt-4o"}}]}
    [problem] = problems_of(raw)
    assert problem.startswith("model_list[2].dheera_ai_params.model: unknown provider 'opnai'")
    assert "did you mean 'openai'" in problem


def test_the_path_uses_the_block_name_the_user_wrote():
    [problem] = problems_of({"model_list": [{"model_name": "x", "litellm_params": {"model": "nope/x"}}]})
    assert problem.startswith("model_list[0].litellm_params.model: unknown provider 'nope'")


@pytest.mark.parametrize("entry, expected", [
    ({"dheera_ai_params": {"model": "mock/x"}}, "model_list[0].model_name: Missing data for required field"),
    ({"model_name": "x"}, "model_list[0].dheera_ai_params: required"),
    ({"model_name": "x", "dheera_ai_params": {}}, "model_list[0].dheera_ai_params.model: Missing data"),
    ({"model_name": "x", "dheera_ai_params": {"model": "mock/x", "timeout": -1}},
     "model_list[0].dheera_ai_params.timeout: Must be greater than 0"),
    ({"model_name": "x", "dheera_ai_params": {"model": "mock/x", "rpm": "lots"}},
     "model_list[0].dheera_ai_params.rpm: not a whole number: 'lots'"),
    ({"model_name": "x", "dheera_ai_params": {"model": "my-private-model"}},
     "model_list[0].dheera_ai_params.model: 'my-private-model' names no provider"),
])
def test_bad_deployments_are_reported_by_path(entry, expected):
    problems = problems_of({"model_list": [entry]})
    assert any(p.startswith(expected) for p in problems), problems


def test_environment_values_are_read_at_load_only(monkeypatch):
    monkeypatch.setenv("MY_BASE", "http://first")
    config = load({"model_list": [{"model_name": "x", "dheera_ai_params": {"model": "openai/x",
                                                                         "api_base": "os.environ/MY_BASE"}}]})
    monkeypatch.setenv("MY_BASE", "http://second")
    assert config.deployments[0].params["api_base"] == "http://first"


def test_environment_variables_section_feeds_the_rest(monkeypatch):
    monkeypatch.delenv("FED_KEY", raising=False)
    config = load({"environment_variables": {"FED_KEY": "sk-fed"},
                   "model_list": [{"model_name": "x", "dheera_ai_params": {"model": "openai/x",
                                                                           "api_key": "os.environ/FED_KEY"}}]})
    assert config.deployments[0].params["api_key"] == "sk-fed"


def test_an_unset_provider_key_waits_for_call_time(monkeypatch):
    monkeypatch.delenv("UNSET_KEY", raising=False)
    config = load({"model_list": [{"model_name": "x", "dheera_ai_params": {"model": "openai/x",
                                                                         "api_key": "os.environ/UNSET_KEY"}}]})
    assert config.deployments[0].unresolved == {"api_key": "UNSET_KEY"}


def test_an_unset_master_key_stops_start_up(monkeypatch):
    monkeypatch.delenv("UNSET_MASTER", raising=False)
    [problem] = problems_of({"general_settings": {"master_key": "os.environ/UNSET_MASTER"}})
    assert problem == "general_settings.master_key: environment variable UNSET_MASTER is not set"


def test_a_price_table_path_that_is_not_a_file_stops_start_up(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative paths start from the working directory, as the gateway reads them
    [problem] = problems_of({"general_settings": {"model_prices_path": "conf/model_prices.yaml"}})
    assert problem == (f"general_settings.model_prices_path: no such file: conf/model_prices.yaml "
                       f"(relative paths start from {tmp_path})")
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "model_prices.yaml").write_text("openai/gpt-4o: {input_cost_per_token: 1.0e-6}\n")
    config = load({"general_settings": {"model_prices_path": "conf/model_prices.yaml"}})
    assert config.general_settings["model_prices_path"] == "conf/model_prices.yaml"


def test_unknown_sections_are_accepted_with_a_warning():
    config = load({"model_list": [], "litellm_extra_section": {"x": 1}})
    assert config.deployments == []
    assert config.warnings == ("litellm_extra_section: unknown key, ignored",)


def test_bad_files_are_reported(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        read_config_file(str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_list: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        read_config_file(str(bad))
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        read_config_file(str(listing))


def test_deployment_ids_are_stable_and_distinct():
    raw = {"model_list": [{"model_name": "g", "dheera_ai_params": {"model": "mock/a"}},
                          {"model_name": "g", "dheera_ai_params": {"model": "mock/a"}}]}
    first, second = load(raw).deployments
    assert first.id != second.id
    assert [d.id for d in load(raw).deployments] == [first.id, second.id]


def test_api_version_dates_become_strings():
    config = load({"model_list": [{"model_name": "x", "dheera_ai_params": {
        "model": "openai/x", "api_version": datetime.date(2024, 2, 1)}}]})
    assert config.deployments[0].params["api_version"] == "2024-02-01"


def test_the_shipped_config_is_valid():
    import importlib

    import plugins
    from dheera_ai.engine import Engine

    engine = Engine.from_raw_config(read_config_file("conf/config.yaml"), load_entrypoints=False,
                                    plugins=[importlib.import_module(p) for p in plugins.BUILTIN])
    assert "demo" in engine.router.model_names()
    assert {"mock", "openai", "azure", "anthropic", "cohere", "gemini", "dheera_ai_proxy",
            "groq", "ollama"} <= set(engine.providers.names())


@pytest.mark.parametrize("settings, expected", [
    ({"routing_strategy": "fastest"}, "router_settings.routing_strategy: Must be one of"),
    ({"num_retries": -1}, "router_settings.num_retries: Must be greater than or equal to 0"),
    ({"retry_policy": {"TimeoutRetries": 2}}, "router_settings.retry_policy"),
    ({"fallbacks": {"m": ["n"]}}, "router_settings.fallbacks: must be a list"),
    ({"fallbacks": [{"m": ["nope"]}]}, "router_settings.fallbacks: unknown model group 'nope'"),
    ({"default_fallbacks": ["nope"]}, "router_settings.default_fallbacks: unknown model group 'nope'"),
    ({"allowed_fails": 0}, "router_settings.allowed_fails"),
])
def test_bad_router_settings_are_reported_by_path(settings, expected):
    raw = {"model_list": [{"model_name": "m", "dheera_ai_params": {"model": "mock/x"}}], "router_settings": settings}
    [problem] = problems_of(raw)
    assert problem.startswith(expected), problem


def test_router_settings_get_defaults_and_litellm_settings_aliases():
    raw = {"model_list": [{"model_name": "m", "dheera_ai_params": {"model": "mock/x"}},
                          {"model_name": "n", "dheera_ai_params": {"model": "mock/y"}}],
           "litellm_settings": {"num_retries": 3, "request_timeout": 12, "fallbacks": [{"m": ["n"]}]},
           "router_settings": {"num_retries": 1}}
    settings = load(raw).router_settings
    assert settings["routing_strategy"] == "simple-shuffle"
    assert settings["num_retries"] == 1, "router_settings wins over litellm_settings"
    assert settings["timeout"] == 12 and settings["fallbacks"] == {"m": ["n"]}


@pytest.mark.parametrize("value, expected", [
    (["api_key", "api_secret"], "dheera_ai_params.configurable_clientside_auth_params[1]: must be one of"),
    ([{"api_base": "(unclosed"}], "not a valid regular expression"),
    ([{"api_key": ".*"}], "must be a parameter name or {api_base"),
])
def test_bad_configurable_clientside_auth_params_are_reported(value, expected):
    raw = {"model_list": [{"model_name": "m", "dheera_ai_params": {
        "model": "mock/x", "configurable_clientside_auth_params": value}}]}
    [problem] = problems_of(raw)
    assert expected in problem, problem
