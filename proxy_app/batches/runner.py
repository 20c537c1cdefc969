"""The batch runner: each worker runs the gateway-run batches whose lease it takes, one at a time.

A batch goes validating -> in_progress -> finalizing -> completed (or failed, cancelled, expired).
Its lines go through the same pipeline as live calls, under the key that created the batch: its
models, budget and rpm/tpm limits hold (a line the limiter refuses waits and tries again, so a
batch never bursts past its key's limits), and each line's spend row is priced at
`1 - batch_discount` of the list price. At most `batch_concurrency` lines are in flight.

Durable: a line counts as done only once its result is stored (`BatchStore.record_result`); a
runner that resumes a batch (after a kill, or taking a dead runner's lease) skips lines with a
result, so no answered line is sent twice. Started per worker after fork (`create_app`).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from queue import Empty, Full, Queue

import orjson

from dheera_ai import ids
from dheera_ai.errors import AuthenticationError, BadRequestError, DheeraAIError, RateLimitError
from dheera_ai.types import GATEWAY_FIELDS, Call, Outcome, Principal
from proxy_app import turns
from proxy_app.batches.forward import Forwarder, NotForwardable
from proxy_app.batches.lines import check_file, output_line, parse, read_lines
from proxy_app.batches.store import FINAL
from proxy_app.files import derived_file_id
from proxy_app.store import StoreUnavailableError

log = logging.getLogger("dheera_ai.batches")

TURN_SECONDS = 0.005

CALL_TYPES = {"/v1/chat/completions": "chat_completions", "/v1/embeddings": "embeddings",
              "/v1/completions": "completions", "/v1/responses": "responses"}
MASTER = Principal(kind="master", key_alias="master_key")
LONGEST_WAIT = 60.0  # between tries of a line the rate limiter refused
SWEEP_SECONDS = 600.0
UNSENT = "This request could not be executed before the completion window expired."


class LeaseLost(Exception):
    """Another runner has the batch now (this one stalled past its lease)."""


class BatchRunner:
    def __init__(self, engine, state, settings: dict):
        self.engine = engine
        self.batches = state.batches
        self.files = state.files
        self.auth = state.auth
        self.concurrency = int(settings["batch_concurrency"])
        self.poll_interval = float(settings["batch_poll_interval"])
        self.lease_seconds = float(settings["batch_lease_seconds"])
        self.price_factor = 1.0 - float(settings["batch_discount"])
        self.max_requests = int(settings["batch_max_requests"])
        self.follow_every = float(settings["batch_forward_poll_interval"])
        self.spend = state.spend
        self.forwarder = Forwarder(engine, state.files, state.batches, bool(settings["batch_forwarding"]))
        self.name = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_sweep = 0.0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._forever, name="dheera-ai-batches", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """A batch was created or cancelled here: look now rather than at the next poll."""
        self._wake.set()

    def close(self) -> None:
        self._closed.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _forever(self) -> None:
        while not self._closed.is_set():
            try:
                batch = self.batches.claim(self.name, self.lease_seconds)
            except StoreUnavailableError as exc:
                log.warning("batches: %s", exc.message)
                batch = None
            except Exception:
                log.exception("batches: looking for work failed")
                batch = None
            if batch is None:
                self._sweep()
                self._wake.wait(self.poll_interval)
                self._wake.clear()
                continue
            try:
                self.run(batch)
            except LeaseLost:
                log.warning("batch %s: another runner took it over", batch["batch_id"])
            except Exception:
                log.exception("batch %s: the runner stopped; its lease lets a runner resume it", batch["batch_id"])
                self._closed.wait(self.poll_interval)
            else:
                self._release(batch["batch_id"])

    def _sweep(self) -> None:
        """Every SWEEP_SECONDS while idle: files past their `expires_after` leave the disk."""
        if time.monotonic() < self._next_sweep:
            return
        self._next_sweep = time.monotonic() + SWEEP_SECONDS
        try:
            removed = self.files.sweep()
        except StoreUnavailableError as exc:
            log.warning("files: %s", exc.message)
            return
        if removed:
            log.info("files: removed %d expired files", removed)

    def _release(self, batch_id: str) -> None:
        try:
            self.batches.release(batch_id, self.name)
        except StoreUnavailableError:
            pass  # the lease runs out by itself

    # -- one batch -------------------------------------------------------------------------------

    def run(self, batch: dict) -> None:
        """Take a leased batch as far as it goes: every status it can be found in is resumable."""
        batch_id = batch["batch_id"]
        if batch["deployment"] is not None:
            self._follow(batch)
            return
        if batch["status"] == "validating" and not self._validate(batch):
            return
        batch = self._current(batch_id)
        if batch["status"] == "in_progress":
            self._run_lines(batch)
            batch = self._current(batch_id)
        if batch["status"] == "in_progress":
            if time.time() >= batch["expires_at"]:
                self._finish(batch, "expired")
                return
            self._update(batch_id, {"status": "finalizing", "finalizing_at": time.time()}, ("in_progress",))
            batch = self._current(batch_id)
        if batch["status"] == "cancelling":
            self._finish(batch, "cancelled")
        elif batch["status"] == "finalizing":
            self._finish(batch, "completed")

    def _follow(self, batch: dict) -> None:
        """A forwarded batch: ask its provider how it is; once it is final, record a spend row per
        answered line (at the batch price) and it is done; until then, look again later."""
        batch = self.forwarder.refresh(batch)
        batch_id = batch["batch_id"]
        if batch["status"] not in FINAL:
            self.batches.update(batch_id, {"lease_owner": None, "lease_until": time.time() + self.follow_every},
                                lease_owner=self.name)
            return
        try:
            principal = self._principal(batch)
        except AuthenticationError:  # blocked or deleted since: what it spent is still its
            principal = Principal(kind=batch["principal_kind"], key_hash=batch["key_hash"], team_id=batch["team_id"])
        deployment = self.engine.router.find(batch["deployment"])
        for row_id, usage, status in self.forwarder.answered_lines(batch):
            call = Call(call_id=ids.call_id(), call_type=CALL_TYPES[batch["endpoint"]], model=batch["model"] or "",
                        body={}, principal=principal, deployment=deployment, price_factor=self.price_factor,
                        metadata={"batch_id": batch_id}, start_time=batch["in_progress_at"] or batch["created_at"])
            self.spend.record(call, Outcome(status=status, latency_seconds=0.0, usage=usage), row_id)
        self._update(batch_id, {"spend_recorded": 1}, None)

    def _current(self, batch_id: str) -> dict:
        batch = self.batches.renew(batch_id, self.name, self.lease_seconds)
        if batch is None:
            raise LeaseLost(batch_id)
        return batch

    def _update(self, batch_id: str, changes: dict, statuses) -> bool:
        return self.batches.update(batch_id, changes, statuses, lease_owner=self.name)

    def _validate(self, batch: dict) -> bool:
        path = self.files.path(batch["input_file_id"])
        router = self.engine.router

        def model_problem(model: str) -> str | None:
            try:
                router.group(model)
            except BadRequestError as exc:
                return exc.message
            return None
        try:
            total, errors, models = check_file(path, batch["endpoint"], model_problem, self.max_requests)
        except FileNotFoundError:
            total, errors, models = 0, [{"code": "file_not_found", "param": "input_file_id", "line": None,
                                         "message": f"The input file {batch['input_file_id']} is gone."}], []
        now = time.time()
        if errors:
            self._update(batch["batch_id"], {"status": "failed", "failed_at": now, "request_total": total,
                                             "errors": {"object": "list", "data": errors}}, ("validating",))
            return False
        changes = {"request_total": total, "model": models[0] if len(set(models)) == 1 else None}
        self._update(batch["batch_id"], changes, ("validating", "cancelling"))
        if self._forwarded({**batch, **changes}):
            return False
        self._update(batch["batch_id"], {"status": "in_progress", "in_progress_at": now}, ("validating",))
        return True

    def _forwarded(self, batch: dict) -> bool:
        """Hand the batch to its provider's Batch API where it has one (`proxy_app.batches.forward`);
        False when the gateway runs it. A provider's refusal fails the batch; a provider that is
        down raises, and the batch is tried again once its lease runs out."""
        current = self.batches.get(batch["batch_id"])
        if current is None or current["status"] != "validating":
            return False  # cancelled meanwhile
        try:
            principal = self._principal(batch)
        except AuthenticationError:
            return False  # each line gets the refusal
        deployment = self.forwarder.deployment_for(batch, principal)
        if deployment is None:
            return False
        try:
            changes = self.forwarder.start(batch, deployment)
        except NotForwardable as exc:
            log.info("batch %s runs on the gateway: %s", batch["batch_id"], exc)
            return False
        except DheeraAIError as exc:
            if exc.status >= 500 or exc.status in (408, 429):
                raise
            if exc.status == 404:  # no Batch API at that address (an OpenAI-compatible server)
                log.info("batch %s runs on the gateway: %s has no Batch API (%s)", batch["batch_id"],
                         deployment.id, exc.message)
                return False
            error = {"code": exc.code or "provider_error", "param": None, "line": None,
                     "message": f"Handing the batch to {deployment.provider} failed: {exc.message}"}
            self._update(batch["batch_id"], {"status": "failed", "failed_at": time.time(),
                                             "errors": {"object": "list", "data": [error]}}, ("validating",))
            return True
        if not self._update(batch["batch_id"], changes, ("validating",)):
            # Cancelled while it was handed on: the provider's batch is cancelled too.
            ids = {"deployment": changes["deployment"], "upstream_id": changes["upstream_id"]}
            self._update(batch["batch_id"], ids, ("cancelling",))
            self.forwarder.cancel(self.batches.get(batch["batch_id"]))
        return True

    def _run_lines(self, batch: dict) -> None:
        """Send every line without a result; return when all are done, or early on cancel, expiry
        or a lost lease (lines in flight finish and are stored first)."""
        batch_id = batch["batch_id"]
        done = set(self.batches.done_lines(batch_id))
        queue: Queue = Queue(maxsize=self.concurrency)
        stopping = threading.Event()
        workers = [threading.Thread(target=self._work, args=(batch, queue, stopping), daemon=True,
                                    name=f"dheera-ai-batch-{i}") for i in range(self.concurrency)]
        for worker in workers:
            worker.start()
        watch = _Watch(self, batch_id, stopping)
        try:
            for number, raw in read_lines(self.files.path(batch["input_file_id"])):
                if number in done:
                    continue
                while not watch.stopped():
                    try:
                        queue.put((number, raw), timeout=0.5)
                        break
                    except Full:
                        continue
                if watch.stopped():
                    break
            done.clear()
        finally:
            for _ in workers:
                while True:
                    try:
                        queue.put(None, timeout=0.5)
                        break
                    except Full:
                        watch.stopped()  # keep the lease while the last lines finish
            for worker in workers:
                while worker.is_alive():
                    worker.join(timeout=0.5)
                    watch.stopped()
        if watch.lost:
            raise LeaseLost(batch_id)

    def _work(self, batch: dict, queue: Queue, stopping: threading.Event) -> None:
        turned = time.monotonic()
        while True:
            try:
                item = queue.get(timeout=1.0)
            except Empty:
                continue
            if item is None:
                return
            number, raw = item
            # Lines answered without waiting (the mock model, cache hits, a fast upstream) never
            # yield: under gevent the worker's calls, and its heartbeat to gunicorn (which kills a
            # worker silent for `timeout`), get a turn every TURN_SECONDS.
            if time.monotonic() - turned > TURN_SECONDS:
                turns.take_turn()
                turned = time.monotonic()
            try:
                self._line(batch, number, raw, stopping)
            except StoreUnavailableError as exc:
                # Unstored, so not done: the line runs again when the batch resumes.
                log.error("batch %s line %d: result not stored: %s", batch["batch_id"], number, exc.message)
            except Exception:
                log.exception("batch %s line %d failed unexpectedly", batch["batch_id"], number)

    def _line(self, batch: dict, number: int, raw: bytes, stopping: threading.Event) -> None:
        custom_id = parse(raw)["custom_id"]
        while True:
            call = None
            try:
                call = self._call(batch, raw)
                reply = self.engine.pipeline.run(call)
                status, body = reply.status, _reply_body(reply)
                ok = 200 <= status < 300
            except RateLimitError as exc:
                # The key's (or the upstream's) limit: wait and send it again, unless the batch stops.
                if stopping.wait(_retry_after(exc)):
                    return
                continue
            except DheeraAIError as exc:
                status, body, ok = exc.status, exc.to_dict(), False
            break
        usage = call.usage if call is not None else None
        request_id = call.call_id if call is not None else ids.call_id()
        self.batches.record_result(batch["batch_id"], number, ok, output_line(request_id, custom_id, status, body),
                                   int(usage.prompt_tokens) if usage else 0,
                                   int(usage.completion_tokens) if usage else 0)

    def _call(self, batch: dict, raw: bytes) -> Call:
        body = parse(raw)["body"]  # parsed anew for each try: the pipeline may change what it is given
        body.pop("stream", None)
        body.pop("stream_options", None)
        gateway_params = {k: body.pop(k) for k in GATEWAY_FIELDS if k in body}
        metadata = gateway_params.get("metadata")
        if metadata is None or isinstance(metadata, dict):
            gateway_params["metadata"] = {**(metadata or {}), "batch_id": batch["batch_id"]}
        return Call(call_id=ids.call_id(), call_type=CALL_TYPES[batch["endpoint"]], model=body.get("model", ""),
                    body=body, gateway_params=gateway_params, principal=self._principal(batch),
                    price_factor=self.price_factor)

    def _principal(self, batch: dict) -> Principal:
        kind = batch["principal_kind"]
        if kind == "master":
            return MASTER
        if kind != "virtual_key":
            return Principal(kind=kind)
        principal = self.auth.principal_of(batch["key_hash"])  # blocked or expired: its AuthenticationError
        if principal is None:
            raise AuthenticationError("The key that created this batch no longer exists.", code="invalid_api_key")
        return principal

    # -- the end ---------------------------------------------------------------------------------

    def _finish(self, batch: dict, status: str) -> None:
        """Write the output and error files from the stored results, then the final status. Run
        again (a kill during it), it writes the same files under the same ids."""
        batch_id = batch["batch_id"]
        unsent = []
        if status == "expired":
            done = set(self.batches.done_lines(batch_id))
            unsent = [number for number, _ in read_lines(self.files.path(batch["input_file_id"]))
                      if number not in done]
        changes = {"status": status, f"{status}_at": time.time()}
        if batch["request_completed"]:
            changes["output_file_id"] = self._write(batch, "output", self._results(batch_id, True))
        if batch["request_failed"] or unsent:
            changes["error_file_id"] = self._write(batch, "errors", self._errors(batch, set(unsent)))
        if unsent:
            changes["request_failed"] = batch["request_failed"] + len(unsent)
        self._update(batch_id, changes, ("in_progress", "finalizing", "cancelling"))

    def _write(self, batch: dict, kind: str, chunks) -> str:
        file_id = derived_file_id(f"{batch['batch_id']}:{kind}")
        self.files.write(file_id, chunks, f"{batch['batch_id']}_{kind}.jsonl", "batch_output", batch["owner"],
                         batch["team_id"])
        return file_id

    def _results(self, batch_id: str, ok: bool):
        for _line, stored_ok, result in self.batches.results(batch_id):
            if bool(stored_ok) == ok:
                yield result.encode()

    def _errors(self, batch: dict, unsent: set):
        yield from self._results(batch["batch_id"], False)
        if unsent:
            for number, raw in read_lines(self.files.path(batch["input_file_id"])):
                if number in unsent:
                    yield output_line(f"{batch['batch_id']}-{number}", parse(raw)["custom_id"], None, None,
                                      {"code": "batch_expired", "message": UNSENT})


class _Watch:
    """Renews the lease while lines run (at most every second) and says when to stop sending:
    the batch was cancelled, its window passed, or its lease was lost."""

    def __init__(self, runner: BatchRunner, batch_id: str, stopping: threading.Event):
        self.runner, self.batch_id, self.stopping = runner, batch_id, stopping
        self.every = min(1.0, runner.lease_seconds / 3)
        self.next = time.monotonic() + self.every
        self.lost = False

    def stopped(self) -> bool:
        if not self.stopping.is_set() and time.monotonic() >= self.next:
            self.next = time.monotonic() + self.every
            try:
                batch = self.runner.batches.renew(self.batch_id, self.runner.name, self.runner.lease_seconds)
            except StoreUnavailableError:
                return False  # lines go on; the next renewal may reach it
            if batch is None:
                self.lost = True
            if batch is None or batch["status"] != "in_progress" or time.time() >= batch["expires_at"]:
                self.stopping.set()
        return self.stopping.is_set()


def _reply_body(reply):
    if reply.body is not None:
        return orjson.loads(reply.body)
    if reply.stream is not None:
        return orjson.loads(b"".join(reply.stream))
    return reply.data


def _retry_after(error: DheeraAIError) -> float:
    try:
        seconds = float(error.headers.get("Retry-After") or error.headers.get("retry-after") or 1.0)
    except ValueError:
        seconds = 1.0
    return min(max(seconds, 0.1), LONGEST_WAIT)
