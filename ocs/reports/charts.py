"""Charts of the usage report, as PNG or SVG (matplotlib, Agg backend: no display, no browser).

Three pictures an operator looks at instead of the table: revenue by day, the top destinations by
minutes (with their ASR and ACD), and revenue, cost and profit by provider.  Each is drawn from the
same report lines as ``ocsctl report usage`` (ocs.reports.usage_report), so a chart never says
something the table does not.  A chart shows one currency: the one with the most revenue in the
period; the subtitle names any other currency left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import matplotlib

matplotlib.use("Agg")  # before pyplot: files only, never a window

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from ocs.reports.usage_report import TOTAL, Line

KINDS = {"revenue-by-day": "day", "top-destinations": "destination", "profit-by-provider": "provider"}
TOP = 12
_BLUE, _ORANGE, _GREEN, _RED, _GREY = "#2f6db5", "#e08a2c", "#3a9a5b", "#c0392b", "#6b7280"


def _major(micros: float) -> float:
    return micros / 1_000_000


def _money_axis(ax: Axes, currency: str, top: float) -> None:
    small = abs(top) < 100
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.2f}" if small else f"{v:,.0f}"))
    ax.set_ylabel(currency)


def _legend(fig: Figure, ax: Axes) -> None:
    """Above the plot, right-aligned under the title: never over the bars."""
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper right", bbox_to_anchor=(0.985, 0.915), ncols=len(labels), frameon=False,
               fontsize=9)


def _main_currency(lines: Sequence[Line]) -> tuple[str, list[str]]:
    totals = {ln.currency: ln.revenue for ln in lines if ln.group == TOTAL}
    if not totals:
        return "", []
    main = max(sorted(totals), key=lambda c: totals[c])
    return main, sorted(c for c in totals if c != main)


def _frame(title: str, start: datetime, end: datetime, note: str) -> tuple[Figure, Axes]:
    """Title and period top-left above the axes; the axes fill the rest (``save`` lays them out)."""
    fig, ax = plt.subplots(figsize=(10, 5.6), dpi=110)
    fig.text(0.015, 0.965, title, ha="left", va="top", fontsize=14, fontweight="bold")
    sub = f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC"
    fig.text(0.015, 0.905, f"{sub}   {note}".rstrip(), ha="left", va="top", fontsize=9, color=_GREY)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.grid(axis="y", color="#e5e7eb", linewidth=0.8)
    ax.set_axisbelow(True)
    return fig, ax


def _others(others: list[str]) -> str:
    return f"(other currencies not shown: {', '.join(others)})" if others else ""


def _empty(ax: Axes) -> None:
    ax.text(0.5, 0.5, "no usage in this period", ha="center", va="center", transform=ax.transAxes,
            color=_GREY, fontsize=12)
    ax.set_xticks([])
    ax.set_yticks([])


def revenue_by_day(lines: Sequence[Line], start: datetime, end: datetime) -> Figure:
    cur, others = _main_currency(lines)
    days = [ln for ln in lines if ln.group != TOTAL and ln.currency == cur]
    total = next((ln for ln in lines if ln.group == TOTAL and ln.currency == cur), None)
    note = f"total revenue {_major(total.revenue):,.2f} {cur}  " if total else ""
    fig, ax = _frame(f"Revenue by day ({cur})" if cur else "Revenue by day", start, end, note + _others(others))
    if not days:
        _empty(ax)
        return fig
    xs = list(range(len(days)))
    revenue = [_major(d.revenue) for d in days]
    ax.bar(xs, revenue, color=_BLUE, width=0.75, label="revenue")
    if any(d.cost for d in days):
        ax.plot(xs, [_major(d.cost or 0) for d in days], color=_ORANGE, marker="o", markersize=3,
                linewidth=1.5, label="cost")
    _legend(fig, ax)
    step = max(1, len(days) // 15)
    ax.set_xticks(xs[::step], [d.group[5:] for d in days][::step], fontsize=8)
    _money_axis(ax, cur, max(revenue))
    return fig


def top_destinations(lines: Sequence[Line], start: datetime, end: datetime) -> Figure:
    rows = sorted((ln for ln in lines if ln.group != TOTAL and ln.seconds), key=lambda ln: -ln.seconds)[:TOP]
    fig, ax = _frame(f"Top destinations by minutes (top {TOP})", start, end, "")
    if not rows:
        _empty(ax)
        return fig
    rows.reverse()  # the biggest at the top of a horizontal bar chart
    ys = list(range(len(rows)))
    minutes = [ln.seconds / 60 for ln in rows]
    ax.barh(ys, minutes, color=_BLUE, height=0.7)
    ax.set_yticks(ys, [ln.group for ln in rows], fontsize=9)
    ax.grid(axis="y", visible=False)
    ax.grid(axis="x", color="#e5e7eb", linewidth=0.8)
    ax.set_xlabel("minutes")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:,.0f}"))
    for y, ln in zip(ys, rows, strict=True):
        doc = ln.document()
        ax.text(ln.seconds / 60, y, f"  {float(doc['minutes']):,.0f} min · ASR {doc['asr']}% · ACD {doc['acd']} s",
                va="center", fontsize=8, color="#111827")
    ax.set_xlim(0, max(minutes) * 1.45)
    return fig


def profit_by_provider(lines: Sequence[Line], start: datetime, end: datetime) -> Figure:
    cur, others = _main_currency(lines)
    rows = [ln for ln in lines if ln.group != TOTAL and ln.currency == cur][:TOP]
    fig, ax = _frame(f"Revenue, cost and profit by provider ({cur})" if cur else "Profit by provider",
                     start, end, _others(others))
    if not rows:
        _empty(ax)
        return fig
    xs = list(range(len(rows)))
    width = 0.27
    revenue = [_major(ln.revenue) for ln in rows]
    ax.bar([x - width for x in xs], revenue, width, color=_BLUE, label="revenue")
    ax.bar(xs, [_major(ln.cost or 0) for ln in rows], width, color=_ORANGE, label="cost")
    profits = [_major(ln.profit or 0) for ln in rows]
    ax.bar([x + width for x in xs], profits, width, color=[_GREEN if p >= 0 else _RED for p in profits],
           label="profit")
    ax.axhline(0, color="#9ca3af", linewidth=0.8)
    ax.set_xticks(xs, [ln.group for ln in rows], fontsize=9)
    _legend(fig, ax)
    _money_axis(ax, cur, max(revenue))
    return fig


_DRAW = {"revenue-by-day": revenue_by_day, "top-destinations": top_destinations,
         "profit-by-provider": profit_by_provider}


def save(kind: str, lines: Sequence[Line], start: datetime, end: datetime, path: str) -> None:
    """Draw ``kind`` and write it to ``path`` (.png or .svg decides the format)."""
    fig = _DRAW[kind](lines, start, end)
    try:
        fig.tight_layout(rect=(0, 0, 1, 0.87))
        fig.savefig(path, format=path.rsplit(".", 1)[-1].lower(), metadata={"Date": None} if
                    path.lower().endswith(".svg") else None)
    finally:
        plt.close(fig)
