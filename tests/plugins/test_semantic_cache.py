"""The semantic cache (`cache_params.type: postgres-semantic`) on a real PostgreSQL with pgvector:
a reworded prompt is answered from the cache, an unrelated one is not, everything else about
the request must match, and a slow or failing embedding model or database only costs a miss."""

import json
import re
import time
import zlib

import openai
import pytest

from tests.conftest import MASTER_KEY
from tests.plugins.test_cache import chats
from tests.support.fake_upstream import Script, chat_chunks
from tests.test_spend import PRICES, stored

CAPITAL = [{"role": "user", "content": "What is the capital of France?"}]
REWORDED = [{"role": "user", "content": "what is the capital city of France"}]
UNRELATED = [{"role": "user", "content": "Write a haiku about autumn leaves."}]
DIMENSIONS = 256


def bag_of_words(text: str) -> list[float]:
    """A stand-in embedding model: texts sharing words have similar vectors."""
    vector = [0.0] * DIMENSIONS
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        vector[zlib.crc32(word.encode()) % DIMENSIONS] += 1.0
    return vector


def cosine(a: str, b: str) -> float:
    x, y = bag_of_words(a), bag_of_words(b)
    dot = sum(p * q for p, q in zip(x, y, strict=True))
    return dot / (sum(p * p for p in x) ** 0.5 * sum(q * q for q in y) ** 0.5)


class Embeddings:
    """The fake upstream's /v1/embeddings: bag-of-words vectors, or a scripted delay or failure."""

    def __init__(self):
        self.texts: list[str] = []
        self.delay = 0.0
        self.status = 200

    def __call__(self, recorded):
        text = recorded.json["input"]
        self.texts.append(text)
        if self.status != 200:
            return Script(status=self.status, body=json.dumps({"error": {"message": "embedder down",
                                                                          "type": "api_error"}}).encode())
        body = {"object": "list", "model": "text-embedding-3-small", "usage": {"prompt_tokens": 7, "total_tokens": 7},
                "data": [{"object": "embedding", "index": 0, "embedding": bag_of_words(text)}]}
        return Script(body=json.dumps(body).encode(), delay=self.delay)


@pytest.fixture
def embeddings(upstream):
    handler = Embeddings()
    upstream.route("/v1/embeddings", handler)
    return handler


@pytest.fixture
def semantic_config(base_config, upstream, embeddings, pgvector_server):
    base_config["model_list"][0]["model_info"] = dict(PRICES)
    base_config["model_list"].append({"model_name": "embedder", "dheera_ai_params": {
        "model": "openai/text-embedding-3-small", "api_base": upstream.url + "/v1", "api_key": "sk-up"},
        "model_info": {"input_cost_per_token": 1e-6}})
    base_config["dheera_ai_settings"] = {"cache": True, "cache_params": {
        "type": "postgres-semantic", "url": pgvector_server(), "similarity_threshold": 0.75,
        "semantic_cache_embedding_model": "embedder"}}
    base_config["general_settings"]["spend_flush_seconds"] = 3600
    return base_config


@pytest.fixture
def app(make_app, semantic_config):
    return make_app(semantic_config)


@pytest.fixture
def gpt(openai_client):
    return openai_client


def kept(url: str, count: int) -> None:
    """Wait until the cache's writer thread has stored `count` entries."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(200):
            try:
                if conn.execute("SELECT count(*) FROM dheera_ai_cache_entries").fetchone()[0] >= count:
                    return
            except psycopg.errors.UndefinedTable:
                pass  # the writer has not made it yet
            time.sleep(0.02)
    raise AssertionError(f"the cache did not keep {count} entries")


def ask(gpt, messages, **more):
    return gpt.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=messages, **more)


def test_a_reworded_prompt_is_answered_and_an_unrelated_one_is_not(gpt, upstream, semantic_config):
    assert 0.75 <= cosine("user: " + CAPITAL[0]["content"], "user: " + REWORDED[0]["content"]) < 1
    assert cosine("user: " + CAPITAL[0]["content"], "user: " + UNRELATED[0]["content"]) < 0.75
    first = ask(gpt, CAPITAL)
    kept(semantic_config["dheera_ai_settings"]["cache_params"]["url"], 1)
    reworded = ask(gpt, REWORDED)
    unrelated = ask(gpt, UNRELATED)

    assert first.headers["x-dheera-ai-cache-hit"] == "false"
    assert reworded.headers["x-dheera-ai-cache-hit"] == "true"
    similarity = float(reworded.headers["x-dheera-ai-cache-similarity"])
    assert similarity == pytest.approx(cosine("user: " + CAPITAL[0]["content"], "user: " + REWORDED[0]["content"]),
                                       abs=1e-4)
    assert reworded.parse().choices[0].message.content == "Hello from the fake upstream."
    assert unrelated.headers["x-dheera-ai-cache-hit"] == "false"
    assert "x-dheera-ai-cache-similarity" not in unrelated.headers
    assert chats(upstream) == 2, "the reworded question never reached the upstream"


def test_an_identical_request_is_found_by_its_key_without_an_embedding(gpt, upstream, embeddings, semantic_config):
    ask(gpt, CAPITAL)
    kept(semantic_config["dheera_ai_settings"]["cache_params"]["url"], 1)
    again = ask(gpt, CAPITAL)
    assert again.headers["x-dheera-ai-cache-hit"] == "true"
    assert again.headers["x-dheera-ai-cache-similarity"] == "1.0000"
    assert embeddings.texts == ["user: What is the capital of France?"], "one embedding: the first call's lookup"
    assert chats(upstream) == 1


def test_everything_but_the_prompt_must_match(gpt, upstream, semantic_config):
    ask(gpt, CAPITAL, temperature=0)
    kept(semantic_config["dheera_ai_settings"]["cache_params"]["url"], 1)
    assert ask(gpt, REWORDED, temperature=1).headers["x-dheera-ai-cache-hit"] == "false"
    assert ask(gpt, REWORDED, temperature=0, max_tokens=5).headers["x-dheera-ai-cache-hit"] == "false"
    assert ask(gpt, REWORDED, temperature=0, extra_body={"cache": {"namespace": "eval-2"}}
               ).headers["x-dheera-ai-cache-hit"] == "false"
    assert ask(gpt, REWORDED, temperature=0).headers["x-dheera-ai-cache-hit"] == "true"
    assert chats(upstream) == 4


def test_a_streamed_answer_answers_a_reworded_stream(gpt, upstream, semantic_config):
    # Routed, not scripted: the embedding calls must not take the stream meant for the chat.
    upstream.route("/v1/chat/completions", lambda recorded: Script(events=chat_chunks(
        words=("Paris", " is", " the", " capital."))))
    first = "".join(c.choices[0].delta.content or "" for c in gpt.chat.completions.create(
        model="gpt-4o-mini", messages=CAPITAL, stream=True) if c.choices)
    kept(semantic_config["dheera_ai_settings"]["cache_params"]["url"], 1)
    with gpt.chat.completions.with_streaming_response.create(model="gpt-4o-mini", messages=REWORDED,
                                                             stream=True) as response:
        assert response.headers["x-dheera-ai-cache-hit"] == "true"
        replayed = "".join(c.choices[0].delta.content or "" for c in response.parse() if c.choices)
    assert first == replayed == "Paris is the capital." and chats(upstream) == 1


def test_the_embedding_is_billed_to_the_caller_and_the_hit_saves_the_answer(app, client, auth, live, upstream,
                                                                           semantic_config):
    key = client.post("/key/generate", headers=auth, json={"key_alias": "semantic-user",
                                                           "models": ["gpt-4o-mini"]}).json["key"]
    gpt = openai.OpenAI(base_url=live.url + "/v1", api_key=key, max_retries=0, timeout=10)
    ask(gpt, CAPITAL)
    kept(semantic_config["dheera_ai_settings"]["cache_params"]["url"], 1)
    hit = ask(gpt, REWORDED)
    assert hit.headers["x-dheera-ai-cache-hit"] == "true"

    rows = stored(app)
    embedding_rows = [r for r in rows if r["call_type"] == "embeddings"]
    chat_rows = [r for r in rows if r["call_type"] == "chat_completions"]
    assert len(embedding_rows) == 2, "each call's prompt was embedded once, though the key may not use 'embedder'"
    assert {r["key_alias"] for r in embedding_rows} == {"semantic-user"}
    assert all("cache:semantic" in r["tags"] for r in embedding_rows)
    assert all(r["cost"] == pytest.approx(7e-6) for r in embedding_rows)
    hit_row, miss_row = chat_rows
    assert (hit_row["cache_hit"], hit_row["cost"]) == (True, 0) and hit_row["saved_cost"] == miss_row["cost"] > 0


def test_the_anthropic_sdk_gets_the_answer_to_a_reworded_message_and_its_system_prompt_counts(
        live, upstream, embeddings, semantic_config):
    import anthropic

    claude = anthropic.Anthropic(base_url=live.url, api_key=MASTER_KEY, max_retries=0, timeout=10)
    ask = {"model": "gpt-4o-mini", "max_tokens": 50, "system": "You answer in one word."}
    first = claude.messages.create(**ask, messages=CAPITAL)
    kept(semantic_config["dheera_ai_settings"]["cache_params"]["url"], 1)
    again = claude.messages.with_raw_response.create(**ask, messages=REWORDED)
    assert again.headers["x-dheera-ai-cache-hit"] == "true"
    assert again.parse().content[0].text == first.content[0].text
    assert embeddings.texts[0] == "system: You answer in one word.\nuser: What is the capital of France?"
    historian = "Answer at length, as a historian."
    assert cosine(embeddings.texts[0], f"system: {historian}\nuser: {REWORDED[0]['content']}") < 0.75
    other = claude.messages.with_raw_response.create(**{**ask, "system": historian}, messages=REWORDED)
    assert other.headers["x-dheera-ai-cache-hit"] == "false", "the system prompt is compared with the messages"
    assert chats(upstream) == 2


@pytest.mark.parametrize("trouble", ["slow", "failing"])
def test_a_slow_or_failing_embedding_model_only_costs_a_miss(make_app, semantic_config, live_app, upstream,
                                                             embeddings, trouble):
    semantic_config["dheera_ai_settings"]["cache_params"]["embedding_timeout_ms"] = 100
    gpt = openai.OpenAI(base_url=live_app(semantic_config).url + "/v1", api_key=MASTER_KEY, max_retries=0,
                        timeout=10)
    ask(gpt, CAPITAL)
    kept(semantic_config["dheera_ai_settings"]["cache_params"]["url"], 1)
    if trouble == "slow":
        embeddings.delay = 2.0
    else:
        embeddings.status = 500
    began = time.monotonic()
    answer = ask(gpt, REWORDED)
    assert answer.status_code == 200 and answer.headers["x-dheera-ai-cache-hit"] == "false"
    assert answer.parse().choices[0].message.content == "Hello from the fake upstream."
    assert time.monotonic() - began < 1.5, "the call waited for the embedding no longer than its bound"
    assert chats(upstream) == 2


def test_an_unreachable_database_only_sends_calls_upstream(make_app, semantic_config, live_app, upstream, caplog):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here once closed
    semantic_config["dheera_ai_settings"]["cache_params"]["url"] = f"postgresql://postgres@127.0.0.1:{port}/x"
    gpt = openai.OpenAI(base_url=live_app(semantic_config).url + "/v1", api_key=MASTER_KEY, max_retries=0,
                        timeout=10)
    for _ in range(2):
        began = time.monotonic()
        answer = ask(gpt, CAPITAL)
        assert answer.status_code == 200 and answer.headers["x-dheera-ai-cache-hit"] == "false"
        assert time.monotonic() - began < 2, "no call waits for the cache's connection"
    assert chats(upstream) == 2
    for _ in range(100):  # the writer thread says so, once it has tried
        if any("response cache: PostgreSQL failed" in r.getMessage() for r in caplog.records):
            break
        time.sleep(0.05)
    assert [r.levelname for r in caplog.records if "response cache: PostgreSQL failed" in r.getMessage()] == \
        ["WARNING"]


def test_a_prompt_with_an_image_is_cached_by_its_key_only(gpt, upstream, embeddings, semantic_config):
    picture = [{"role": "user", "content": [{"type": "text", "text": "What is the capital of France?"},
                                            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}]}]
    ask(gpt, picture)
    kept(semantic_config["dheera_ai_settings"]["cache_params"]["url"], 1)
    assert ask(gpt, CAPITAL).headers["x-dheera-ai-cache-hit"] == "false", "the text alone is another question"
    assert ask(gpt, picture).headers["x-dheera-ai-cache-hit"] == "true"
    assert embeddings.texts == ["user: What is the capital of France?"], "the image prompt was never embedded"


def test_two_instances_share_one_semantic_cache(make_app, semantic_config, live_app, upstream):
    first, second = (openai.OpenAI(base_url=live_app(semantic_config).url + "/v1", api_key=MASTER_KEY,
                                   max_retries=0, timeout=10) for _ in range(2))
    ask(first, CAPITAL)
    kept(semantic_config["dheera_ai_settings"]["cache_params"]["url"], 1)
    assert ask(second, REWORDED).headers["x-dheera-ai-cache-hit"] == "true"
    assert chats(upstream) == 1


@pytest.mark.parametrize(("params", "named"), [
    ({"similarity_threshold": None}, "cache_params.similarity_threshold: postgres-semantic needs a similarity"),
    ({"similarity_threshold": 1.5}, "cache_params.similarity_threshold"),
    ({"semantic_cache_embedding_model": None}, "cache_params.semantic_cache_embedding_model: postgres-semantic"),
    ({"semantic_cache_embedding_model": "nope"}, "no model group 'nope' in model_list"),
    ({"url": None}, "cache_params.url: postgres-semantic needs a postgresql:// url"),
    ({"url": "redis://127.0.0.1:6379"}, "cache_params.url: postgres-semantic needs a postgresql:// url"),
    ({"type": "redis-semantic"}, "redis-semantic (Redis Search) is not supported; use postgres-semantic"),
])
def test_a_bad_semantic_cache_setting_stops_start_up_naming_it(make_app, semantic_config, params, named):
    from dheera_ai.config import ConfigError

    cache_params = semantic_config["dheera_ai_settings"]["cache_params"]
    cache_params.update(params)
    for name in [k for k, v in cache_params.items() if v is None]:
        del cache_params[name]
    with pytest.raises(ConfigError) as exc:
        make_app(semantic_config)
    assert named in str(exc.value)


def test_litellms_names_for_the_embedding_model_and_the_gateways_database(make_app, semantic_config, live_app,
                                                                          pgvector_server, upstream):
    params = semantic_config["dheera_ai_settings"]["cache_params"]
    params["redis_semantic_cache_embedding_model"] = params.pop("semantic_cache_embedding_model")
    del params["url"]
    semantic_config["general_settings"]["database_url"] = database = pgvector_server()
    gateway = live_app(semantic_config)
    loaded = gateway.server.app.extensions["dheera_ai"].config.dheera_ai_settings["cache_params"]
    assert (loaded["semantic_cache_embedding_model"], loaded["url"]) == ("embedder", database)
    gpt = openai.OpenAI(base_url=gateway.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=10)
    ask(gpt, CAPITAL)
    kept(database, 1)
    assert ask(gpt, REWORDED).headers["x-dheera-ai-cache-hit"] == "true" and chats(upstream) == 1


def test_a_gateway_that_stops_closes_its_connections_to_the_cache_database(make_app, semantic_config):
    """A gateway whose state is closed closes the semantic cache's pool: left open, the pool keeps
    reconnecting to a database that may be gone, and logs each failure."""
    import psycopg

    url = semantic_config["dheera_ai_settings"]["cache_params"]["url"]
    app = make_app(semantic_config)
    answer = app.test_client().post("/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": CAPITAL},
                                    headers={"Authorization": f"Bearer {MASTER_KEY}"})
    assert answer.status_code == 200
    kept(url, 1)
    with psycopg.connect(url, autocommit=True) as conn:
        def others() -> int:
            return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                "AND pid <> pg_backend_pid()").fetchone()[0]

        assert others() >= 1, "the cache holds a connection while the gateway runs"
        app.extensions["dheera_ai_state"].close()
        for _ in range(250):
            if others() == 0:
                break
            time.sleep(0.02)
        assert others() == 0
