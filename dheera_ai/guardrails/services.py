"""Built-in guardrail kinds that ask a service: `moderation` (a `/moderations` model group of this
gateway, through its own router) and `presidio` (Microsoft Presidio's analyzer, as LiteLLM uses it).

A service that fails or is slower than the guardrail's `timeout` is skipped with a warning
(outcome `error` on the spend row), unless the guardrail says `fail_closed: true`.
"""

from __future__ import annotations

import os

import orjson

from dheera_ai import http, ids
from dheera_ai.errors import ServiceUnavailableError
from dheera_ai.guardrails import Finding, Guardrail
from dheera_ai.types import Call, Principal


class ModerationGuardrail(Guardrail):
    """`moderation`: `model: <a model group serving /moderations>`; blocks a text the model flags
    (any category, or only those in `categories`)."""

    default_action = "block"
    default_modes = ("pre_call",)
    remote = True

    def __init__(self, name, params):
        super().__init__(name, params)
        self.model = params.get("model")
        if not isinstance(self.model, str) or not self.model:
            raise ValueError("model: the model group that answers /moderations (required)")
        categories = params.get("categories")
        if categories is not None and (not isinstance(categories, list)
                                       or not all(isinstance(c, str) for c in categories)):
            raise ValueError("categories: a list of category names")
        self.categories = set(categories) if categories else None

    def inspect(self, texts, call):
        if not texts:
            return []
        # The check is the gateway's own call, billed to the caller's key but not limited by it
        # (the caller may not be allowed the moderation group itself).
        checker = Principal.acting_for(call.principal, "guardrail")
        check = Call(call_id=ids.call_id(), call_type="moderations", model=self.model,
                     body={"model": self.model, "input": list(texts)}, principal=checker,
                     gateway_params={"tags": [f"guardrail:{self.name}"]})  # as a request gives them
        reply = self.gateway.run(check)
        answer = orjson.loads(reply.body) if reply.body is not None else reply.data
        found = []
        for index, result in enumerate(answer.get("results") or ()):
            flagged = [c for c, on in (result.get("categories") or {}).items() if on]
            if self.categories is not None:
                flagged = [c for c in flagged if c in self.categories]
            elif not flagged and result.get("flagged"):
                flagged = ["flagged"]
            found += [Finding(f"MODERATION:{category}", index) for category in flagged]
        return found


class PresidioGuardrail(Guardrail):
    """`presidio`: the analyzer at `presidio_analyzer_api_base` (or PRESIDIO_ANALYZER_API_BASE)
    finds the entities; masking writes Presidio's own default, `<ENTITY_TYPE>`. Optional
    `entities`, `language` (en), `score_threshold`."""

    default_action = "mask"
    default_modes = ("pre_call",)
    remote = True

    def __init__(self, name, params):
        super().__init__(name, params)
        base = params.get("presidio_analyzer_api_base") or os.environ.get("PRESIDIO_ANALYZER_API_BASE")
        if not isinstance(base, str) or not base.startswith(("http://", "https://")):
            raise ValueError("presidio_analyzer_api_base: the analyzer's http(s) address "
                             "(or set PRESIDIO_ANALYZER_API_BASE)")
        self.analyze_url = base.rstrip("/") + "/analyze"
        self.language = params.get("language", "en")
        self.entities = params.get("entities")
        if self.entities is not None and (not isinstance(self.entities, list)
                                          or not all(isinstance(e, str) for e in self.entities)):
            raise ValueError("entities: a list of Presidio entity types")
        threshold = params.get("score_threshold", 0.0)
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
            raise ValueError(f"score_threshold: a number from 0 to 1, not {threshold!r}")
        self.threshold = float(threshold)

    def inspect(self, texts, call):
        found = []
        for index, text in enumerate(texts):
            if not text.strip():
                continue
            request = {"text": text, "language": self.language}
            if self.entities:
                request["entities"] = self.entities
            try:
                response = http.session().post(self.analyze_url, json=request, timeout=self.timeout)
            except Exception as exc:  # noqa: BLE001 - any transport failure is the service's
                raise ServiceUnavailableError(f"guardrail '{self.name}': Presidio analyzer unreachable "
                                              f"({type(exc).__name__})") from None
            if response.status_code != 200:
                raise ServiceUnavailableError(f"guardrail '{self.name}': Presidio analyzer answered "
                                              f"{response.status_code}")
            try:
                results = response.json()
            except ValueError:
                raise ServiceUnavailableError(f"guardrail '{self.name}': Presidio analyzer answered no JSON") from None
            for result in results if isinstance(results, list) else ():
                try:
                    start, end, score = int(result["start"]), int(result["end"]), float(result.get("score", 1))
                    entity = str(result["entity_type"])
                except (KeyError, TypeError, ValueError):
                    continue
                if score >= self.threshold and 0 <= start < end <= len(text):
                    found.append(Finding(entity, index, start, end))
        return _without_overlaps(found)


def _without_overlaps(findings):
    kept, covered = [], {}
    for f in sorted(findings, key=lambda f: (f.index, f.start, -(f.end - f.start))):
        if f.start >= covered.get(f.index, -1):
            kept.append(f)
            covered[f.index] = f.end
    return kept

