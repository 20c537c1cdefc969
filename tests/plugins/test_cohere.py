"""Cohere: rerank (v2 by default, v1 on request) and embeddings, as docs.cohere.com/reference documents them."""

import json

import pytest

from dheera_ai.errors import AuthenticationError, BadRequestError, ContextWindowExceededError, RateLimitError
from tests.support.engine import answer, make_engine, run
from tests.support.fake_upstream import Script

DOCS = ["Carson City is the capital of Nevada.", "Washington, D.C. is the capital of the United States."]


def rerank_answer(version="2"):
    return {"id": "07734bd2-2473-4f07-94e1-0d9f0e6843cf",
            "results": [{"index": 1, "relevance_score": 0.98}, {"index": 0, "relevance_score": 0.07}],
            "meta": {"api_version": {"version": version}, "billed_units": {"search_units": 1}}}


@pytest.fixture
def engine(upstream):
    params = {"api_base": upstream.url, "api_key": "co-secret"}
    return make_engine([
        {"model_name": "rerank", "dheera_ai_params": {"model": "cohere/rerank-v3.5", **params}},
        {"model_name": "rerank-v1", "dheera_ai_params": {"model": "cohere/rerank-english-v3.0", **params,
                                                         "api_version": "v1"}},
        {"model_name": "embed", "dheera_ai_params": {"model": "cohere/embed-english-v3.0", **params}},
    ])


def test_rerank_calls_v2_and_answers_in_cohere_shape_with_documents(engine, upstream):
    upstream.respond(rerank_answer())
    reply = run(engine, "rerank", "rerank", {"query": "capital of the US?", "documents": DOCS, "top_n": 5,
                                             "return_documents": True})

    sent = upstream.last
    assert (sent.method, sent.path) == ("POST", "/v2/rerank")
    assert sent.headers["authorization"] == "Bearer co-secret"
    assert sent.json == {"model": "rerank-v3.5", "query": "capital of the US?", "documents": DOCS, "top_n": 2}
    result = answer(reply)
    assert [(r["index"], r["document"]["text"]) for r in result["results"]] == [(1, DOCS[1]), (0, DOCS[0])]
    assert result["meta"]["billed_units"] == {"search_units": 1}
    assert reply.usage.details == {"search_units": 1}


def test_rerank_on_v1_sends_the_v1_shape(engine, upstream):
    upstream.respond(rerank_answer("1"))
    docs = [{"title": "Nevada", "text": DOCS[0]}, {"title": "USA", "text": DOCS[1]}]
    reply = run(engine, "rerank", "rerank-v1", {"query": "q", "documents": docs, "rank_fields": ["title", "text"]})

    assert upstream.last.path == "/v1/rerank"
    assert upstream.last.json == {"model": "rerank-english-v3.0", "query": "q", "documents": docs,
                                  "rank_fields": ["title", "text"], "return_documents": False}
    assert [r["index"] for r in answer(reply)["results"]] == [1, 0]
    assert "document" not in answer(reply)["results"][0]


def test_a_rerank_without_a_query_is_a_400_naming_it(engine, upstream):
    with pytest.raises(BadRequestError) as exc:
        run(engine, "rerank", "rerank", {"documents": DOCS})
    assert exc.value.param == "query"
    assert upstream.requests == []


def test_embeddings_send_input_type_and_come_back_in_openai_shape(engine, upstream):
    upstream.respond({"id": "e1", "embeddings": {"float": [[0.1, 0.2], [0.3, 0.4]]}, "texts": ["a", "b"],
                      "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": 3}},
                      "response_type": "embeddings_by_type"})
    reply = run(engine, "embeddings", "embed", {"input": ["a", "b"], "input_type": "search_query"})

    assert upstream.last.path == "/v2/embed"
    assert upstream.last.json == {"texts": ["a", "b"], "model": "embed-english-v3.0", "input_type": "search_query",
                                  "embedding_types": ["float"], "truncate": "END"}
    result = answer(reply)
    assert [d["embedding"] for d in result["data"]] == [[0.1, 0.2], [0.3, 0.4]]
    assert [d["index"] for d in result["data"]] == [0, 1]
    assert result["usage"] == {"prompt_tokens": 3, "total_tokens": 3}


def test_more_than_96_texts_go_in_batches_and_keep_their_order(engine, upstream):
    def batch(recorded):
        texts = recorded.json["texts"]
        body = {"embeddings": {"float": [[float(t)] for t in texts]},
                "meta": {"billed_units": {"input_tokens": len(texts)}}}
        return Script(body=json.dumps(body).encode())

    upstream.route("/v2/embed", batch)
    reply = run(engine, "embeddings", "embed", {"input": [str(i) for i in range(100)]})

    assert [len(r.json["texts"]) for r in upstream.requests] == [96, 4]
    data = answer(reply)["data"]
    assert [d["embedding"][0] for d in data] == [float(i) for i in range(100)]
    assert [d["index"] for d in data] == list(range(100))
    assert reply.usage.prompt_tokens == 100


@pytest.mark.parametrize("status, message, error", [
    (401, "invalid api token", AuthenticationError),
    (429, "You are using a Trial key, which is limited to 10 API calls / minute.", RateLimitError),
    (400, "too many tokens: total number of tokens in the prompt cannot exceed 4081 - received 4292",
     ContextWindowExceededError),
])
def test_cohere_errors_map_onto_the_error_tree(engine, upstream, status, message, error):
    upstream.respond({"message": message}, status=status)
    with pytest.raises(error) as exc:
        run(engine, "rerank", "rerank", {"query": "q", "documents": DOCS})
    assert message in exc.value.message


def test_a_slow_cohere_is_a_timeout_and_an_overloaded_one_unavailable(upstream):
    from dheera_ai.errors import ServiceUnavailableError, Timeout

    engine = make_engine([{"model_name": "rerank", "dheera_ai_params": {
        "model": "cohere/rerank-v3.5", "api_base": upstream.url, "api_key": "k", "timeout": 0.2}}])
    upstream.respond(rerank_answer(), delay=0.6)
    with pytest.raises(Timeout):
        run(engine, "rerank", "rerank", {"query": "q", "documents": DOCS})
    upstream.respond({"message": "service unavailable"}, status=503)
    with pytest.raises(ServiceUnavailableError):
        run(engine, "rerank", "rerank", {"query": "q", "documents": DOCS})
