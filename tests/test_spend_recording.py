"""A spend row survives whatever goes wrong pricing or recording it, and budgets fail safe.

A price that is not a number, a model priced by its model_info alone, a plugin that puts
something odd on the call or raises while the call is recorded: the call is answered, its row
is stored (no cost and `priced: false` when it could not be priced, the reason in
`record_error` and in the log), rate-limit slots are given back and tokens counted.
"""

import logging

import pytest
import yaml

from dheera_ai import hookimpl
from dheera_ai.types import Reply, Usage
from tests.conftest import MASTER_KEY
from tests.test_spend import PLAIN_COST, stored

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}


def config_with(base_config, model_info, model="openai/gpt-4o-mini", **general):
    base_config["model_list"][0]["model_info"] = model_info
    base_config["model_list"][0]["dheera_ai_params"]["model"] = model
    base_config["general_settings"].update(spend_flush_seconds=3600, **general)
    return base_config


def table_with(tmp_path, base_config, prices, **general):
    """A price table file the config points at, holding `prices` for the deployment's model: what
    start-up cannot check the way it checks a config's own model_info (which refuses 'abc')."""
    path = tmp_path / "prices.yaml"
    path.write_text(yaml.safe_dump({"openai/gpt-4o-mini": prices}))
    return config_with(base_config, {}, model_prices_path=str(path), **general)


def chat(client, headers=AUTH, **body):
    return client.post("/v1/chat/completions", headers=headers,
                       json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], **body})


def budget_counter(app, scope, ident):
    return app.extensions["dheera_ai_state"].store.budget_counter(scope, ident, 0.0)


def test_prices_written_as_strings_are_read_as_numbers(make_app, base_config):
    # What a YAML 1.1 loader makes of `input_cost_per_token: 1e-06`.
    app = make_app(config_with(base_config, {"input_cost_per_token": "1e-06", "output_cost_per_token": " 2.0e-6"}))
    response = chat(app.test_client())
    assert response.status_code == 200
    assert float(response.headers["x-dheera-ai-response-cost"]) == pytest.approx(PLAIN_COST)
    [row] = stored(app)
    assert row["priced"] is True and row["cost"] == pytest.approx(PLAIN_COST) and row["record_error"] is None


def test_a_price_that_is_not_a_number_still_leaves_the_row_and_counts_what_it_can(make_app, base_config, caplog,
                                                                                  tmp_path):
    app = make_app(table_with(tmp_path, base_config, {"input_cost_per_token": 1e-6, "output_cost_per_token": "abc"}))
    client = app.test_client()
    key = client.post("/key/generate", headers=AUTH, json={"max_budget": 10}).json
    caplog.set_level(logging.ERROR, logger="dheera_ai.spend")
    response = chat(client, {"Authorization": f"Bearer {key['key']}"})
    assert response.status_code == 200
    assert "x-dheera-ai-response-cost" not in response.headers  # no number we cannot stand behind
    [row] = stored(app)
    assert row["cost"] is None and row["priced"] is False and row["completion_tokens"] == 7
    assert "output_cost_per_token: not a number: 'abc'" in row["record_error"]
    assert any("output_cost_per_token: not a number" in r.getMessage() for r in caplog.records)
    # The budget counted the call at the price it could read (9 prompt tokens at 1e-6).
    spent, held = budget_counter(app, "key", key["token"])
    assert spent == pytest.approx(9e-6) and held == 0


def test_budget_fail_closed_refuses_a_call_it_cannot_price(make_app, base_config, tmp_path):
    app = make_app(table_with(tmp_path, base_config, {"input_cost_per_token": "abc"}, budget_fail_closed=True))
    client = app.test_client()
    key = client.post("/key/generate", headers=AUTH, json={"max_budget": 10}).json["key"]
    refused = chat(client, {"Authorization": f"Bearer {key}"})
    assert refused.status_code == 400 and refused.json["error"]["type"] == "budget_exceeded"
    assert refused.json["error"]["code"] == "budget_unpriced"
    assert "input_cost_per_token: not a number" in refused.json["error"]["message"]
    [row] = stored(app)  # the refusal has its row too
    assert row["status"] == 400 and row["error_type"] == "BudgetExceededError"
    assert chat(client).status_code == 200  # the master key has no budget: nothing to refuse


def test_a_model_missing_from_the_table_is_priced_by_its_model_info_alone(make_app, base_config):
    """#25.6: this was a TypeError in pricing: every budgeted call a 500, no rows, the parallel
    slot kept for 10 minutes and no tokens counted."""
    app = make_app(config_with(base_config, {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6},
                               model="openai/model-nobody-priced"))
    client = app.test_client()
    key = client.post("/key/generate", headers=AUTH, json={
        "max_budget": 10, "max_parallel_requests": 1, "tpm_limit": 40}).json
    headers = {"Authorization": f"Bearer {key['key']}"}
    answered = [chat(client, headers) for _ in range(2)]
    # One slot, taken and given back by each call in turn; 16 tokens a call.
    assert [r.status_code for r in answered] == [200, 200]
    assert all(float(r.headers["x-dheera-ai-response-cost"]) == pytest.approx(PLAIN_COST) for r in answered)
    assert answered[1].headers["x-ratelimit-remaining-tokens"] == "24"
    assert chat(client, headers).status_code == 200
    over = chat(client, headers)
    assert over.status_code == 429 and "tpm_limit" in over.json["error"]["message"]
    rows = stored(app)
    assert [r["status"] for r in rows].count(200) == 3
    assert all(r["priced"] and r["cost"] == pytest.approx(PLAIN_COST) for r in rows if r["status"] == 200)
    assert budget_counter(app, "key", key["token"])[0] == pytest.approx(3 * PLAIN_COST)


class MessyPlugin:
    """Leaves on the call what no JSON can hold, and then fails in its own recording hook."""

    @hookimpl
    def dheera_ai_pre_call(self, call):
        call.metadata["seen"] = {"a", "set"}
        call.tags.append(("not", "a", "string"))

    @hookimpl(tryfirst=True)
    def dheera_ai_post_call_success(self, call, outcome):
        raise RuntimeError("the exporter fell over")


def test_a_plugin_that_raises_while_the_call_is_recorded_costs_no_row(make_app, base_config, caplog):
    app = make_app(config_with(base_config, {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}),
                   extra_plugins=[MessyPlugin()])
    caplog.set_level(logging.ERROR)
    response = chat(app.test_client())
    assert response.status_code == 200
    [row] = stored(app)
    assert row["priced"] is True and row["cost"] == pytest.approx(PLAIN_COST)
    assert "not storable as JSON" in row["record_error"] and "set" in row["metadata"]["unstorable"]
    assert any("the exporter fell over" in r.getMessage() for r in caplog.records)


class BrokenUsageCache:
    """A cache-like plugin that answers itself, with usage details of the wrong shape."""

    @hookimpl(tryfirst=True)
    def dheera_ai_dispatch(self, call, deployment):
        return Reply(data={"id": "cached", "object": "chat.completion", "choices": []},
                     usage=Usage(9, 7, 16, details={"characters": "many"}))


def test_usage_a_plugin_got_wrong_counts_as_nothing_and_gives_back_the_slot(make_app, base_config):
    app = make_app(config_with(base_config, {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}),
                   extra_plugins=[BrokenUsageCache()])
    client = app.test_client()
    key = client.post("/key/generate", headers=AUTH, json={"max_parallel_requests": 1, "max_budget": 1}).json
    headers = {"Authorization": f"Bearer {key['key']}"}
    assert [chat(client, headers).status_code for _ in range(2)] == [200, 200]  # the slot came back
    rows = stored(app)
    assert len(rows) == 2
    # "characters": "many" is no quantity: it counts as none (a cost is never made of what is not a
    # number), and the tokens are priced as usual.
    assert all(r["priced"] is True and r["cost"] == pytest.approx(PLAIN_COST) for r in rows)
    assert all(r["total_tokens"] == 16 for r in rows)
    spent, held = budget_counter(app, "key", key["token"])
    assert spent == pytest.approx(2 * PLAIN_COST) and held == 0
