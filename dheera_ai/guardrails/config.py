"""The config's `guardrails:` list, as LiteLLM users write it, built into guardrail instances.

    guardrails:
      - guardrail_name: pii-mask
        dheera_ai_params:            # or litellm_params
          guardrail: pii             # a registered kind
          mode: [pre_call, post_call]
          default_on: true
          action: mask               # block | mask | log
          entities: [EMAIL_ADDRESS, CREDIT_CARD]

Every problem names its path (`guardrails[0].dheera_ai_params.mode: ...`) and stops start-up.
"""

from __future__ import annotations

from dheera_ai.guardrails import ACTIONS, PHASES, Guardrail, GuardrailKinds

# What every guardrail entry may say; anything else is the kind's own parameter.
COMMON = ("guardrail", "mode", "default_on", "action", "fail_closed", "timeout", "allow_client_opt_out",
          "unmask", "output_parse_pii", "stream_window")
DEFAULT_TIMEOUT = 5.0  # seconds a during_call or service-backed check may take before it is skipped


def build_guardrails(raw, kinds: GuardrailKinds) -> tuple[list[Guardrail], list[str]]:
    """The instances the config's `guardrails:` section names, and the problems found."""
    if raw is None:
        return [], []
    if not isinstance(raw, list):
        return [], ["guardrails: must be a list of {guardrail_name, dheera_ai_params} entries"]
    built, problems, names = [], [], set()
    for index, entry in enumerate(raw):
        where = f"guardrails[{index}]"
        if not isinstance(entry, dict):
            problems.append(f"{where}: must be a mapping")
            continue
        name = entry.get("guardrail_name")
        block = "dheera_ai_params" if "dheera_ai_params" in entry else "litellm_params"
        params = entry.get(block)
        if not isinstance(name, str) or not name:
            problems.append(f"{where}.guardrail_name: required, a string")
            continue
        if name in names:
            problems.append(f"{where}.guardrail_name: '{name}' is used twice")
            continue
        names.add(name)
        if not isinstance(params, dict):
            problems.append(f"{where}.{block}: required, a mapping")
            continue
        try:
            built.append(build_one(name, params, kinds))
        except ValueError as e:
            problems.append(f"{where}.{block}.{e}")
    return built, problems


def build_one(name: str, params: dict, kinds: GuardrailKinds) -> Guardrail:
    """One instance; raises ValueError('param: problem')."""
    kind_name = params.get("guardrail")
    kind = kinds.get(kind_name) if isinstance(kind_name, str) else None
    if kind is None:
        raise ValueError(f"guardrail: unknown guardrail kind {kind_name!r}; known: {', '.join(kinds.names())}")
    guardrail = kind(name, {k: v for k, v in params.items() if k not in COMMON})
    guardrail.kind = kind_name
    guardrail.source_params = dict(params)  # what a request's overrides are merged into
    guardrail.modes = _modes(params.get("mode", list(kind.default_modes)))
    guardrail.action = params.get("action", kind.default_action)
    if guardrail.action not in ACTIONS:
        raise ValueError(f"action: must be one of {', '.join(ACTIONS)}, not {guardrail.action!r}")
    if guardrail.action == "mask" and guardrail.modes == ("during_call",):
        raise ValueError("action: a during_call check runs beside the upstream call and cannot mask; "
                         "use pre_call to mask, or block / log")
    guardrail.default_on = _flag(params, "default_on", False)
    guardrail.fail_closed = _flag(params, "fail_closed", False)
    guardrail.allow_client_opt_out = _flag(params, "allow_client_opt_out", True)
    # LiteLLM's name for putting the masked values back into the answer.
    guardrail.unmask = _flag(params, "unmask", False) or _flag(params, "output_parse_pii", False)
    timeout = params.get("timeout", DEFAULT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ValueError(f"timeout: must be a positive number of seconds, not {timeout!r}")
    guardrail.timeout = float(timeout)
    window = params.get("stream_window", guardrail.window)
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"stream_window: a positive number of characters, not {window!r}")
    guardrail.window = window
    return guardrail


def _modes(value) -> tuple:
    modes = [value] if isinstance(value, str) else value
    if not isinstance(modes, list) or not modes or not all(isinstance(m, str) for m in modes):
        raise ValueError(f"mode: must be one of {', '.join(PHASES)} or a list of them")
    for mode in modes:
        if mode not in PHASES:
            raise ValueError(f"mode: unknown phase {mode!r}; known: {', '.join(PHASES)}")
    return tuple(p for p in PHASES if p in modes)


def _flag(params: dict, name: str, default: bool) -> bool:
    value = params.get(name, default)
    if not isinstance(value, bool):
        raise ValueError(f"{name}: must be true or false, not {value!r}")
    return value
