"""`/models` and the health probes."""

import openai
import pytest

from tests.support.openapi import assert_valid


def test_models_lists_the_configured_names_in_openai_shape(openai_client, client, auth):
    names = [m.id for m in openai_client.models.list()]
    assert names == ["gpt-4o-mini", "demo"]

    body = client.get("/models", headers=auth).json
    assert_valid("ListModelsResponse", body)


def test_a_model_can_be_retrieved_and_an_unknown_one_is_a_404(openai_client):
    assert openai_client.models.retrieve("demo").id == "demo"
    with pytest.raises(openai.NotFoundError):
        openai_client.models.retrieve("nope")


def test_models_needs_a_key(client):
    assert client.get("/v1/models").status_code == 401


@pytest.mark.parametrize("path", ["/health/liveliness", "/health/liveness"])
def test_liveness_needs_no_key(client, path):
    response = client.get(path)
    assert response.status_code == 200 and response.json["status"] == "alive"


def test_readiness_reports_version_and_state_store(client):
    body = client.get("/health/readiness").json
    assert body["status"] == "ready"
    assert body["version"] and body["state_store"]["backend"]


def test_a_wrong_method_is_an_openai_error_not_an_html_page(client, auth):
    response = client.get("/v1/chat/completions", headers=auth)
    assert response.status_code == 405
    assert response.json["error"]["type"] == "invalid_request_error"
