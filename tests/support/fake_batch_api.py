"""OpenAI's and Azure OpenAI's Files and Batch API, in memory, on the fake upstream.

It checks what the real services check: the key (`Authorization: Bearer` for OpenAI, `api-key` for
Azure), Azure's `api-version` on its classic paths, `purpose=batch` uploads, that a batch's input
file exists and that its lines are JSON naming the batch's endpoint. A test moves a batch on with
`progress(id)` / `complete(id)` (each line answered as a chat completion naming the line's model)
and reads what was uploaded with `file_bytes(id)`. Other paths answer as the fake upstream does.
"""

from __future__ import annotations

import json
import secrets
import time

from tests.support.fake_upstream import FakeUpstream, Script

FAKE_KEY = "sk-batch-upstream-secret"
PREFIXES = ("/openai/v1", "/openai", "/v1")


class FakeBatchAPI(FakeUpstream):
    def __init__(self, key: str = FAKE_KEY, azure: bool = False):
        super().__init__()
        self.key = key
        self.azure = azure
        self.files: dict[str, dict] = {}
        self.batches: dict[str, dict] = {}

    def batch_requests(self) -> list:
        return [r for r in self.requests if "/files" in r.path or "/batches" in r.path]

    def file_bytes(self, file_id: str) -> bytes:
        return self.files[file_id]["content"]

    def lines(self, batch_id: str) -> list[dict]:
        source = self.file_bytes(self.batches[batch_id]["input_file_id"])
        return [json.loads(line) for line in source.splitlines() if line.strip()]

    def progress(self, batch_id: str, completed: int = 0) -> None:
        batch = self.batches[batch_id]
        batch.update(status="in_progress", in_progress_at=int(time.time()))
        batch["request_counts"]["completed"] = completed

    def complete(self, batch_id: str, failed: int = 0) -> None:
        """Answer every line (the last `failed` with a 400), as the provider would in 24 hours."""
        lines = self.lines(batch_id)
        answered, refused = lines[:len(lines) - failed], lines[len(lines) - failed:]
        output = b"".join(_answer(line, 200, {
            "id": "chatcmpl-" + secrets.token_hex(4), "object": "chat.completion", "model": line["body"]["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": f"Batch answer to {line['custom_id']}"}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}) for line in answered)
        errors = b"".join(_answer(line, 400, {"error": {"message": "refused", "type": "invalid_request_error"}})
                          for line in refused)
        batch = self.batches[batch_id]
        batch.update(status="completed", completed_at=int(time.time()), finalizing_at=int(time.time()),
                     output_file_id=self._keep("batch_output", "output.jsonl", output) if answered else None,
                     error_file_id=self._keep("batch_output", "errors.jsonl", errors) if refused else None,
                     usage={"input_tokens": 10 * len(answered), "output_tokens": 5 * len(answered),
                            "total_tokens": 15 * len(answered)})
        batch["request_counts"] = {"total": len(lines), "completed": len(answered), "failed": len(refused)}

    # -- the API ---------------------------------------------------------------------------------

    def _default(self, recorded) -> Script:
        path, _, query = recorded.path.partition("?")
        for prefix in PREFIXES:
            rest = path[len(prefix):]
            if path.startswith(prefix + "/") and rest.split("/")[1] in ("files", "batches"):
                refusal = self._refusal(recorded, prefix, query)
                if refusal:
                    return refusal
                return self._serve(recorded, rest.strip("/").split("/"))
        return super()._default(recorded)

    def _refusal(self, recorded, prefix: str, query: str) -> Script | None:
        headers = recorded.headers
        if self.azure:
            if headers.get("api-key") != self.key:
                return _error(401, "Access denied due to invalid subscription key.")
            if prefix == "/openai" and "api-version=" not in query:
                return _error(404, "Resource not found (no api-version).")
        elif headers.get("authorization") != f"Bearer {self.key}":
            return _error(401, "Incorrect API key provided.")
        return None

    def _serve(self, recorded, parts: list[str]) -> Script:
        method, kind = recorded.method, parts[0]
        if kind == "files" and method == "POST" and len(parts) == 1:
            fields, uploads = recorded.form
            if fields.get("purpose") != "batch" or len(uploads) != 1:
                return _error(400, "Upload one file with purpose 'batch'.")
            file_id = self._keep("batch", uploads[0][1], uploads[0][3])
            return _json(self._file_object(file_id))
        if kind == "files" and method == "GET" and len(parts) in (2, 3) and parts[1] in self.files:
            if len(parts) == 3:
                return Script(body=self.file_bytes(parts[1]), headers={"Content-Type": "application/octet-stream"})
            return _json(self._file_object(parts[1]))
        if kind == "batches" and method == "POST" and len(parts) == 1:
            return self._create(recorded.json)
        if kind == "batches" and len(parts) >= 2 and parts[1] in self.batches:
            batch = self.batches[parts[1]]
            if method == "POST" and parts[2:] == ["cancel"]:
                if batch["status"] not in ("validating", "in_progress"):
                    return _error(400, f"Cannot cancel a batch that is {batch['status']}.")
                batch.update(status="cancelling", cancelling_at=int(time.time()))
            return _json(batch)
        return _error(404, f"No such object: {recorded.path}")

    def _create(self, body: dict) -> Script:
        source = self.files.get(body.get("input_file_id"))
        if source is None:
            return _error(400, "No such input file.")
        try:
            lines = [json.loads(line) for line in source["content"].splitlines() if line.strip()]
        except ValueError:
            return _error(400, "The input file is not JSONL.")
        if any(line.get("url") != body.get("endpoint") for line in lines):
            return _error(400, "Every line's url must be the batch's endpoint.")
        batch_id = "batch_up_" + secrets.token_hex(6)
        self.batches[batch_id] = {
            "id": batch_id, "object": "batch", "endpoint": body["endpoint"], "errors": None,
            "input_file_id": body["input_file_id"], "completion_window": body["completion_window"],
            "status": "validating", "output_file_id": None, "error_file_id": None, "created_at": int(time.time()),
            "in_progress_at": None, "expires_at": int(time.time()) + 86400, "finalizing_at": None,
            "completed_at": None, "failed_at": None, "expired_at": None, "cancelling_at": None, "cancelled_at": None,
            "request_counts": {"total": len(lines), "completed": 0, "failed": 0}, "metadata": body.get("metadata")}
        return _json(self.batches[batch_id])

    def _keep(self, purpose: str, filename: str, content: bytes) -> str:
        file_id = "file-up-" + secrets.token_hex(6)
        self.files[file_id] = {"purpose": purpose, "filename": filename, "content": content,
                               "created_at": int(time.time())}
        return file_id

    def _file_object(self, file_id: str) -> dict:
        kept = self.files[file_id]
        return {"id": file_id, "object": "file", "bytes": len(kept["content"]), "created_at": kept["created_at"],
                "filename": kept["filename"], "purpose": kept["purpose"], "status": "processed"}


def _answer(line: dict, status: int, body: dict) -> bytes:
    return json.dumps({"id": "batch_req_" + secrets.token_hex(4), "custom_id": line["custom_id"],
                       "response": {"status_code": status, "request_id": secrets.token_hex(4), "body": body},
                       "error": None}).encode() + b"\n"


def _json(body: dict, status: int = 200) -> Script:
    return Script(status=status, body=json.dumps(body).encode())


def _error(status: int, message: str) -> Script:
    return _json({"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}},
                 status)
