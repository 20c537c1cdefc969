"""Guardrails: checks on what a call sends to a model and on what comes back.

A guardrail *kind* (`pii`, `secrets`, ..., or a plugin's) is a `Guardrail` subclass; the config's
`guardrails:` list names instances of kinds with their parameters. Plugins add kinds through the
`dheera_ai_register_guardrails` hook. Each instance finds `Finding`s in a list of texts; its
`action` decides what a finding does: `block` refuses the call, `mask` replaces what was found
(`<EMAIL_ADDRESS>`), `log` only records it. The phases (`pre_call`, `during_call`, `post_call`)
are run by `dheera_ai.guardrails.plugin`.
"""

from __future__ import annotations

from dataclasses import dataclass

PHASES = ("pre_call", "during_call", "post_call")
ACTIONS = ("block", "mask", "log")


@dataclass(frozen=True)
class Finding:
    """Something a guardrail found in `texts[index]`.

    `start`/`end` is its span; None means the text as a whole (a moderation flag, a token count),
    which can be blocked or logged but not masked. `replacement` is what masking puts in its place
    (None: the guardrail's placeholder for `entity`)."""

    entity: str
    index: int = 0
    start: int | None = None
    end: int | None = None
    replacement: str | None = None


class Guardrail:
    """One configured guardrail. Subclasses implement `inspect` and may set the class defaults.

    `params` are the entry's `dheera_ai_params` less the common ones (`guardrail`, `mode`,
    `default_on`, `action`, ...); a subclass reads its own in `__init__` and raises
    `ValueError("param: problem")` for a bad one, which stops start-up naming it.
    """

    default_action = "block"
    default_modes: tuple = ("pre_call",)
    # Characters one finding can span: how much of a streamed answer post_call holds back so that
    # a term split across chunks is still caught.
    window = 64
    # Words (runs without white space) one finding can span, when that bound is known: the
    # window then ends at whichever releases more text, so ordinary prose is held back less.
    window_words: int | None = None
    # True for checks that call a service: on a streamed answer they run once, on the whole text.
    remote = False

    def __init__(self, name: str, params: dict):
        self.name = name
        self.params = params
        # Set at start-up: `gateway.run(call)` carries out a check's own call (a moderation
        # model) through this gateway's router, without guardrails of its own.
        self.gateway = None

    def inspect(self, texts: list[str], call) -> list[Finding]:
        """What this guardrail finds in `texts` (the request's or the answer's strings)."""
        raise NotImplementedError

    def placeholder(self, entity: str) -> str:
        return f"<{entity}>"


class GuardrailKinds:
    """The registry of guardrail kinds, filled once at start-up by `dheera_ai_register_guardrails`."""

    def __init__(self):
        self._kinds: dict[str, type] = {}

    def register(self, name: str, kind: type) -> None:
        if name in self._kinds:
            raise ValueError(f"guardrail kind {name!r} registered twice")
        if not (isinstance(kind, type) and issubclass(kind, Guardrail)):
            raise TypeError(f"guardrail kind {name!r} must be a dheera_ai.guardrails.Guardrail subclass")
        self._kinds[name] = kind

    def get(self, name: str) -> type | None:
        return self._kinds.get(name)

    def names(self) -> list[str]:
        return sorted(self._kinds)
