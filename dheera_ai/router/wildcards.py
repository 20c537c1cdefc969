"""Model names with a `*`, as LiteLLM users write them, and the aliases of model groups.

- `model_name: "*"` with `model: "*"`: a caller's `provider/model` goes to that provider and model,
  with the provider's environment keys (nothing the caller sends picks an address or a key).
- `model_name: "openai/*"` (or `"my-team/*"`) with `model: "openai/*"`: the part the `*` matched
  replaces the `*` of the model; a model without `*` serves every name the pattern matches.
- A configured name always wins over a pattern; among patterns, the longest (most specific) wins.
- `router_settings.model_group_alias`: `{"gpt-4": "gpt-4o"}` or `{"gpt-4": {"model": "gpt-4o",
  "hidden": true}}`; a hidden alias works but is not listed by `/v1/models`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re

from dheera_ai.errors import BadRequestError
from dheera_ai.types import Deployment

RESOLVED_KEPT = 4096  # names matched by patterns whose groups are remembered; past it, made anew


def is_pattern(name: str) -> bool:
    return "*" in name


def _regex(pattern: str) -> re.Pattern:
    return re.compile("(.+)".join(re.escape(part) for part in pattern.split("*")))


def model_allowed(name: str, allowed) -> bool:
    """Whether a key whose `models` are `allowed` may call `name` (`openai/*` allows `openai/gpt-4o`)."""
    return name in allowed or any(is_pattern(a) and _regex(a).fullmatch(name) for a in allowed)


def aliases(settings: dict) -> dict[str, tuple[str, bool]]:
    """`model_group_alias` as alias -> (target group, hidden)."""
    out = {}
    for alias, target in (settings.get("model_group_alias") or {}).items():
        if isinstance(target, dict):
            out[alias] = (target["model"], bool(target.get("hidden")))
        else:
            out[alias] = (target, False)
    return out


class Wildcards:
    """The patterned model groups, and the concrete deployments they make for a name."""

    def __init__(self, groups: dict[str, list[Deployment]], provider_names=()):
        self.patterns = sorted(groups, key=lambda p: (-len(p.replace("*", "")), p))
        self._members = {p: (_regex(p), groups[p]) for p in self.patterns}
        self._providers = frozenset(provider_names)

    def matches(self, name: str) -> bool:
        return any(self._members[p][0].fullmatch(name) for p in self.patterns)

    def resolve(self, name: str) -> list[Deployment] | None:
        """The deployments serving `name` by the most specific pattern it matches, or None."""
        for pattern in self.patterns:
            regex, members = self._members[pattern]
            match = regex.fullmatch(name)
            if match:
                return [self._concrete(d, name, match.groups()) for d in members]
        return None

    def _concrete(self, deployment: Deployment, name: str, parts: tuple) -> Deployment:
        model = deployment.model
        for part in parts:
            model = model.replace("*", part, 1)
        provider = deployment.provider
        if provider == "*":  # model: "*": the caller's name is provider/model
            provider, sep, model = model.partition("/")
            if not sep or provider not in self._providers:
                raise BadRequestError(
                    f"Model '{name}' names no provider this gateway has; write it as provider/model "
                    f"({', '.join(sorted(self._providers))}).", param="model", code="model_not_found")
        if not model:
            raise BadRequestError(f"Model '{name}' names no model.", param="model", code="model_not_found")
        # Stable across workers and restarts, so cooldowns and response ids line up.
        identity = hashlib.sha256(f"{deployment.id}|{name}".encode()).hexdigest()[:16]
        return dataclasses.replace(deployment, id=identity, model_name=name, provider=provider, model=model)
