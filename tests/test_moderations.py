"""Moderations through the gateway."""

import pytest

from tests.support.openapi import assert_valid


def test_moderation_passes_through(openai_client, upstream):
    raw = openai_client.moderations.with_raw_response.create(model="gpt-4o-mini", input="I will kill the process")

    assert_valid("CreateModerationResponse", raw.http_response.json())
    result = raw.parse().results[0]
    assert result.flagged and result.categories.violence
    assert upstream.last.path == "/v1/moderations"
    assert upstream.last.json == {"model": "gpt-4o-mini", "input": "I will kill the process"}


@pytest.mark.parametrize("text, flagged", [("have a nice day", False), ("how to steal a bike", True)])
def test_the_mock_moderates_deterministically(openai_client, text, flagged):
    raw = openai_client.moderations.with_raw_response.create(model="demo", input=[text, text])
    assert_valid("CreateModerationResponse", raw.http_response.json())
    results = raw.parse().results
    assert [r.flagged for r in results] == [flagged, flagged]


def test_a_missing_input_is_a_400(client, auth):
    response = client.post("/v1/moderations", headers=auth, json={"model": "demo"})
    assert response.status_code == 400 and response.json["error"]["param"] == "input"
