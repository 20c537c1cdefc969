"""Batches handed on to a provider with a Batch API of its own (OpenAI, Azure OpenAI).

A validated batch whose lines all name one model group, every deployment of which is on such a
provider, is forwarded (unless `general_settings.batch_forwarding` is off): its input file is
rewritten with the deployment's model (Azure: its deployment name) and streamed up, and the batch
is created there, at that provider's batch price. The batch row keeps the deployment and the
provider's batch id, so any worker of any instance answers follow-ups: a retrieve asks the
provider and stores what it says, a cancel is sent on, and the output and error files are rows of
ours whose content is read from the provider as it is asked for.

Not forwarded, so run by the gateway line by line through the pipeline: batches under guardrails
(a provider would never apply them), lines carrying a caller's own credentials or `mock_response`,
and keys that may not use the model (each line then gets its refusal).
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import time

import orjson
from flask import Response

from dheera_ai import http
from dheera_ai.errors import BadRequestError, DheeraAIError
from dheera_ai.multipart import MultipartBody
from dheera_ai.router.wildcards import model_allowed
from dheera_ai.types import GATEWAY_FIELDS, Deployment, Upload, Usage
from proxy_app.batches.lines import read_lines
from proxy_app.files import derived_file_id

log = logging.getLogger("dheera_ai.batches")

# Fields that make a line the gateway's to run: the caller's own upstream, or an answer of its own.
GATEWAY_ONLY = frozenset({"user_config", "api_key", "api_base", "base_url", "api_version", "mock_response"})
STATUSES = ("validating", "failed", "in_progress", "finalizing", "completed", "expired", "cancelling", "cancelled")
TIMESTAMPS = ("in_progress_at", "finalizing_at", "completed_at", "failed_at", "expired_at", "cancelling_at",
              "cancelled_at")
FILE_KINDS = {"output_file_id": "output", "error_file_id": "errors"}
TIMEOUT = 120.0  # an upload of a large file, or a slow answer from the provider


class NotForwardable(Exception):
    """This batch stays with the gateway's runner."""


class Forwarder:
    def __init__(self, engine, files, batches, enabled: bool = True):
        self.engine = engine
        self.files = files
        self.batches = batches
        self.enabled = enabled

    # -- the start -------------------------------------------------------------------------------

    def deployment_for(self, batch: dict, principal) -> Deployment | None:
        """The deployment a batch goes to, or None when the gateway runs it."""
        if not self.enabled or not batch["model"] or self._guarded():
            return None
        if principal.kind == "virtual_key" and principal.models is not None \
                and not model_allowed(batch["model"], principal.models):
            return None
        try:
            deployments = self.engine.router.group(batch["model"]).deployments
        except BadRequestError:
            return None
        providers = self.engine.providers
        if not deployments or not all(getattr(providers[d.provider], "batch_api", False) and not d.from_client
                                      for d in deployments):
            return None
        return random.choice(deployments)

    def start(self, batch: dict, deployment: Deployment) -> dict:
        """Upload the rewritten input and create the batch at the provider: the row's changes.
        NotForwardable when a line must run here."""
        provider = self.engine.providers[deployment.provider]
        endpoint = provider.batch_endpoint(batch["endpoint"])
        spool = self.files.spool()
        try:
            with spool:
                for _number, raw in read_lines(self.files.path(batch["input_file_id"])):
                    spool.write(_rewritten(raw, provider.model_name(deployment), endpoint))
                size = spool.tell()
            with open(spool.name, "rb") as stream:
                body = MultipartBody({"purpose": "batch"}, [Upload("file", f"{batch['batch_id']}.jsonl",
                                                                    "application/jsonl", stream, size)])
                uploaded = self._send(deployment, "POST", "files", data=body,
                                      headers={"Content-Type": body.content_type})
        finally:
            os.unlink(spool.name)
        created = self._send(deployment, "POST", "batches", json_body={
            "input_file_id": uploaded["id"], "endpoint": endpoint, "completion_window": batch["completion_window"],
            **({"metadata": batch["metadata"]} if batch["metadata"] else {})})
        changes = {"deployment": deployment.id, "upstream_id": created["id"]}
        return {**changes, **self._changes({**batch, **changes}, created)}

    # -- follow-ups ------------------------------------------------------------------------------

    def refresh(self, batch: dict) -> dict:
        """The batch as its provider has it now (stored); as last stored if the provider cannot say."""
        if batch["status"] in ("completed", "failed", "expired", "cancelled"):
            return batch
        try:
            found = self._send(self._deployment(batch), "GET", f"batches/{batch['upstream_id']}")
        except DheeraAIError as exc:
            log.warning("batch %s: its provider did not answer (%s); showing what was stored",
                        batch["batch_id"], exc.message)
            return batch
        return self._store(batch, found)

    def cancel(self, batch: dict) -> dict:
        found = self._send(self._deployment(batch), "POST", f"batches/{batch['upstream_id']}/cancel")
        return self._store(batch, found)

    def file_content(self, row: dict) -> Response:
        """A forwarded batch's output or error file, streamed from its provider."""
        return Response(_closing(self._content(row)), mimetype="application/octet-stream")

    def answered_lines(self, batch: dict):
        """(row id, usage, status) of each line of a finished forwarded batch's output file, read
        from its provider: what its spend rows are made of (the row id is the line's, so recording
        a batch twice writes each row once)."""
        if batch["output_file_id"] is None:
            return
        upstream = self._content(self.files.row(batch["output_file_id"]))
        try:
            for raw in upstream.iter_lines():
                if not raw.strip():
                    continue
                line = orjson.loads(raw)
                response = line.get("response") or {}
                usage = Usage.from_openai((response.get("body") or {}).get("usage"))
                row_id = hashlib.sha256(f"{batch['batch_id']}:{line.get('custom_id')}".encode()).hexdigest()[:32]
                yield row_id, usage, int(response.get("status_code") or 200)
        finally:
            upstream.close()

    # -- inside ----------------------------------------------------------------------------------

    def _guarded(self) -> bool:
        return self.engine.plugin_manager.get_plugin("guardrail-phases") is not None

    def _deployment(self, row: dict) -> Deployment:
        return self.engine.router.find(row["deployment"])  # a 404 once the config no longer has it

    def _content(self, row: dict):
        """The streamed answer of the provider's `files/{id}/content` for a file row of ours."""
        deployment = self._deployment(row)
        provider = self.engine.providers[deployment.provider]
        return http.request("GET", provider.batch_url(deployment, f"files/{row['upstream_id']}/content"),
                            headers=provider.auth_headers(deployment), timeout=TIMEOUT, stream=True,
                            provider=provider.name)

    def _send(self, deployment: Deployment, method: str, path: str, **kwargs) -> dict:
        provider = self.engine.providers[deployment.provider]
        headers = {**provider.auth_headers(deployment), **kwargs.pop("headers", {})}
        response = http.request(method, provider.batch_url(deployment, path), headers=headers,
                                timeout=deployment.param("timeout") or TIMEOUT, provider=provider.name, **kwargs)
        return orjson.loads(response.content)

    def _store(self, batch: dict, found: dict) -> dict:
        changes = self._changes(batch, found)
        if changes:
            self.batches.update(batch["batch_id"], changes)
        return {**batch, **changes}

    def _changes(self, batch: dict, found: dict) -> dict:
        """What the provider's Batch object changes of our row: status, counts, usage, errors,
        timestamps, and its output/error files as rows of ours (derived ids, so once)."""
        changes: dict = {}
        if found.get("status") in STATUSES:
            changes["status"] = found["status"]
        counts = found.get("request_counts") or {}
        for ours, theirs in (("request_total", "total"), ("request_completed", "completed"),
                             ("request_failed", "failed")):
            if isinstance(counts.get(theirs), int):
                changes[ours] = counts[theirs]
        usage = found.get("usage") or {}
        for name in ("input_tokens", "output_tokens"):
            if isinstance(usage.get(name), int):
                changes[name] = usage[name]
        if found.get("errors"):
            changes["errors"] = found["errors"]
        for name in TIMESTAMPS:
            if isinstance(found.get(name), (int, float)):
                changes[name] = float(found[name])
        for column, kind in FILE_KINDS.items():
            upstream_file = found.get(column)
            if upstream_file and batch[column] is None:
                file_id = derived_file_id(f"{batch['batch_id']}:{kind}")
                self.files.remember({"file_id": file_id, "owner": batch["owner"], "team_id": batch["team_id"],
                                     "purpose": "batch_output", "filename": f"{batch['batch_id']}_{kind}.jsonl",
                                     "bytes": 0, "created_at": time.time(), "deployment": batch["deployment"],
                                     "upstream_id": upstream_file})
                changes[column] = file_id
        return {k: v for k, v in changes.items() if batch.get(k) != v}


def _rewritten(raw: bytes, model: str, endpoint: str) -> bytes:
    line = orjson.loads(raw)
    body = line["body"]
    carried = GATEWAY_ONLY.intersection(body)
    if carried:
        raise NotForwardable(f"a line carries {', '.join(sorted(carried))}")
    for name in GATEWAY_FIELDS:
        body.pop(name, None)  # the gateway's own fields (tags, metadata for its logs): not the provider's
    body["model"] = model
    line["url"] = endpoint
    return orjson.dumps(line) + b"\n"


def _closing(response):
    try:
        yield from response.iter_content(64 * 1024)
    finally:
        response.close()
