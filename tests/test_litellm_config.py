"""LiteLLM config files start unchanged: unknown or unused keys are warnings, numbers in any YAML
spelling are numbers, and only what Dheera AI reads can stop start-up."""

import shutil
import subprocess

import pytest
import requests

from dheera_ai.config import ConfigError, build_config, read_config_file
from tests.support.process import COMMAND, GatewayProcess

CI_CONFIG = "tests/data/litellm_ci_config.yaml"
PROVIDERS = {"openai", "azure", "anthropic", "groq", "mistral", "sagemaker", "mock"}
UNSET = ("AZURE_API_KEY", "AZURE_API_BASE", "OPENAI_API_KEY", "REDIS_HOST", "REDIS_PASSWORD", "REDIS_PORT",
         "LANGFUSE_PROJECT1_PUBLIC", "LANGFUSE_PROJECT1_SECRET", "ANTHROPIC_API_KEY", "GROQ_API_KEY")


@pytest.fixture
def no_provider_env(monkeypatch):
    for name in UNSET:
        monkeypatch.delenv(name, raising=False)


def test_litellms_ci_config_loads_with_warnings_only(no_provider_env):
    config = build_config(read_config_file(CI_CONFIG), PROVIDERS)

    assert config.master_key == "sk-1234" and config.short_master_key
    assert config.router_settings["routing_strategy"] == "usage-based-routing"  # LiteLLM's -v2
    by_name = {d.model_name: d for d in config.deployments}
    assert (by_name["gpt-instruct"].provider, by_name["gpt-instruct"].model) == ("openai", "gpt-3.5-turbo-instruct")
    assert by_name["sagemaker-completion-model"].provider == "sagemaker"
    # The price LiteLLM lets the params carry is read as model_info's; 1e-06 is a float.
    assert by_name["sagemaker-completion-model"].model_info["input_cost_per_second"] == pytest.approx(0.00042)
    assert by_name["bad-model"].model_info["input_cost_per_token"] == 1e-06
    warnings = "\n".join(config.warnings)
    for expected in ("general_settings.master_key: shorter than 8 characters",
                     "finetune_settings[0].api_base: environment variable AZURE_API_BASE is not set",
                     "router_settings.redis_host: environment variable REDIS_HOST is not set",
                     "litellm_settings.default_team_settings[0].langfuse_secret: environment variable "
                     "LANGFUSE_PROJECT1_SECRET is not set",
                     "router_settings.redis_host: a LiteLLM setting Dheera AI does not use; ignored "
                     "(set general_settings.redis_url instead)",
                     "files_settings: a LiteLLM setting Dheera AI does not use",
                     "model_list[3]: Dheera AI has no AWS SageMaker provider yet"):
        assert expected in warnings


@pytest.mark.parametrize("written", ["1e-06", "1.0e-6", "0.000001", "1E-6"])
def test_a_price_in_any_yaml_spelling_is_a_float(tmp_path, written):
    path = tmp_path / "config.yaml"
    path.write_text(f"""
model_list:
  - model_name: m
    litellm_params: {{model: mock/m, input_cost_per_token: {written}}}
    model_info: {{input_cost_per_token: {written}, output_cost_per_token: "{written}", tiered_cost_x: {written}}}
""")
    [deployment] = build_config(read_config_file(str(path)), PROVIDERS).deployments
    assert deployment.model_info["input_cost_per_token"] == 1e-06
    assert deployment.model_info["output_cost_per_token"] == 1e-06
    assert deployment.model_info["tiered_cost_x"] == 1e-06  # any *cost* key is a price
    assert deployment.params["input_cost_per_token"] == 1e-06


@pytest.mark.parametrize("section, key, value, message", [
    ("model_info", "input_cost_per_token", "abc", "not a number: 'abc'"),
    ("model_info", "output_cost_per_token", True, "not a number: True"),
    ("model_info", "max_tokens", "2.5", "not a whole number: '2.5'"),
    ("model_info", "cache_read_input_token_cost", "nan", "not a finite number: 'nan'"),
    ("litellm_params", "timeout", "soon", "not a number: 'soon'"),
    ("litellm_params", "rpm", "lots", "not a whole number: 'lots'"),
])
def test_a_bad_number_stops_start_up_naming_its_path(section, key, value, message):
    raw = {"model_list": [{"model_name": "m", "litellm_params": {"model": "mock/m"}, "model_info": {}}]}
    raw["model_list"][0][section][key] = value
    with pytest.raises(ConfigError) as exc:
        build_config(raw, PROVIDERS)
    assert f"model_list[0].{section}.{key}: {message}" in exc.value.problems


def test_settings_sections_are_typed():
    with pytest.raises(ConfigError) as exc:
        build_config({"litellm_settings": {"drop_params": "maybe"},
                      "general_settings": {"max_request_size_mb": "big"}}, PROVIDERS)
    assert "litellm_settings.drop_params: Not a valid boolean" in exc.value.problems
    assert "general_settings.max_request_size_mb: not a number: 'big'" in exc.value.problems


def test_unknown_keys_warn_with_a_did_you_mean():
    config = build_config({"general_settings": {"master_kye": "sk-long-enough-key"},
                           "router_settings": {"routing_stratgy": "least-busy"},
                           "litellm_settings": {"drop_param": True},
                           "modle_list": []}, PROVIDERS)
    assert set(config.warnings) >= {
        "general_settings.master_kye: unknown key, ignored (did you mean 'master_key'?)",
        "router_settings.routing_stratgy: unknown key, ignored (did you mean 'routing_strategy'?)",
        "litellm_settings.drop_param: unknown key, ignored (did you mean 'drop_params'?)",
        "modle_list: unknown key, ignored (did you mean 'model_list'?)"}


def test_litellm_features_we_lack_are_named_not_silently_ignored():
    config = build_config({"litellm_settings": {"cache": True, "service_callback": ["x"]}, "finetune_settings": {},
                           "guardrails": []}, PROVIDERS)
    unused = "a LiteLLM setting Dheera AI does not use"
    assert any(w.startswith(f"litellm_settings.service_callback: {unused}") for w in config.warnings)
    assert not any(w.startswith("litellm_settings.cache") for w in config.warnings)  # read: the response cache
    assert any(w.startswith(f"finetune_settings: {unused}") for w in config.warnings)
    assert not any(w.startswith("guardrails") for w in config.warnings)  # read: see tests/test_guardrails.py


def test_an_unset_variable_in_a_setting_we_read_still_stops_start_up(monkeypatch):
    monkeypatch.delenv("UNSET_DB", raising=False)
    with pytest.raises(ConfigError) as exc:
        build_config({"general_settings": {"database_url": "os.environ/UNSET_DB"}}, PROVIDERS)
    assert exc.value.problems == ["general_settings.database_url: environment variable UNSET_DB is not set"]


def test_the_command_serves_litellms_ci_config_on_loopback_and_says_why(tmp_path, no_provider_env):
    path = tmp_path / "proxy_server_config.yaml"
    shutil.copy(CI_CONFIG, path)
    process = GatewayProcess("--config", str(path), "--workers", "1")
    try:
        process.wait_ready()
        output = process.output()
        assert "bind 127.0.0.1" in output and "shorter than 8 characters" in output
        assert "warning: router_settings.redis_host" in output
        headers = {"Authorization": "Bearer sk-1234"}
        answer = requests.post(process.url + "/v1/chat/completions", headers=headers, timeout=10, json={
            "model": "sagemaker-completion-model", "messages": [{"role": "user", "content": "hi"}]})
        assert answer.status_code == 501
        assert "no AWS SageMaker provider" in answer.json()["error"]["message"]
        assert requests.get(process.url + "/v1/models", headers=headers, timeout=10).status_code == 200
    finally:
        process.close()


def test_a_short_master_key_is_refused_beyond_loopback(tmp_path, no_provider_env):
    path = tmp_path / "proxy_server_config.yaml"
    shutil.copy(CI_CONFIG, path)
    result = subprocess.run([COMMAND, "--config", str(path), "--host", "0.0.0.0", "--port", "1"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "refusing to listen on 0.0.0.0" in result.stderr
