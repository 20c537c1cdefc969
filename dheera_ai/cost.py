"""What a call cost: the usage the upstream reported, priced from a table.

The table (dheera_ai/model_prices.yaml, shipped in the package; `general_settings.model_prices_path`
replaces it) is keyed by `provider/model` or a bare model name; a deployment's `model_info`
overrides any price field. An unpriced model costs 0 and is flagged
(`Cost.priced` is False) — never a failed call.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import yaml

from dheera_ai.types import Deployment, Usage

PRICE_FIELDS = ("input_cost_per_token", "output_cost_per_token", "cache_read_input_token_cost",
                "cache_creation_input_token_cost", "output_cost_per_image", "input_cost_per_character",
                "input_cost_per_second", "input_cost_per_query")
# Package data (setup.cfg), so a checkout and an installed wheel read the same file.
DEFAULT_PRICES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "model_prices.yaml")
# Dated snapshots are priced like their family: gpt-4o-2024-08-06, claude-3-5-sonnet-20241022.
_SNAPSHOT_SUFFIX = re.compile(r"(-\d{4}-\d{2}-\d{2}|-\d{8}|-latest)$")


@dataclass(frozen=True)
class Cost:
    amount: float
    priced: bool  # False: no price was known, so `amount` is 0


class PriceTable:
    def __init__(self, entries: dict):
        self._entries = entries
        self._by_deployment: dict[str, dict | None] = {}

    @classmethod
    def load(cls, path: str | None = None) -> "PriceTable":
        with open(path or DEFAULT_PRICES, encoding="utf-8") as f:
            entries = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
        if not isinstance(entries, dict):
            raise ValueError(f"{path or DEFAULT_PRICES}: a price table is a mapping of model -> prices")
        return cls(entries)

    def forget(self) -> None:
        """Drop the per-deployment prices: deployments changed (a model added or updated live)."""
        self._by_deployment = {}

    def prices_for(self, deployment: Deployment) -> dict | None:
        """The deployment's prices (table entry under its model_info overrides), or None."""
        if deployment.id not in self._by_deployment:
            base = self._lookup(deployment)
            overrides = {k: deployment.model_info[k] for k in PRICE_FIELDS if k in deployment.model_info}
            self._by_deployment[deployment.id] = {**base, **overrides} if (base or overrides) else None
        return self._by_deployment[deployment.id]

    def prices_for_answer(self, deployment: Deployment, model: str) -> dict | None:
        """Prices of the model an answer names, for a deployment whose own name has none."""
        key = f"{deployment.id}|{model}"
        if key not in self._by_deployment:
            self._by_deployment[key] = self._lookup(deployment, [model])
        return self._by_deployment[key]

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
        prices = self.prices_for(deployment)
        if prices is None and usage is not None and usage.model:
            prices = self.prices_for_answer(deployment, usage.model)
        if prices is None:
            return Cost(0.0, False)
        return Cost(price_usage(usage, prices, request or {}), True)


def price_usage(usage: Usage | None, prices: dict, request: dict) -> float:
    """Dollars for `usage` at `prices`; `request` gives what image prices depend on (size, quality)."""
    if usage is None:
        return 0.0
    details = usage.details
    input_price = prices.get("input_cost_per_token") or 0.0
    cached = _cached_tokens(details)
    created = int(details.get("cache_creation_input_tokens") or 0)
    uncached = max(usage.prompt_tokens - cached - created, 0)
    total = (uncached * input_price
             + cached * prices.get("cache_read_input_token_cost", input_price)
             + created * prices.get("cache_creation_input_token_cost", input_price)
             + usage.completion_tokens * (prices.get("output_cost_per_token") or 0.0))
    if details.get("images") and prices.get("output_cost_per_image") is not None:
        total += int(details["images"]) * _image_price(prices["output_cost_per_image"], request)
    total += float(details.get("characters") or 0) * (prices.get("input_cost_per_character") or 0.0)
    total += float(details.get("audio_seconds") or 0) * (prices.get("input_cost_per_second") or 0.0)
    total += float(details.get("search_units") or 0) * (prices.get("input_cost_per_query") or 0.0)
    return total


def _cached_tokens(details: dict) -> int:
    prompt_details = details.get("prompt_tokens_details") or details.get("input_tokens_details") or {}
    cached = prompt_details.get("cached_tokens") if isinstance(prompt_details, dict) else None
    if cached is None:
        cached = details.get("cache_read_input_tokens")
    return int(cached or 0)


def _image_price(price, request: dict) -> float:
    if not isinstance(price, dict):
        return float(price)
    size = request.get("size") or "1024x1024"
    quality = request.get("quality") or "standard"
    for key in (f"{size}/{quality}", size, "default"):
        if key in price:
            return float(price[key])
    return 0.0
