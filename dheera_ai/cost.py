"""What a call cost: the usage the upstream reported, priced from a table.

The table (dheera_ai/model_prices.yaml, shipped in the package; `general_settings.model_prices_path`
replaces it) is keyed by `provider/model` or a bare model name; a config deployment's
`model_info` overrides any price field (a client's `user_config` never does: its model_info loses
`SERVER_ONLY_INFO` when it is built). An unpriced model costs 0 and is flagged
(`Cost.priced` is False) — never a failed call. No cost is ever negative: prices and quantities
below zero (or not finite) count as zero. A price written as a string (`"1e-06"`, which a YAML
1.1 loader makes of `1e-06`) is read as the number it spells; one that is not a price leaves the
call unpriced, with the reason in `Cost.error`, and priced at the prices that are.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

import orjson
import yaml

from dheera_ai.types import Deployment, Usage

PRICE_FIELDS = ("input_cost_per_token", "output_cost_per_token", "cache_read_input_token_cost",
                "cache_creation_input_token_cost", "output_cost_per_image", "input_cost_per_character",
                "input_cost_per_second", "input_cost_per_query")
# What a deployment's model_info says about money: its prices, the model priced like it, and the
# token bounds a budget hold is estimated with. Only the config may say it, never a client.
SERVER_ONLY_INFO = (*PRICE_FIELDS, "base_model", "max_tokens", "max_input_tokens", "max_output_tokens")
# Price lookups remembered, by what decides them (provider, model, model_info), not by deployment id.
_CACHED_PRICES = 4096
# Package data (setup.cfg), so a checkout and an installed wheel read the same file.
DEFAULT_PRICES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "model_prices.yaml")
# Dated snapshots are priced like their family: gpt-4o-2024-08-06, claude-3-5-sonnet-20241022.
_SNAPSHOT_SUFFIX = re.compile(r"(-\d{4}-\d{2}-\d{2}|-\d{8}|-latest)$")


@dataclass(frozen=True)
class Cost:
    amount: float  # at the prices that could be read (0 when none could)
    priced: bool  # False: no price was known (`amount` is 0), or pricing went wrong (`error` says why)
    error: str | None = None


class PriceTable:
    def __init__(self, entries: dict):
        self._entries = entries
        self._cache: dict[tuple, tuple[dict | None, str | None]] = {}

    @classmethod
    def load(cls, path: str | None = None) -> "PriceTable":
        with open(path or DEFAULT_PRICES, encoding="utf-8") as f:
            entries = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
        if not isinstance(entries, dict):
            raise ValueError(f"{path or DEFAULT_PRICES}: a price table is a mapping of model -> prices")
        return cls(entries)

    def forget(self) -> None:
        """Drop the per-deployment prices: deployments changed (a model added or updated live)."""
        self._cache = {}

    def prices_for(self, deployment: Deployment) -> dict | None:
        """The deployment's prices (table entry under its model_info overrides), or None."""
        return self._prices(deployment)[0]

    def _prices(self, deployment: Deployment) -> tuple[dict | None, str | None]:
        """(the prices that could be read, or None; what was wrong with the others, or None)."""
        overrides = {k: deployment.model_info[k] for k in PRICE_FIELDS if k in deployment.model_info}
        # Keyed by content: two deployments with one id (`user-config-0` of two requests) may differ.
        key = (deployment.provider, deployment.model, deployment.model_info.get("base_model"),
               orjson.dumps(overrides, option=orjson.OPT_SORT_KEYS) if overrides else b"")
        if key in self._cache:
            return self._cache[key]
        # A model missing from the table may still be priced by its model_info alone.
        base = self._lookup(deployment) or {}
        merged = {**base, **overrides} if isinstance(base, dict) else overrides
        prices = _numbers(merged) if merged else (None, None)
        if len(self._cache) < _CACHED_PRICES:
            self._cache[key] = prices
        return prices

    def prices_for_answer(self, deployment: Deployment, model: str) -> dict | None:
        """Prices of the model an answer names, for a deployment whose own name has none."""
        key = ("answer", deployment.provider, model)
        if key not in self._cache:
            if len(self._cache) >= _CACHED_PRICES:
                return self._lookup(deployment, [model])
            self._cache[key] = self._lookup(deployment, [model])
        return self._cache[key]

    def _lookup(self, deployment: Deployment, names=None) -> dict | None:
        names = names or [deployment.model, deployment.model_info.get("base_model")]
        candidates = []
        for name in filter(None, names):
            short = name.rsplit("/", 1)[-1]  # azure/responses/<d>, dheera_ai_proxy/openai/<m>
            for variant in dict.fromkeys((name, short, _SNAPSHOT_SUFFIX.sub("", short))):
                candidates += [f"{deployment.provider}/{variant}", variant]
        candidates.append(f"{deployment.provider}/*")
        for key in candidates:
            if key in self._entries:
                return self._entries[key]
        return None

    def cost(self, deployment: Deployment, usage: Usage | None, request: dict | None = None) -> Cost:
        prices, problem = self._prices(deployment)
        # Not for a client's deployment: its upstream, which the client chose, names the model.
        if prices is None and usage is not None and usage.model and not deployment.from_client:
            prices = self.prices_for_answer(deployment, usage.model)
        if prices is None:
            return Cost(0.0, False, problem)
        try:
            amount = price_usage(usage, prices, request or {})
        except (TypeError, ValueError, AttributeError) as exc:  # usage details of an unexpected shape
            return Cost(0.0, False, f"pricing the usage failed: {type(exc).__name__}: {exc}")
        return Cost(amount, problem is None, problem)


def _numbers(prices: dict) -> tuple[dict, str | None]:
    """The price fields as numbers, and what was wrong with those that are not prices."""
    readable, problems = {}, []
    for field, value in prices.items():
        if field not in PRICE_FIELDS:
            readable[field] = value  # not a price (the table's mode, max tokens, ...)
            continue
        try:
            if field == "output_cost_per_image" and isinstance(value, dict):
                readable[field] = {size: _price(v) for size, v in value.items()}
            else:
                readable[field] = _price(value)
        except ValueError as exc:
            problems.append(f"{field}: {exc}")
    return readable, "; ".join(problems) or None


def _price(value) -> float:
    """A price in dollars from a number or a string spelling one; ValueError for anything else."""
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise ValueError(f"not a number: {value!r}") from None
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    else:
        raise ValueError(f"not a number: {value!r}")
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"not a price: {value!r}")
    return number


def price_usage(usage: Usage | None, prices: dict, request: dict) -> float:
    """Dollars for `usage` at `prices`; `request` gives what image prices depend on (size, quality)."""
    if usage is None:
        return 0.0
    details = usage.details
    input_price = _amount(prices.get("input_cost_per_token"))
    prompt = _amount(usage.prompt_tokens)
    cached = min(_amount(_cached_tokens(details)), prompt)  # parts of the prompt, never more than it
    created = min(_amount(details.get("cache_creation_input_tokens")), prompt - cached)
    uncached = prompt - cached - created
    total = (uncached * input_price
             + cached * _amount(prices.get("cache_read_input_token_cost", input_price))
             + created * _amount(prices.get("cache_creation_input_token_cost", input_price))
             + _amount(usage.completion_tokens) * _amount(prices.get("output_cost_per_token")))
    if details.get("images") and prices.get("output_cost_per_image") is not None:
        total += _amount(details["images"]) * _image_price(prices["output_cost_per_image"], request)
    total += _amount(details.get("characters")) * _amount(prices.get("input_cost_per_character"))
    total += _amount(details.get("audio_seconds")) * _amount(prices.get("input_cost_per_second"))
    total += _amount(details.get("search_units")) * _amount(prices.get("input_cost_per_query"))
    return total if math.isfinite(total) else 0.0


def _amount(value) -> float:
    """A price or a quantity as a number that can only add: anything else (negative, NaN, a
    string an upstream sent) is 0. Usage comes from upstreams, which a client may choose."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0.0
    value = float(value)
    return value if math.isfinite(value) and value > 0 else 0.0


def _cached_tokens(details: dict):
    prompt_details = details.get("prompt_tokens_details") or details.get("input_tokens_details") or {}
    cached = prompt_details.get("cached_tokens") if isinstance(prompt_details, dict) else None
    if cached is None:
        cached = details.get("cache_read_input_tokens")
    return cached


def _image_price(price, request: dict) -> float:
    if not isinstance(price, dict):
        return _amount(price)
    size = request.get("size") or "1024x1024"
    quality = request.get("quality") or "standard"
    for key in (f"{size}/{quality}", size, "default"):
        if key in price:
            return _amount(price[key])
    return 0.0


def price_problem(name: str, value) -> str | None:
    """Why a configured price cannot be used (None if it can): prices are non-negative numbers,
    and `output_cost_per_image` may map sizes/qualities to them."""
    values = value.values() if name == "output_cost_per_image" and isinstance(value, dict) else [value]
    for item in values:
        if isinstance(item, bool) or not isinstance(item, (int, float)) or not math.isfinite(item) or item < 0:
            return f"must be a non-negative number, not {item!r}"
    return None
