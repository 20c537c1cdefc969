"""Rerank in Cohere's request and response shape, over plain HTTP."""

import pytest


@pytest.mark.parametrize("path", ["/rerank", "/v1/rerank", "/v2/rerank"])
def test_rerank_on_an_openai_compatible_server(client, auth, upstream, path, call_log):
    response = client.post(path, headers=auth, json={
        "model": "gpt-4o-mini", "query": "capital of France", "top_n": 2, "return_documents": True,
        "documents": ["Paris is the capital.", {"text": "Berlin is in Germany."}, "Cats purr."]})

    assert response.status_code == 200
    body = response.json
    assert [r["index"] for r in body["results"]] == [0, 1]
    scores = [r["relevance_score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)
    assert body["results"][0]["document"] == {"text": "Paris is the capital."}
    assert body["results"][1]["document"] == {"text": "Berlin is in Germany."}
    sent = upstream.last
    assert sent.path == "/v1/rerank" and sent.json["model"] == "gpt-4o-mini"
    assert sent.json["query"] == "capital of France"
    assert call_log()[-1]["call_type"] == "rerank"


def test_the_mock_ranks_by_overlap_deterministically(client, auth):
    request = {"model": "demo", "query": "red apples", "documents": ["bananas are yellow", "red apples are sweet",
                                                                      {"title": "apples", "body": "red"}]}
    first = client.post("/v2/rerank", headers=auth, json=request).json
    again = client.post("/v2/rerank", headers=auth, json=request).json

    assert [r["index"] for r in first["results"]][0] in (1, 2)
    assert first["results"][-1]["index"] == 0
    assert first["results"] == again["results"]
    assert "document" not in first["results"][0]
    assert first["meta"]["billed_units"]["search_units"] == 1


@pytest.mark.parametrize("body, field", [
    ({"model": "demo", "documents": ["a"]}, "query"),
    ({"model": "demo", "query": "q", "documents": []}, "documents"),
    ({"model": "demo", "query": "q", "documents": [3]}, "documents"),
    ({"model": "demo", "query": "q", "documents": ["a"], "top_n": 0}, "top_n"),
    ({"model": "demo", "query": "q", "documents": ["a"], "return_documents": "yes"}, "return_documents"),
])
def test_a_malformed_rerank_request_is_a_400_naming_the_field(client, auth, body, field):
    response = client.post("/v1/rerank", headers=auth, json=body)
    assert response.status_code == 400
    assert response.json["error"]["param"] == field
