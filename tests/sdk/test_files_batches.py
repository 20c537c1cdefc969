"""The SDK's Files and Batch API calls (`dheera_ai.create_file`, `create_batch`, ...): a whole batch run
on a live gateway's mock model, and the wire to OpenAI and Azure against a fake on 127.0.0.1."""

import asyncio
import json
import time

import pytest

import dheera_ai
from tests.conftest import MASTER_KEY
from tests.support.fake_upstream import Script

CHAT = "/v1/chat/completions"


def jsonl(lines) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def chat_line(i, model="demo"):
    return {"custom_id": f"req-{i}", "method": "POST", "url": CHAT,
            "body": {"model": model, "messages": [{"role": "user", "content": f"line {i}"}],
                     "mock_response": f"answer {i}"}}


@pytest.fixture(autouse=True)
def no_openai_environment(monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_BASE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def gateway(live_app, base_config):
    base_config["general_settings"].update(batch_poll_interval=0.2, batch_concurrency=4)
    return live_app(base_config)


@pytest.fixture
def at_gateway(gateway, monkeypatch):
    """The SDK pointed at the gateway as LiteLLM users point it: `dheera_ai.api_base`/`api_key`."""
    monkeypatch.setattr(dheera_ai, "api_base", gateway.url)
    monkeypatch.setattr(dheera_ai, "api_key", MASTER_KEY)
    return gateway


def poll(batch, retrieve, timeout=30.0):
    deadline = time.time() + timeout
    while batch.status not in ("completed", "failed", "cancelled", "expired"):
        assert time.time() < deadline, batch
        time.sleep(0.05)
        batch = retrieve(batch.id)
    return batch


def check_output(lines: list[dict], count=3):
    assert sorted(line["custom_id"] for line in lines) == [f"req-{i}" for i in range(count)]
    for line in lines:
        i = line["custom_id"].split("-")[1]
        assert line["error"] is None and line["response"]["status_code"] == 200
        body = line["response"]["body"]
        assert body["object"] == "chat.completion"
        assert body["choices"][0]["message"]["content"] == f"answer {i}"


def test_a_batch_runs_end_to_end_on_the_gateways_mock_model(at_gateway, tmp_path):
    path = tmp_path / "requests.jsonl"
    path.write_bytes(jsonl([chat_line(i) for i in range(3)]))

    source = dheera_ai.create_file(file=str(path), purpose="batch", custom_llm_provider="dheera_ai_proxy")
    assert isinstance(source, dheera_ai.FileObject)
    assert source.id.startswith("file-") and source.purpose == "batch" and source.filename == "requests.jsonl"
    assert source.bytes == path.stat().st_size
    assert source["id"] == source.id and source.model_dump()["id"] == source.id  # a dict too
    assert source._hidden_params["custom_llm_provider"] == "dheera_ai_proxy"

    batch = dheera_ai.create_batch(input_file_id=source.id, endpoint=CHAT, completion_window="24h",
                                   metadata={"job": "sdk-e2e"}, custom_llm_provider="dheera_ai_proxy")
    assert isinstance(batch, dheera_ai.Batch) and batch.status == "validating"
    assert batch.metadata == {"job": "sdk-e2e"} and batch.input_file_id == source.id

    done = poll(batch, lambda b: dheera_ai.retrieve_batch(b, custom_llm_provider="dheera_ai_proxy"))
    assert done.status == "completed", done
    assert done.request_counts.model_dump() == {"total": 3, "completed": 3, "failed": 0}

    content = dheera_ai.file_content(done.output_file_id, custom_llm_provider="dheera_ai_proxy")
    check_output([json.loads(line) for line in content.text.splitlines()])
    assert content.read() == content.content  # read once, kept

    batches = dheera_ai.list_batches(custom_llm_provider="dheera_ai_proxy")
    assert isinstance(batches, dheera_ai.BatchList) and batches.has_more is False
    assert [b.id for b in batches.data] == [batch.id] and isinstance(batches.data[0], dheera_ai.Batch)
    listed = dheera_ai.file_list(custom_llm_provider="dheera_ai_proxy")
    assert {source.id, done.output_file_id} <= {f.id for f in listed.data}
    only_batch = dheera_ai.file_list(purpose="batch", custom_llm_provider="dheera_ai_proxy")
    assert [f.id for f in only_batch.data] == [source.id]  # the purpose filter reached the gateway

    with pytest.raises(dheera_ai.BadRequestError) as finished:
        dheera_ai.cancel_batch(batch.id, custom_llm_provider="dheera_ai_proxy")
    assert finished.value.code == "batch_not_cancellable" and "completed" in finished.value.message
    with pytest.raises(dheera_ai.NotFoundError) as unknown:
        dheera_ai.file_retrieve("file-nope", custom_llm_provider="dheera_ai_proxy")
    assert "file-nope" in unknown.value.message
    with pytest.raises(dheera_ai.NotFoundError):
        dheera_ai.retrieve_batch("batch_nope", custom_llm_provider="dheera_ai_proxy")

    assert dheera_ai.file_retrieve(source.id, custom_llm_provider="dheera_ai_proxy").purpose == "batch"
    deleted = dheera_ai.file_delete(source.id, custom_llm_provider="dheera_ai_proxy")
    assert (deleted.id, deleted.deleted) == (source.id, True)
    with pytest.raises(dheera_ai.NotFoundError):
        dheera_ai.file_retrieve(source.id, custom_llm_provider="dheera_ai_proxy")


def test_use_dheera_ai_proxy_sends_the_default_openai_calls_to_the_gateway(gateway, monkeypatch):
    monkeypatch.setenv("DHEERA_AI_PROXY_API_BASE", gateway.url + "/v1")
    monkeypatch.setenv("DHEERA_AI_PROXY_API_KEY", MASTER_KEY)
    monkeypatch.setenv("OPENAI_API_BASE", "http://127.0.0.1:9")  # never reached
    monkeypatch.setattr(dheera_ai, "use_dheera_ai_proxy", True)
    made = dheera_ai.create_file(file=("in.jsonl", jsonl([chat_line(0)])), purpose="batch")
    assert dheera_ai.file_retrieve(made.id).filename == "in.jsonl"
    monkeypatch.setattr(dheera_ai, "use_dheera_ai_proxy", False)
    assert dheera_ai.file_retrieve(made.id, use_dheera_ai_proxy=True).id == made.id
    with pytest.raises(dheera_ai.AuthenticationError):
        dheera_ai.file_list(use_dheera_ai_proxy=True, api_key="sk-not-a-key-of-this-gateway")


def test_the_async_twins_run_the_same_flow(at_gateway):
    where = {"custom_llm_provider": "dheera_ai_proxy"}

    async def flow():
        source = await dheera_ai.acreate_file(file=jsonl([chat_line(i) for i in range(3)]), purpose="batch", **where)
        batch = await dheera_ai.acreate_batch(input_file_id=source.id, endpoint=CHAT, **where)
        deadline = time.time() + 30
        while batch.status not in ("completed", "failed"):
            assert time.time() < deadline, batch
            await asyncio.sleep(0.05)
            batch = await dheera_ai.aretrieve_batch(batch.id, **where)
        content = await dheera_ai.afile_content(batch.output_file_id, **where)
        listed = await dheera_ai.alist_batches(limit=5, **where)
        files = await dheera_ai.afile_list(**where)
        with pytest.raises(dheera_ai.BadRequestError):
            await dheera_ai.acancel_batch(batch.id, **where)
        with pytest.raises(dheera_ai.NotFoundError):
            await dheera_ai.afile_retrieve("file-nope", **where)
        deleted = await dheera_ai.afile_delete(source.id, **where)
        return source, batch, content, listed, files, deleted

    source, batch, content, listed, files, deleted = asyncio.run(flow())
    assert batch.status == "completed"
    check_output([json.loads(line) for line in content.text.splitlines()])  # read on the loop, kept
    assert [b.id for b in listed.data] == [batch.id]
    assert source.id in {f.id for f in files.data} and deleted.deleted is True


# -- the wire, straight to OpenAI and Azure ----------------------------------------------------
FILE = {"id": "file-abc", "object": "file", "bytes": 12, "created_at": 1700000000, "filename": "in.jsonl",
        "purpose": "batch", "status": "processed"}
BATCH = {"id": "batch_1", "object": "batch", "endpoint": CHAT, "input_file_id": "file-abc",
         "completion_window": "24h", "status": "validating", "output_file_id": None, "metadata": {"job": "x"},
         "request_counts": {"total": 0, "completed": 0, "failed": 0}}
CONTENT = b'{"custom_id": "req-0"}\n{"custom_id": "req-1"}\n'


def fake_files_api(upstream, prefix: str):
    """OpenAI's Files and Batch API under `prefix` ("/v1", "/openai"), one known file and batch."""
    def answer(by_method):
        def handler(recorded):
            found = by_method.get(recorded.method)
            if found is None:
                return Script(status=405, body=b'{"error": {"message": "method not allowed"}}')
            status, body = found
            return Script(status=status, body=body if isinstance(body, bytes) else json.dumps(body).encode(),
                          headers={"Content-Type": "application/octet-stream"} if isinstance(body, bytes) else {})
        return handler
    routes = {
        "/files": {"POST": (200, FILE), "GET": (200, {"object": "list", "data": [FILE], "has_more": True,
                                                      "first_id": "file-abc", "last_id": "file-abc"})},
        "/files/file-abc": {"GET": (200, FILE), "DELETE": (200, {"id": "file-abc", "object": "file",
                                                                 "deleted": True})},
        "/files/file-abc/content": {"GET": (200, CONTENT)},
        "/files/file-nope": {"GET": (404, {"error": {"message": "No such File object: file-nope",
                                                     "type": "invalid_request_error", "param": "id",
                                                     "code": None}})},
        "/batches": {"POST": (200, BATCH), "GET": (200, {"object": "list", "data": [BATCH], "has_more": False})},
        "/batches/batch_1": {"GET": (200, {**BATCH, "status": "completed", "output_file_id": "file-abc"})},
        "/batches/batch_1/cancel": {"POST": (400, {"error": {"message": "Cannot cancel a batch with status "
                                                             "completed.", "type": "invalid_request_error"}})},
        "/batches/batch_limited": {"GET": (429, {"error": {"message": "Rate limit reached", "type": "requests"}})},
        "/batches/batch_unauthorized": {"GET": (401, {"error": {"message": "Incorrect API key provided"}})},
    }
    for path, by_method in routes.items():
        upstream.route(prefix + path, answer(by_method))


def run_every_call(**where):
    """Each call once, as a user would in order; returns what they answered."""
    made = dheera_ai.create_file(file=("in.jsonl", b"line one\nline two\n"), purpose="batch", **where)
    got = dheera_ai.file_retrieve("file-abc", **where)
    listed = dheera_ai.file_list(purpose="batch", limit=2, **where)
    content = dheera_ai.file_content("file-abc", **where)
    batch = dheera_ai.create_batch(input_file_id="file-abc", endpoint=CHAT, metadata={"job": "x"}, **where)
    done = dheera_ai.retrieve_batch("batch_1", **where)
    batches = dheera_ai.list_batches(after="batch_0", limit=10, **where)
    deleted = dheera_ai.file_delete("file-abc", **where)
    return made, got, listed, content, batch, done, batches, deleted


def check_answers(made, got, listed, content, batch, done, batches, deleted):
    assert made.id == got.id == "file-abc" and made.status == "processed"
    assert listed.has_more is True and [f.filename for f in listed.data] == ["in.jsonl"]
    assert content.content == CONTENT and content.text.splitlines()[1] == '{"custom_id": "req-1"}'
    assert batch.status == "validating" and batch.metadata.job == "x"
    assert done.output_file_id == "file-abc" and done.request_counts.total == 0
    assert [b.id for b in batches.data] == ["batch_1"] and deleted.deleted is True


def wire(upstream):
    """(method, path, query as a dict) of each request the fake received."""
    from urllib.parse import parse_qsl

    return [(r.method, r.path.split("?")[0], dict(parse_qsl(r.path.partition("?")[2]))) for r in upstream.requests]


def test_openai_gets_openais_wire(upstream, monkeypatch):
    fake_files_api(upstream, "/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-from-env")
    monkeypatch.setenv("OPENAI_API_BASE", upstream.url + "/v1")
    answers = run_every_call()  # custom_llm_provider defaults to openai
    check_answers(*answers)
    assert wire(upstream) == [
        ("POST", "/v1/files", {}), ("GET", "/v1/files/file-abc", {}),
        ("GET", "/v1/files", {"purpose": "batch", "limit": "2"}), ("GET", "/v1/files/file-abc/content", {}),
        ("POST", "/v1/batches", {}), ("GET", "/v1/batches/batch_1", {}),
        ("GET", "/v1/batches", {"after": "batch_0", "limit": "10"}), ("DELETE", "/v1/files/file-abc", {})]
    assert {r.headers["authorization"] for r in upstream.requests} == {"Bearer sk-openai-from-env"}
    assert not any("api-key" in r.headers for r in upstream.requests)

    upload = upstream.requests[0]
    assert upload.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert int(upload.headers["content-length"]) == len(upload.body)  # a length, not a chunked upload
    fields, files = upload.form
    assert fields == {"purpose": "batch"}
    assert [(name, filename, data) for name, filename, _, data in files] == [
        ("file", "in.jsonl", b"line one\nline two\n")]
    assert upstream.requests[4].json == {"input_file_id": "file-abc", "endpoint": CHAT, "completion_window": "24h",
                                         "metadata": {"job": "x"}}


def test_openai_arguments_win_over_the_environment_and_errors_keep_their_class(upstream, monkeypatch):
    fake_files_api(upstream, "/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-from-env")
    monkeypatch.setenv("OPENAI_API_BASE", "http://127.0.0.1:9")  # never reached
    where = {"api_base": upstream.url + "/v1", "api_key": "sk-openai-argument"}
    with pytest.raises(dheera_ai.NotFoundError) as missing:
        dheera_ai.file_retrieve("file-nope", **where)
    assert "No such File object: file-nope" in missing.value.message and missing.value.status_code == 404
    assert missing.value.provider == "openai"
    with pytest.raises(dheera_ai.BadRequestError) as finished:
        dheera_ai.cancel_batch("batch_1", **where)
    assert "Cannot cancel a batch with status completed." in finished.value.message
    with pytest.raises(dheera_ai.RateLimitError):
        dheera_ai.retrieve_batch("batch_limited", **where)
    with pytest.raises(dheera_ai.AuthenticationError) as refused:
        dheera_ai.retrieve_batch("batch_unauthorized", **where)
    assert "Incorrect API key provided" in refused.value.message
    assert wire(upstream)[1] == ("POST", "/v1/batches/batch_1/cancel", {})
    dheera_ai.create_file(file=b"x\n", purpose="batch", expires_after={"anchor": "created_at", "seconds": 3600},
                          **where)
    fields, files = upstream.last.form
    assert fields == {"purpose": "batch", "expires_after[anchor]": "created_at", "expires_after[seconds]": "3600"}
    assert [(name, filename) for name, filename, _, _ in files] == [("file", "file")]
    assert {r.headers["authorization"] for r in upstream.requests} == {"Bearer sk-openai-argument"}


def test_an_upload_streams_from_an_open_file_in_blocks(upstream, monkeypatch, tmp_path):
    from dheera_ai import http, multipart

    fake_files_api(upstream, "/v1")
    sent_bodies = []
    real_send = http._send

    def spied(session, method, url, *, data, **kwargs):
        sent_bodies.append(data)
        return real_send(session, method, url, data=data, **kwargs)
    monkeypatch.setattr(http, "_send", spied)
    path = tmp_path / "big.jsonl"
    data = b"".join(b'{"custom_id": "req-%d"}\n' % i for i in range(40_000))  # ~1 MB
    path.write_bytes(data)
    reads = []

    class Watched:
        def __init__(self, f):
            self._f = f
            self.name = f.name

        def read(self, size=-1):
            reads.append(size)
            return self._f.read(size)

        def __getattr__(self, name):
            return getattr(self._f, name)

    with open(path, "rb") as f:
        dheera_ai.create_file(file=Watched(f), purpose="batch", api_base=upstream.url + "/v1", api_key="sk-x")
    assert reads and max(reads) == multipart.BLOCK and -1 not in reads  # never read whole
    [body] = sent_bodies
    assert isinstance(body, multipart.MultipartBody)  # handed to requests as an iterable, not joined first
    fields, files = upstream.last.form
    assert files[0][1] == "big.jsonl" and files[0][3] == data


def test_azure_gets_azures_wire(upstream, monkeypatch):
    fake_files_api(upstream, "/openai")
    monkeypatch.setenv("AZURE_API_BASE", upstream.url + "/")
    monkeypatch.setenv("AZURE_API_KEY", "azure-key-from-env")
    monkeypatch.setenv("AZURE_API_VERSION", "2024-10-21")
    answers = run_every_call(custom_llm_provider="azure")
    check_answers(*answers)
    v = {"api-version": "2024-10-21"}
    assert wire(upstream) == [
        ("POST", "/openai/files", v), ("GET", "/openai/files/file-abc", v),
        ("GET", "/openai/files", {**v, "purpose": "batch", "limit": "2"}), ("GET", "/openai/files/file-abc/content", v),
        ("POST", "/openai/batches", v), ("GET", "/openai/batches/batch_1", v),
        ("GET", "/openai/batches", {**v, "after": "batch_0", "limit": "10"}), ("DELETE", "/openai/files/file-abc", v)]
    assert {r.headers["api-key"] for r in upstream.requests} == {"azure-key-from-env"}
    assert not any("authorization" in r.headers for r in upstream.requests)
    fields, files = upstream.requests[0].form
    assert fields == {"purpose": "batch"} and files[0][0] == "file" and files[0][3] == b"line one\nline two\n"
    assert upstream.requests[4].json["input_file_id"] == "file-abc"


def test_azure_arguments_and_its_errors(upstream, monkeypatch):
    fake_files_api(upstream, "/openai")
    where = {"custom_llm_provider": "azure", "api_base": upstream.url, "api_key": "azure-arg-key",
             "api_version": "2025-03-01-preview"}
    assert dheera_ai.file_retrieve("file-abc", **where).id == "file-abc"
    with pytest.raises(dheera_ai.NotFoundError) as missing:
        dheera_ai.file_retrieve("file-nope", **where)
    assert "file-nope" in missing.value.message and missing.value.provider == "azure"
    v = {"api-version": "2025-03-01-preview"}
    assert wire(upstream) == [("GET", "/openai/files/file-abc", v), ("GET", "/openai/files/file-nope", v)]
    assert upstream.last.headers["api-key"] == "azure-arg-key"


def test_the_async_twins_send_the_same_wire(upstream, monkeypatch):
    fake_files_api(upstream, "/v1")
    where = {"api_base": upstream.url + "/v1", "api_key": "sk-async"}

    async def flow():
        made = await dheera_ai.acreate_file(file=("in.jsonl", b"async bytes\n"), purpose="batch", **where)
        content = await dheera_ai.afile_content("file-abc", **where)
        batch = await dheera_ai.acreate_batch(input_file_id=made.id, endpoint=CHAT, **where)
        with pytest.raises(dheera_ai.NotFoundError):
            await dheera_ai.afile_retrieve("file-nope", **where)
        return made, content, batch

    made, content, batch = asyncio.run(flow())
    assert made.id == "file-abc" and content.content == CONTENT and batch.id == "batch_1"
    fields, files = upstream.requests[0].form
    assert fields == {"purpose": "batch"} and files[0][3] == b"async bytes\n"
    assert upstream.requests[2].json == {"input_file_id": "file-abc", "endpoint": CHAT, "completion_window": "24h"}
    assert {r.headers["authorization"] for r in upstream.requests} == {"Bearer sk-async"}


def test_other_providers_and_missing_arguments_are_refused_before_anything_is_sent(upstream):
    with pytest.raises(dheera_ai.BadRequestError) as other:
        dheera_ai.file_list(custom_llm_provider="anthropic", api_key="sk-ant-x")
    assert other.value.param == "custom_llm_provider"
    with pytest.raises(dheera_ai.BadRequestError) as no_base:
        dheera_ai.file_list(custom_llm_provider="dheera_ai_proxy")
    assert no_base.value.code == "missing_api_base"
    with pytest.raises(dheera_ai.BadRequestError) as no_file:
        dheera_ai.create_batch(endpoint=CHAT, api_base=upstream.url, api_key="sk-x")
    assert no_file.value.param == "input_file_id"
    assert upstream.requests == []
