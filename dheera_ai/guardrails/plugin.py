"""The guardrails plugin: runs the configured guardrails in their phases. Registered by the engine
only when the config has a `guardrails:` section, so a gateway without them pays nothing.

- **pre_call** (the last pre-call hook, so it sees the request as it will be sent): reads the
  request's text; blocks, masks it in place, or logs.
- **during_call**: starts beside the upstream call (a thread: a greenlet under gunicorn's gevent
  worker) and is waited for before the answer's first byte goes out; a block closes the
  upstream connection and refuses the call.
- **post_call**: checks the answer; a streamed chat or text completion through a sliding window
  (`dheera_ai.guardrails.text.StreamText`) that holds back only the last few characters, so a
  term split across chunks is still masked or stopped.

Which guardrails a call gets: those `default_on`, those the key's or team's metadata lists
(`guardrails: [...]`), and those the request names (`guardrails: ["name"]` or
`{"name": true | false | {overrides}}`). A client may turn one off (or override it) unless the
guardrail, the key or the team says `allow_client_opt_out: false`.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import re
import threading

import orjson

from dheera_ai.errors import (
    BadRequestError,
    DheeraAIError,
    GuardrailViolationError,
    PermissionDeniedError,
    ServiceUnavailableError,
)
from dheera_ai.guardrails import Finding
from dheera_ai.guardrails.config import build_one
from dheera_ai.guardrails.text import (
    StreamText,
    answer_slots,
    choice_pieces,
    event_json,
    replaced,
    request_slots,
    sse_events,
)
from dheera_ai.plugin_manager import hookimpl

log = logging.getLogger("dheera_ai.guardrails")

STREAMED_TEXT_CALLS = ("chat_completions", "completions")
OVERRIDE_CACHE = 256  # guardrails built from a request's overrides, kept for reuse


class CallGuards:
    """One call's guardrails: which are on, what each did, the masked values to put back."""

    def __init__(self, call, active):
        self.call = call
        self.active = active
        self.masked: dict[str, str] = {}  # numbered placeholder -> the original text (unmask)
        self.during = None  # (thread, result) of the during_call checks

    def outcome(self, guardrail, phase, result, items=0, entities=(), error=None) -> None:
        entry = {"guardrail": guardrail.name, "phase": phase, "result": result}
        if items:
            entry["items"] = items
        if entities:
            entry["entities"] = sorted(set(entities))
        if error:
            entry["error"] = error
        self.call.guardrails.append(entry)


class GuardrailsPlugin:
    def __init__(self, guardrails, kinds, pipeline):
        self.by_name = {g.name: g for g in guardrails}
        self.default_on = tuple(g for g in guardrails if g.default_on)
        self.kinds = kinds
        self.pipeline = pipeline
        self._internal: set[str] = set()
        self._overridden: collections.OrderedDict = collections.OrderedDict()
        self._lock = threading.Lock()
        for guardrail in guardrails:
            guardrail.gateway = self

    def run(self, call):
        """Carry out a guardrail's own call (a moderation check) through this gateway's router,
        without guardrails of its own."""
        self._internal.add(call.call_id)
        try:
            return self.pipeline.run(call)
        finally:
            self._internal.discard(call.call_id)

    # -- which guardrails ------------------------------------------------------------------------

    def _active(self, call) -> list:
        principal = call.principal
        policy, locked = [], False
        for metadata in (getattr(principal, "metadata", None), getattr(principal, "team_metadata", None)):
            if isinstance(metadata, dict):
                names = metadata.get("guardrails") or []
                policy += [n for n in names if isinstance(n, str)] if isinstance(names, list) else []
                locked = locked or metadata.get("allow_client_opt_out") is False
        chosen = {g.name: g for g in self.default_on}
        for name in policy:
            if name in self.by_name:  # a name the config no longer has is ignored, not a failed call
                chosen[name] = self.by_name[name]
        requested = call.gateway_params.get("guardrails")
        if requested is None:
            return list(chosen.values())
        if isinstance(requested, list):
            requested = dict.fromkeys(requested, True)
        if not isinstance(requested, dict) or not all(isinstance(n, str) for n in requested):
            raise BadRequestError("'guardrails' must be a list of guardrail names or an object of "
                                  "{name: true | false | {overrides}}.", param="guardrails")
        for name, wish in requested.items():
            guardrail = self.by_name.get(name)
            if guardrail is None:
                raise BadRequestError(f"Unknown guardrail '{name}'; this gateway has: "
                                      f"{', '.join(sorted(self.by_name)) or 'none'}.", param="guardrails",
                                      code="unknown_guardrail")
            if wish is True:
                chosen[name] = guardrail
                continue
            if wish is not False and not isinstance(wish, dict):
                raise BadRequestError(f"'guardrails.{name}' must be true, false or an object of overrides.",
                                      param="guardrails")
            if name in chosen and (locked or not guardrail.allow_client_opt_out):
                raise PermissionDeniedError(f"Guardrail '{name}' cannot be turned off or changed by this caller.",
                                            param="guardrails", code="guardrail_opt_out_refused")
            if wish is False:
                chosen.pop(name, None)
            else:
                chosen[name] = self._with_overrides(guardrail, wish)
        return list(chosen.values())

    def _with_overrides(self, guardrail, overrides: dict):
        key = (guardrail.name, orjson.dumps(overrides, option=orjson.OPT_SORT_KEYS))
        with self._lock:
            built = self._overridden.get(key)
            if built is not None:
                self._overridden.move_to_end(key)
                return built
        params = {**guardrail.source_params, **overrides}
        try:
            built = build_one(guardrail.name, params, self.kinds)
        except ValueError as e:
            raise BadRequestError(f"guardrails.{guardrail.name}.{e}", param="guardrails") from None
        built.source_params = params
        built.gateway = self
        with self._lock:
            self._overridden[key] = built
            while len(self._overridden) > OVERRIDE_CACHE:
                self._overridden.popitem(last=False)
        return built

    # -- the phases ------------------------------------------------------------------------------

    @hookimpl(trylast=True)
    def dheera_ai_pre_call(self, call, settings):
        if call.call_id in self._internal or (call.principal is not None and call.principal.kind == "cache"):
            return  # a check's own call, or the response cache's embedding of a prompt already checked
        active = self._active(call)
        if not active:
            return
        guards = CallGuards(call, active)
        call.guardrail_state = guards
        call.response_headers["x-dheera-ai-applied-guardrails"] = ",".join(g.name for g in active)
        slots = request_slots(call.body)
        for guardrail in active:
            if "pre_call" in guardrail.modes:
                self._apply(guardrail, "pre_call", slots, guards)
        during = [g for g in active if "during_call" in g.modes]
        if during:
            texts = [slot.get() for slot in slots]  # as sent: after pre_call's masking
            result: dict = {}
            thread = threading.Thread(target=self._during, args=(during, texts, guards, result), daemon=True,
                                      name=f"guardrails-{call.call_id}")
            thread.start()
            guards.during = (thread, result, max(g.timeout for g in during))

    def _during(self, guardrails, texts, guards, result) -> None:
        slots = [_Text(t) for t in texts]
        for guardrail in guardrails:
            try:
                self._apply(guardrail, "during_call", slots, guards)
            except DheeraAIError as error:
                result["error"] = error
                return

    @hookimpl
    def dheera_ai_check_reply(self, call, reply):
        guards = call.guardrail_state
        if guards is None:
            return
        if guards.during is not None:
            self._await_during(guards, reply)
        post = [g for g in guards.active if "post_call" in g.modes]
        if not post and not guards.masked:
            return
        if reply.stream is None:
            self._check_answer(reply, post, guards)
        elif reply.content_type.startswith("text/event-stream") and call.call_type in STREAMED_TEXT_CALLS:
            reply.stream = self._guarded_stream(reply.stream, post, guards)
        else:
            for guardrail in post:
                guards.outcome(guardrail, "post_call", "not_checked", error="this stream's format is not checked")

    def _await_during(self, guards, reply) -> None:
        thread, result, timeout = guards.during
        thread.join(timeout)
        error = result.get("error")
        if thread.is_alive():
            for guardrail in guards.active:
                if "during_call" in guardrail.modes and guardrail.fail_closed:
                    error = ServiceUnavailableError(f"Guardrail '{guardrail.name}' did not finish its check in "
                                                    f"{guardrail.timeout:g} s.", code="guardrail_unavailable")
            log.warning("call %s: during_call guardrails still running after %.1f s; %s", guards.call.call_id,
                        timeout, "refused" if error else "answer sent unchecked")
        if error is not None:
            close = getattr(reply.stream, "close", None)
            if close is not None:
                close()  # closes the upstream connection before any byte reached the client
            raise error

    def _check_answer(self, reply, post, guards) -> None:
        if not reply.content_type.startswith("application/json"):
            return
        document = orjson.loads(reply.body) if reply.body is not None else reply.data
        slots = answer_slots(document)
        for guardrail in post:
            self._apply(guardrail, "post_call", slots, guards)
        if guards.masked:
            unmask = self._unmasker(guards)
            for slot in slots:
                slot.set(replaced(slot.get(), unmask(slot.get()), None))
        reply.body, reply.data = orjson.dumps(document), None

    def _apply(self, guardrail, phase, slots, guards) -> None:
        """Run one guardrail over `slots`: record what it did; mask in place or raise to block."""
        texts = [slot.get() for slot in slots]
        try:
            findings = guardrail.inspect(texts, guards.call)
        except Exception as exc:  # noqa: BLE001 - a failing check is reported, never a 500
            message = exc.message if isinstance(exc, DheeraAIError) else f"{type(exc).__name__}"
            guards.outcome(guardrail, phase, "error", error=message)
            log.warning("call %s: guardrail %s failed in %s: %s", guards.call.call_id, guardrail.name, phase, message)
            if guardrail.fail_closed:
                raise ServiceUnavailableError(f"Guardrail '{guardrail.name}' could not check the call.",
                                              code="guardrail_unavailable") from None
            return
        if not findings:
            guards.outcome(guardrail, phase, "passed")
            return
        entities = [f.entity for f in findings]
        maskable = all(f.start is not None for f in findings) and phase != "during_call"
        if guardrail.action == "log":
            guards.outcome(guardrail, phase, "flagged", len(findings), entities)
        elif guardrail.action == "mask" and maskable:
            by_text = collections.defaultdict(list)
            for finding in findings:
                by_text[finding.index].append(finding)
            placeholder = self._placeholder(guardrail, guards, texts)
            for index, found in by_text.items():
                slots[index].set(replaced(texts[index], found, placeholder))
            guards.outcome(guardrail, phase, "masked", len(findings), entities)
        else:
            guards.outcome(guardrail, phase, "blocked", len(findings), entities)
            raise violation(guardrail, phase, entities)

    @staticmethod
    def _placeholder(guardrail, guards, texts):
        if not guardrail.unmask:
            return lambda finding: guardrail.placeholder(finding.entity)

        def numbered(finding):
            original = texts[finding.index][finding.start:finding.end]
            for placeholder, value in guards.masked.items():  # the same value keeps its placeholder
                if value == original:
                    return placeholder
            placeholder = f"<{finding.entity}_{len(guards.masked) + 1}>"
            guards.masked[placeholder] = original
            return placeholder
        return numbered

    @staticmethod
    def _unmasker(guards):
        pattern = re.compile("|".join(re.escape(p) for p in sorted(guards.masked, key=len, reverse=True)))

        def unmask(text):
            return [Finding("UNMASK", 0, m.start(), m.end(), replacement=guards.masked[m.group(0)])
                    for m in pattern.finditer(text)]
        return unmask

    # -- streams ---------------------------------------------------------------------------------

    def _guarded_stream(self, upstream, post, guards):
        local = [g for g in post if not g.remote]
        remote = [g for g in post if g.remote]
        unmask = self._unmasker(guards) if guards.masked else None
        counts = {g.name: collections.Counter() for g in local}
        window = max([g.window for g in local] + [max(map(len, guards.masked), default=0) + 1])
        # The word bound holds only if every check has one (a placeholder to put back is one word).
        words = [g.window_words for g in local]
        window_words = max(words + [1]) if all(w is not None for w in words) else None

        def check(text):
            found = []
            for guardrail in local:
                for f in guardrail.inspect([text], guards.call):
                    if guardrail.action == "block" or f.start is None:
                        guards.outcome(guardrail, "post_call", "blocked", 1, [f.entity])
                        raise violation(guardrail, "post_call", [f.entity])
                    keep = text[f.start:f.end] if guardrail.action == "log" else guardrail.placeholder(f.entity)
                    found.append(dataclasses.replace(f, replacement=keep, entity=f"{guardrail.name}\0{f.entity}"))
            if unmask is not None:
                found += unmask(text)
            return _without_overlaps(found)

        def sent(findings):
            for f in findings:
                if "\0" in f.entity:
                    name, entity = f.entity.split("\0", 1)
                    counts[name][entity] += 1

        text = StreamText(window, check, on_sent=sent, window_words=window_words)
        whole = []
        try:
            for event in sse_events(upstream):
                chunk = event_json(event)
                if chunk is None:
                    if event.strip() == b"data: [DONE]":
                        for index, rest in text.drain():
                            yield _text_chunk(index, rest)
                    yield event + b"\n\n"
                    continue
                for choice, holder, field in choice_pieces(chunk):
                    if remote:
                        whole.append(holder[field])
                    piece = text.feed(choice.get("index", 0), holder[field])
                    if choice.get("finish_reason"):
                        piece += text.flush(choice.get("index", 0))
                    holder[field] = piece
                for choice in chunk.get("choices") or ():
                    if isinstance(choice, dict) and choice.get("finish_reason") and text.has(choice.get("index", 0)):
                        holder = choice.setdefault("delta", {}) if "delta" in choice else choice
                        key = "content" if "delta" in choice else "text"
                        holder[key] = (holder.get(key) or "") + text.flush(choice.get("index", 0))
                yield b"data: " + orjson.dumps(chunk) + b"\n\n"
            for index, rest in text.drain():
                yield _text_chunk(index, rest)
        finally:
            close = getattr(upstream, "close", None)
            if close is not None:
                close()
        for guardrail in local:
            found = counts[guardrail.name]
            if not found:
                guards.outcome(guardrail, "post_call", "passed")
            else:
                result = "flagged" if guardrail.action == "log" else "masked"
                guards.outcome(guardrail, "post_call", result, sum(found.values()), list(found))
        if remote:
            self._apply_all(remote, "post_call", ["".join(whole)], guards)

    def _apply_all(self, guardrails, phase, texts, guards) -> None:
        slots = [_Text(t) for t in texts]
        for guardrail in guardrails:
            self._apply(guardrail, phase, slots, guards)


class _Text:
    """A text that is checked but never sent on (during_call sees a copy; a finished stream's text)."""

    def __init__(self, text):
        self.text = text

    def get(self):
        return self.text

    def set(self, value):
        self.text = value


def violation(guardrail, phase, entities) -> GuardrailViolationError:
    counts = collections.Counter(entities)
    found = ", ".join(f"{n} {entity}" if n > 1 else entity for entity, n in sorted(counts.items()))
    return GuardrailViolationError(f"Blocked by guardrail '{guardrail.name}' ({phase}): found {found}.",
                                   guardrail=guardrail.name, param="guardrails")


def _without_overlaps(findings):
    kept, covered = [], -1
    for f in sorted(findings, key=lambda f: (f.start, -(f.end - f.start))):
        if f.start >= covered:
            kept.append(f)
            covered = f.end
    return kept


def _text_chunk(index, text: str) -> bytes:
    """A chat chunk carrying text held back until the stream's end (an upstream that sent no
    finish chunk to put it in)."""
    return b"data: " + orjson.dumps({"object": "chat.completion.chunk", "choices": [
        {"index": index, "delta": {"content": text}, "finish_reason": None}]}) + b"\n\n"
