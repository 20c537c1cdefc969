"""Bar charts drawn on the server as SVG: no chart library, nothing to download, readable
without JavaScript, and the numbers are in the markup for screen readers too."""

from __future__ import annotations

import datetime
import math

WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM, PAD_TOP = 720, 240, 64, 28, 12


def daily(report_rows: list[dict], first_day: int, days: int) -> list[dict]:
    """`spend_report` rows summed per UTC day, one entry for each of `days` days from `first_day`."""
    out = [{"day": first_day + i, "spend": 0.0, "calls": 0} for i in range(days)]
    for row in report_rows:
        index = row["day"] // 86400 - first_day
        if 0 <= index < days:
            out[index]["spend"] += row["spend"] or 0.0
            out[index]["calls"] += row["calls"]
    return out


def bars(days: list[dict], field: str, money: bool = False) -> dict:
    """Geometry for the template: one bar per day, y-axis ticks, labels every week."""
    values = [d[field] for d in days]
    top = _nice(max(values, default=0))
    plot_w, plot_h = WIDTH - PAD_LEFT - 8, HEIGHT - PAD_BOTTOM - PAD_TOP
    step = plot_w / max(1, len(days))
    out = []
    for i, (day, value) in enumerate(zip(days, values, strict=True)):
        height = 0 if not top else plot_h * value / top
        date = datetime.datetime.fromtimestamp(day["day"] * 86400, datetime.UTC)
        out.append({"x": round(PAD_LEFT + i * step + step * 0.15, 1), "width": round(step * 0.7, 1),
                    "y": round(PAD_TOP + plot_h - height, 1), "height": round(max(height, 0), 1),
                    "label": date.strftime("%b %d"), "show_label": i % 7 == len(days) % 7 - 1 or i == len(days) - 1,
                    "value": _format(value, money)})
    ticks = [{"y": round(PAD_TOP + plot_h - plot_h * f, 1), "label": _format(top * f, money)}
             for f in (0, 0.5, 1)]
    return {"bars": out, "ticks": ticks, "width": WIDTH, "height": HEIGHT, "left": PAD_LEFT,
            "right": WIDTH - 8, "bottom": PAD_TOP + plot_h, "total": _format(sum(values), money)}


def _nice(value: float) -> float:
    """The axis top: the value rounded up to 1, 2 or 5 times a power of ten."""
    if value <= 0:
        return 0
    magnitude = 10 ** math.floor(math.log10(value))
    for factor in (1, 2, 5, 10):
        if value <= magnitude * factor:
            return magnitude * factor
    return magnitude * 10


def _format(value: float, money: bool) -> str:
    return dollars(value) if money else f"{int(value):,}"


def dollars(value) -> str:
    """US dollars as people read them: cents above a cent, six places below (calls cost fractions)."""
    if value is None:
        return "—"
    if value == 0:
        return "$0"
    if abs(value) < 0.01:
        return f"${value:.6f}".rstrip("0")
    return f"${value:,.2f}"
