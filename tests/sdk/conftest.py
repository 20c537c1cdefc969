import time

import pytest

import dheera_ai
from tests.conftest import MASTER_KEY

# The test gateway's key, for the pages' placeholders (`your-...-api-key`, and `sk-1234`, which is
# too short for a gateway key: master keys have at least 8 characters, virtual keys `sk-` and 8 more).
GATEWAY_KEY = MASTER_KEY
# Every model the pages call through a gateway, served there by the fake upstream.
PAGE_MODELS = {
    "your-model-name": "openai/gpt-4o-mini",
    "your-embedding-model": "openai/text-embedding-3-small",
    "dall-e-3": "openai/dall-e-3",
    "gpt-image-1": "openai/gpt-image-1",
    "whisper-1": "openai/whisper-1",
    "tts-1": "openai/tts-1",
    "rerank-english-v2.0": "openai/rerank-english-v2.0",
    "vertex_ai/gemini-2.0-flash-001": "openai/gemini-2.0-flash-001",
    "gpt-4": "openai/gpt-4",
    "demo": "mock/demo",
}
# What the pages (and the SDK) read from the environment; each test starts without them.
SDK_ENVIRONMENT = ("DHEERA_AI_PROXY_API_KEY", "DHEERA_AI_PROXY_API_BASE", "USE_DHEERA_AI_PROXY", "AZURE_API_BASE",
                   "AZURE_API_VERSION", "AZURE_API_KEY", "AZURE_AD_TOKEN", "AZURE_RESPONSES_OPENAI_API_KEY")


@pytest.fixture(autouse=True)
def clean_sdk(monkeypatch, tmp_path):
    """No gateway settings in the module or the environment, whatever a test (or a page's block)
    sets; a scratch working directory for the files the pages open."""
    for name in SDK_ENVIRONMENT:
        monkeypatch.setenv(name, "")  # recorded first, so whatever a block sets is undone
        monkeypatch.delenv(name)
    for name, value in (("api_base", None), ("api_key", None), ("use_dheera_ai_proxy", False),
                        ("drop_params", False)):
        monkeypatch.setattr(dheera_ai, name, value)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def gateway_config(upstream, tmp_path):
    return {
        "model_list": [{"model_name": name, "dheera_ai_params": {
            "model": model, "api_base": upstream.url + "/v1", "api_key": "sk-upstream-secret"}}
            for name, model in PAGE_MODELS.items()],
        "general_settings": {"master_key": GATEWAY_KEY, "database_url": f"sqlite:///{tmp_path}/state.sqlite3"},
    }


@pytest.fixture
def gateway(live_app, gateway_config):
    """A real gateway on 127.0.0.1, as the pages' `http://localhost:4000`."""
    return live_app(gateway_config)


@pytest.fixture
def gateway_calls(call_log):
    """`gateway_calls(n)`: the gateway's call-log lines, waiting briefly for n of them (the SDK's
    own lines, on its `sdk-` deployments, are left out)."""
    def lines(count=1, timeout=5.0):
        deadline = time.time() + timeout
        while True:
            found = [line for line in call_log(0) if not str(line.get("deployment")).startswith("sdk-")]
            if len(found) >= count or time.time() > deadline:
                return found
            time.sleep(0.01)
    return lines
