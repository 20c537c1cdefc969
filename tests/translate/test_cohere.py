"""Tests for the Cohere rerank/embed translation."""

import pytest

from dheera_ai.translate.cohere import (
    CohereParamError,
    RerankRequestError,
    cohere_embed_to_openai,
    cohere_error_to_status,
    embed_request_for_cohere,
    rerank_request_for_cohere,
    rerank_response_from_cohere,
    rerank_usage,
    validate_rerank_request,
)

DOCS = ["Carson City is the capital of Nevada.", "Washington, D.C. is the capital of the USA.",
        "Paris is the capital of France."]
EMAILS = [{"from": "hr@co1t.com", "subject": "Welcome", "text": "We are delighted.\nSee you!"},
          {"from": "it@co1t.com", "subject": "Laptop", "text": "Your laptop is ready.",
           "priority": 2, "tags": ["it", "setup"]}]


def _request(**extra):
    return {"model": "rerank-v3.5", "query": "What is the capital of the US?",
            "documents": DOCS, **extra}


# --- validation -----------------------------------------------------------------------------

def test_validate_normalizes_and_drops_unknown_fields():
    out = validate_rerank_request(_request(top_n=2, priority=5, rank_fields=["text"]))
    assert out == {"model": "rerank-v3.5", "query": "What is the capital of the US?",
                   "documents": DOCS, "return_documents": False, "top_n": 2,
                   "rank_fields": ["text"]}


@pytest.mark.parametrize("body, param", [
    ({"documents": DOCS}, "query"),
    (_request(query="   "), "query"),
    (_request(query=42), "query"),
    (_request(documents=[]), "documents"),
    (_request(documents="one long string"), "documents"),
    (_request(documents=["ok", 3]), "documents"),
    (_request(documents=["ok", {}]), "documents"),
    (_request(top_n=0), "top_n"),
    (_request(top_n="3"), "top_n"),
    (_request(top_n=True), "top_n"),
    (_request(max_tokens_per_doc=-1), "max_tokens_per_doc"),
    (_request(return_documents="yes"), "return_documents"),
    (_request(rank_fields="text"), "rank_fields"),
    (_request(rank_fields=[""]), "rank_fields"),
    (_request(model=7), "model"),
    (["not", "an", "object"], "body"),
])
def test_validate_rejects_bad_input(body, param):
    with pytest.raises(RerankRequestError) as err:
        validate_rerank_request(body)
    assert err.value.param == param
    assert isinstance(err.value, ValueError) and str(err.value)


# --- rerank requests ------------------------------------------------------------------------

def test_v1_request_passes_documents_and_knobs_through():
    body = _request(top_n=2, return_documents=True, max_chunks_per_doc=5, max_tokens_per_doc=512)
    assert rerank_request_for_cohere(body, "rerank-english-v3.0", 1) == {
        "model": "rerank-english-v3.0", "query": "What is the capital of the US?",
        "documents": DOCS, "top_n": 2, "max_chunks_per_doc": 5,
        # we re-attach documents ourselves, so upstream never echoes them
        "return_documents": False}


def test_v1_request_keeps_objects_and_rank_fields():
    out = rerank_request_for_cohere(_request(documents=EMAILS, rank_fields=["subject", "text"]),
                                    "rerank-english-v3.0", 1)
    assert out["documents"] == EMAILS
    assert out["rank_fields"] == ["subject", "text"]


def test_v1_request_renders_objects_it_would_reject():
    docs = [{"title": "Nevada", "body": "Carson City"}, {"text": "Washington"}]
    out = rerank_request_for_cohere(_request(documents=docs), "rerank-english-v3.0", 1)
    assert out["documents"] == ["title: Nevada\nbody: Carson City", {"text": "Washington"}]


def test_v2_request_takes_strings_only():
    body = _request(top_n=10, return_documents=True, max_chunks_per_doc=5, max_tokens_per_doc=512)
    assert rerank_request_for_cohere(body, "rerank-v3.5", 2) == {
        "model": "rerank-v3.5", "query": "What is the capital of the US?", "documents": DOCS,
        "max_tokens_per_doc": 512,
        "top_n": 3}  # clamped to the number of documents


def test_v2_request_renders_object_documents_as_yaml():
    out = rerank_request_for_cohere(_request(documents=EMAILS + [{"text": "plain"}]),
                                    "rerank-v3.5", 2)
    assert out["documents"] == [
        "from: hr@co1t.com\nsubject: Welcome\ntext: |\n  We are delighted.\n  See you!",
        'from: it@co1t.com\nsubject: Laptop\ntext: Your laptop is ready.\npriority: 2\n'
        'tags: ["it", "setup"]',
        "plain",
    ]
    assert "rank_fields" not in out and "return_documents" not in out


def test_v2_request_uses_rank_fields_in_their_order():
    out = rerank_request_for_cohere(_request(documents=EMAILS, rank_fields=["text", "subject"]),
                                    "rerank-v3.5", 2)
    assert out["documents"][1] == "text: Your laptop is ready.\nsubject: Laptop"
    only_text = rerank_request_for_cohere(_request(documents=EMAILS, rank_fields=["text"]),
                                          "rerank-v3.5", 2)
    assert only_text["documents"][1] == "Your laptop is ready."


def test_request_validates_and_rejects_unknown_version():
    with pytest.raises(RerankRequestError):
        rerank_request_for_cohere(_request(documents=[]), "rerank-v3.5", 2)
    with pytest.raises(ValueError):
        rerank_request_for_cohere(_request(), "rerank-v3.5", 3)


# --- rerank responses -----------------------------------------------------------------------

V1_ANSWER = {"id": "abc", "results": [
    {"index": 1, "relevance_score": 0.98, "document": {"text": DOCS[1]}},
    {"index": 0, "relevance_score": 0.12, "document": {"text": DOCS[0]}}],
    "meta": {"api_version": {"version": "1"}, "billed_units": {"search_units": 1}}}
# v2 answers carry no documents; this one also arrives out of order
V2_ANSWER = {"id": "def", "results": [{"index": 2, "relevance_score": 0.01},
                                      {"index": 1, "relevance_score": 0.95},
                                      {"index": 0, "relevance_score": 0.20}],
             "meta": {"api_version": {"version": "2", "is_experimental": False},
                      "billed_units": {"search_units": 1.0}}}


def test_v1_response_without_documents():
    out = rerank_response_from_cohere(V1_ANSWER, _request())
    assert out == {"id": "abc", "results": [{"index": 1, "relevance_score": 0.98},
                                            {"index": 0, "relevance_score": 0.12}],
                   "meta": {"api_version": {"version": "1"},
                            "billed_units": {"search_units": 1}}}


def test_v2_response_is_sorted_and_gets_documents_attached():
    out = rerank_response_from_cohere(V2_ANSWER, _request(return_documents=True))
    assert [r["index"] for r in out["results"]] == [1, 0, 2]
    assert out["results"][0] == {"index": 1, "relevance_score": 0.95,
                                 "document": {"text": DOCS[1]}}
    assert out["meta"] == {"api_version": {"version": "2"}, "billed_units": {"search_units": 1}}
    assert out["id"] == "def"


def test_response_honours_top_n():
    out = rerank_response_from_cohere(V2_ANSWER, _request(top_n=1))
    assert out["results"] == [{"index": 1, "relevance_score": 0.95}]


def test_response_returns_object_documents_as_sent():
    answer = {"results": [{"index": 1, "relevance_score": 0.7}, {"index": 0, "relevance_score": 0.3}]}
    out = rerank_response_from_cohere(answer, _request(documents=EMAILS, return_documents=True))
    assert [r["document"] for r in out["results"]] == [EMAILS[1], EMAILS[0]]
    assert out["id"]  # generated when upstream sends none
    assert out["meta"]["billed_units"] == {"search_units": 0}


def test_response_with_an_index_we_never_sent_is_an_error():
    with pytest.raises(ValueError, match="ranked document 7"):
        rerank_response_from_cohere({"results": [{"index": 7, "relevance_score": 0.5}]},
                                    _request())


def test_rerank_usage():
    assert rerank_usage(V1_ANSWER) == {"search_units": 1}
    assert rerank_usage({"meta": {"billed_units": {"search_units": 3.0}}}) == {"search_units": 3}
    assert rerank_usage({}) == {"search_units": 0}


# --- embed ----------------------------------------------------------------------------------

def test_embed_v1_request():
    assert embed_request_for_cohere(["hi", "there"], "embed-english-v3.0", "search_query",
                                    None, "float", 1) == {
        "texts": ["hi", "there"], "model": "embed-english-v3.0", "input_type": "search_query",
        "embedding_types": ["float"], "truncate": "END"}


def test_embed_v2_request_defaults_input_type_and_maps_dimensions():
    out = embed_request_for_cohere(["hi"], "embed-v4.0", None, 512, "base64", 2)
    assert out == {"texts": ["hi"], "model": "embed-v4.0", "input_type": "search_document",
                   "embedding_types": ["float"], "truncate": "END", "output_dimension": 512}


@pytest.mark.parametrize("args, param", [
    ((["hi"], "embed-english-v3.0", None, 256, None, 1), "dimensions"),
    ((["hi"], "embed-v4.0", None, None, "int8", 2), "encoding_format"),
    (([], "embed-v4.0", None, None, None, 2), "input"),
    ((["hi", 3], "embed-v4.0", None, None, None, 2), "input"),
])
def test_embed_request_rejects_what_cohere_cannot_do(args, param):
    with pytest.raises(CohereParamError) as err:
        embed_request_for_cohere(*args)
    assert err.value.param == param


def test_embed_v1_floats_response():
    resp = {"id": "e1", "response_type": "embeddings_floats", "texts": ["a", "b"],
            "embeddings": [[0.1, 0.2], [0.3, 0.4]],
            "meta": {"api_version": {"version": "1"}, "billed_units": {"input_tokens": 4}}}
    assert cohere_embed_to_openai(resp, "embed-english-v3.0") == {
        "object": "list", "model": "embed-english-v3.0",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]},
                 {"object": "embedding", "index": 1, "embedding": [0.3, 0.4]}],
        "usage": {"prompt_tokens": 4, "total_tokens": 4}}


@pytest.mark.parametrize("version", ["1", "2"])
def test_embed_by_type_response(version):
    resp = {"id": "e2", "response_type": "embeddings_by_type", "texts": ["a"],
            "embeddings": {"float": [[0.5, -0.5]]},
            "meta": {"api_version": {"version": version}, "billed_units": {"input_tokens": 2.0}}}
    out = cohere_embed_to_openai(resp, "embed-v4.0")
    assert out["data"] == [{"object": "embedding", "index": 0, "embedding": [0.5, -0.5]}]
    assert out["usage"] == {"prompt_tokens": 2, "total_tokens": 2}


def test_embed_response_without_floats_is_an_error():
    with pytest.raises(ValueError):
        cohere_embed_to_openai({"embeddings": {"int8": [[1, 2]]}}, "embed-v4.0")


# --- errors ---------------------------------------------------------------------------------

@pytest.mark.parametrize("body, status, expected", [
    ({"message": "invalid request: list of documents must not be empty"}, 400, "bad_request"),
    ({"message": "too many tokens: total number of tokens in the prompt cannot exceed 4081 - "
                 "received 4292."}, 400, "context_window"),
    ({"message": "too many tokens: max tokens must be less than or equal to 4096"}, 400,
     "bad_request"),
    ({"message": "invalid api token"}, 401, "authentication"),
    ({"message": "Please add or update your payment method"}, 402, "permission"),
    ({"message": "model 'rerank-v9' not found"}, 404, "not_found"),
    ({"message": "You are using a Trial key, which is limited to 10 API calls / minute."}, 429,
     "rate_limit"),
    ({"message": "blocked output: please adjust your prompt"}, 498, "content_policy"),
    ({"message": "request cancelled"}, 499, "timeout"),
    ({"message": "internal server error"}, 500, "server"),
    ({"message": "service unavailable"}, 503, "unavailable"),
    ({"message": "gateway timeout"}, 504, "timeout"),
    ({}, 502, "unavailable"),
    ("<html>bad gateway</html>", 500, "server"),
])
def test_error_mapping(body, status, expected):
    kind, message = cohere_error_to_status(body, status)
    assert kind == expected
    assert message


def test_error_message_is_cohere_or_a_fallback():
    assert cohere_error_to_status({"message": "invalid api token"}, 401)[1] == "invalid api token"
    assert "500" in cohere_error_to_status({}, 500)[1]
