"""Spend rows as the gateway writes them, made in bulk: for paging at scale and for a dashboard
with history (the screenshots)."""

from __future__ import annotations

import random
import uuid

MODELS = (("gpt-4o-mini", "openai", 0.00000015, 0.0000006), ("gpt-4o", "openai", 0.0000025, 0.00001),
          ("claude-sonnet", "anthropic", 0.000003, 0.000015), ("demo", "mock", 0.0, 0.0))


def spend_row(start_time: float, *, key_hash="k1", key_alias=None, user_id=None, team_id=None, model="gpt-4o-mini",
              provider="openai", prompt=100, completion=50, cost=0.0001, status=200, tags=(), row_id=None) -> dict:
    row_id = row_id or uuid.uuid4().hex
    return {"row_id": row_id, "request_id": "call-" + row_id, "call_type": "chat_completions",
            "key_hash": key_hash, "key_alias": key_alias, "user_id": user_id, "team_id": team_id,
            "model_group": model, "deployment": f"{model}-1", "provider": provider, "prompt_tokens": prompt,
            "completion_tokens": completion, "total_tokens": prompt + completion, "cost": cost, "priced": cost > 0,
            "usage_estimated": False, "tags": list(tags), "metadata": {"app": "seeded"}, "status": status,
            "error_type": None if status < 400 else "RateLimitError", "stream": False, "stream_cut": False,
            "retries": 0, "fallbacks": 0, "start_time": start_time, "end_time": start_time + 0.4,
            "latency_ms": 400.0}


def history(owners: list[dict], days: int, now: float, per_day=(20, 60), seed=7) -> list[dict]:
    """A month of plausible traffic: each owner ({key_hash, key_alias, user_id, team_id, tags}) calls
    a few models every day, more on weekdays, with the odd rate-limited failure."""
    rng = random.Random(seed)
    rows = []
    for day in range(days, 0, -1):
        weekday = ((now - day * 86400) // 86400 + 4) % 7 < 5
        for owner in owners:
            for _ in range(rng.randint(*per_day) // (1 if weekday else 3)):
                model, provider, price_in, price_out = rng.choice(MODELS)
                prompt, completion = rng.randint(200, 4000), rng.randint(50, 900)
                status = 429 if rng.random() < 0.03 else 200
                cost = 0.0 if status != 200 else prompt * price_in + completion * price_out
                rows.append(spend_row(now - day * 86400 + rng.uniform(0, 86400), model=model, provider=provider,
                                      prompt=prompt, completion=completion, cost=cost, status=status, **owner))
    return rows
