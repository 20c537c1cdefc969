"""`/ui`: spend per day, calls and error rate, and the top model groups, keys, teams and tags."""

from __future__ import annotations

import time

from flask import render_template, request

from proxy_app import admin
from proxy_app.ui import charts
from proxy_app.ui.blueprint import bp
from proxy_app.ui.session import login_required

WINDOWS = {"24h": 1, "7d": 7, "30d": 30}
CHART_DAYS = 30
TOP = 8


@bp.get("/")
@login_required
def dashboard():
    store = admin.store()
    window = request.args.get("window", "7d")
    if window not in WINDOWS:
        window = "7d"
    now = time.time()
    start = now - WINDOWS[window] * 86400
    overview = store.spend_overview(start=start)
    overview["error_rate"] = overview["errors"] / overview["calls"] if overview["calls"] else 0.0
    # Per day over 30 days, whatever the window: the chart shows the trend the window sits in.
    first_day = int(now // 86400) - CHART_DAYS + 1
    by_day = store.spend_report("model", start=first_day * 86400)
    days = charts.daily(by_day, first_day, CHART_DAYS)
    tops = {group: _top(store.spend_report(group, start=start), group) for group in ("model", "key", "team", "tag")}
    tops["key"] = _with_key_names(store, tops["key"])
    return render_template("dashboard.html", window=window, windows=WINDOWS, overview=overview,
                           spend_chart=charts.bars(days, "spend", money=True),
                           calls_chart=charts.bars(days, "calls"), tops=tops)


def _top(rows: list[dict], group: str) -> list[dict]:
    """The report's per-day rows summed per group, most spent first."""
    totals: dict = {}
    for row in rows:
        name = row[group]
        if name is None:
            continue
        total = totals.setdefault(name, {"name": name, "spend": 0.0, "calls": 0, "tokens": 0})
        total["spend"] += row["spend"] or 0.0
        total["calls"] += row["calls"]
        total["tokens"] += (row["prompt_tokens"] or 0) + (row["completion_tokens"] or 0)
    ranked = sorted(totals.values(), key=lambda t: (-t["spend"], -t["calls"], str(t["name"])))[:TOP]
    most = max((t["spend"] for t in ranked), default=0.0)
    for total in ranked:
        total["share"] = total["spend"] / most if most else 0.0
    return ranked


def _with_key_names(store, rows: list[dict]) -> list[dict]:
    """Keys are reported by token; show their alias or masked key instead (never the key)."""
    for row in rows:
        key = store.get_key(row["name"])
        row["token"] = row["name"]
        row["name"] = (key["key_alias"] or key["key_name"]) if key else "deleted key"
    return rows
