"""Cost per call, for each pricing unit, from the shipped table and model_info overrides."""

import pytest

from dheera_ai.cost import PriceTable, price_usage
from dheera_ai.types import Deployment, Usage


def deployment(model, provider="openai", model_info=None):
    return Deployment(id=f"{provider}/{model}/{sorted((model_info or {}).items())}", model_name=model,
                      provider=provider, model=model, params={}, model_info=model_info or {})


@pytest.fixture(scope="module")
def table():
    return PriceTable.load()


def test_tokens_are_priced_per_input_and_output_token(table):
    cost = table.cost(deployment("gpt-4o"), Usage(1_000_000, 100_000, 1_100_000))
    assert cost.priced and cost.amount == pytest.approx(2.50 + 1.00)


def test_dated_snapshots_and_base_models_find_their_family(table):
    usage = Usage(1_000_000, 0, 1_000_000)
    assert table.cost(deployment("gpt-4o-mini-2024-07-18"), usage).amount == pytest.approx(0.15)
    assert table.cost(deployment("claude-3-5-sonnet-20241022", "anthropic"), usage).amount == pytest.approx(3.0)
    azure = deployment("my-prod-deployment", "azure", {"base_model": "gpt-4.1"})
    assert table.cost(azure, usage).amount == pytest.approx(2.0)


def test_cached_prompt_tokens_are_priced_at_the_cache_rate(table):
    usage = Usage(1_000_000, 0, 1_000_000, {"prompt_tokens_details": {"cached_tokens": 400_000}})
    assert table.cost(deployment("gpt-4o"), usage).amount == pytest.approx(0.6 * 2.5 + 0.4 * 1.25)


def test_anthropic_cache_writes_and_reads(table):
    usage = Usage(1_000_000, 0, 1_000_000, {"cache_read_input_tokens": 500_000,
                                             "cache_creation_input_tokens": 100_000})
    amount = table.cost(deployment("claude-sonnet-4-5", "anthropic"), usage).amount
    assert amount == pytest.approx(0.4 * 3.0 + 0.5 * 0.3 + 0.1 * 3.75)


def test_images_are_priced_by_size_and_quality(table):
    usage = Usage(details={"images": 2})
    d = deployment("dall-e-3")
    assert table.cost(d, usage, {"size": "1024x1024"}).amount == pytest.approx(0.08)
    assert table.cost(d, usage, {"size": "1792x1024", "quality": "hd"}).amount == pytest.approx(0.24)


def test_speech_is_priced_per_character_and_transcription_per_second(table):
    assert table.cost(deployment("tts-1"), Usage(details={"characters": 1000})).amount == pytest.approx(0.015)
    assert table.cost(deployment("whisper-1"), Usage(details={"audio_seconds": 60})).amount == pytest.approx(0.006)


def test_rerank_is_priced_per_search_unit(table):
    cost = table.cost(deployment("rerank-v3.5", "cohere"), Usage(details={"search_units": 3}))
    assert cost.amount == pytest.approx(0.006)


def test_model_info_overrides_the_table(table):
    d = deployment("gpt-4o", model_info={"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6})
    assert table.cost(d, Usage(1000, 1000, 2000)).amount == pytest.approx(0.003)


def test_an_unknown_model_costs_nothing_and_is_flagged(table):
    cost = table.cost(deployment("my-finetune-xyz", "hosted_vllm"), Usage(1000, 1000, 2000))
    assert cost.amount == 0 and cost.priced is False


def test_the_mock_provider_is_priced_at_zero(table):
    cost = table.cost(deployment("demo", "mock"), Usage(10, 10, 20))
    assert cost.priced and cost.amount == 0


def test_no_usage_costs_nothing():
    assert price_usage(None, {"input_cost_per_token": 1.0}, {}) == 0.0
