"""Invoice PDFs (docs/billing.md, "PDF"): what a customer receives, built with reportlab.

Built from the invoice as stored (:func:`ocs.billing.invoice_docs.show`): seller and buyer are the
copies taken at issue, so a PDF made again later is the same document.  Page 1 answers what a
customer looks for first (who, which period, how much, by when, where to pay); the lines follow
by section (usage by destination, then fees and adjustments, each column of amounts with one
number of decimals so it lines up), long destinations wrap, the header row repeats on every page,
and with ``with_calls`` the period's calls follow from a new page.  Every page carries the invoice
number and "Page X of N".  reportlab renders a 200-line invoice in about 30 ms, so nothing is cached.
"""

from __future__ import annotations

import io
from datetime import date, datetime, timedelta
from html import escape
from typing import Any
from zoneinfo import ZoneInfo

from reportlab.lib import colors
from reportlab.lib.units import mm
from reportlab.platypus import (
    Flowable,
    KeepTogether,
    PageBreak,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from ocs import money
from ocs.billing import amounts, invoice_docs
from ocs.billing.pdf_layout import GREY, MARGIN, PAGE, WIDTH, fonts, numbered_canvas, styles, table_style
from ocs.store.provision import Conn

MAX_CALLS = 100_000  # an appendix longer than this is cut (with a note): thousands of pages help nobody
_PLAIN = [("LEFTPADDING", (0, 0), (-1, -1), 0), ("RIGHTPADDING", (0, 0), (-1, -1), 0),
          ("VALIGN", (0, 0), (-1, -1), "TOP")]


def _p(text: str, style: str = "base") -> Paragraph:
    """A paragraph of plain text (escaped; new lines kept)."""
    return Paragraph(escape(text).replace("\n", "<br/>"), styles()[style])


def _period(doc: dict[str, Any]) -> str:
    first = date.fromisoformat(doc["period"] + "-01")
    last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    return f"{first.isoformat()} – {last.isoformat()}"


def _parties(doc: dict[str, Any]) -> Table:
    """Seller with the title, then the buyer beside the invoice's facts."""
    s, b = doc["seller"], doc["buyer"]
    seller = [_p(s["company"] or "Invoice", "seller"), _p(s["address"], "small"),
              _p(f"Tax ID: {s['tax_id']}" if s["tax_id"] else "", "small")]
    buyer = [_p("Bill to", "label"), *[_p(x) for x in (b["name"] or f"Account {b['account']}", b["address"]) if x]]
    facts = Table([[_p(k, "label"), _p(v, "right")] for k, v in (
        ("Invoice number", doc["number"]), ("Issue date", doc["issue_date"]), ("Billing period", _period(doc)),
        ("Times in", doc["timezone"]), ("Due date", doc["due_date"]), ("Customer account", b["account"]))],
        colWidths=[30 * mm, 52 * mm], style=TableStyle([*_PLAIN, ("TOPPADDING", (0, 0), (-1, -1), 1),
                                                        ("BOTTOMPADDING", (0, 0), (-1, -1), 1)]))
    rows = [[seller, _p("INVOICE", "title")], [Spacer(1, 10 * mm), ""], [buyer, facts]]
    return Table(rows, colWidths=[WIDTH - 82 * mm, 82 * mm], style=TableStyle(_PLAIN))


def _micros(text: str) -> int:
    return money.parse(text)


def _summary(doc: dict[str, Any]) -> Table:
    """Page 1: what the invoice is made of, its totals, the amount due."""
    cur = doc["currency"]
    parts = []
    for name, kind in (("Usage", "usage"), ("Fees", "fee"), ("Adjustments", "adjustment")):
        lines = [ln for ln in doc["lines"] if ln["kind"] == kind]
        if lines:
            calls = sum(ln.get("calls", 0) for ln in lines)
            title = f"Usage: {calls:,} {'call' if calls == 1 else 'calls'}, {len(lines)} destinations" \
                if kind == "usage" else name
            parts.append((title, sum(_micros(ln["amount"]) for ln in lines)))
    exact = _micros(doc["lines_total"])
    places = amounts.line_places([v for _t, v in parts] + [exact], cur)
    rows: list[list[Any]] = [["Summary", "Exact", f"Amount ({cur})"]]
    rows += [[t, amounts.fmt_line(v, places), ""] for t, v in parts]
    rows.append(["Sum of the lines", amounts.fmt_line(exact, places), ""])
    rate = doc["tax_rate"].rstrip("0").rstrip(".")
    if doc["tax_included"]:
        rows += [["Total, tax included (rounded)", "", doc["gross"]], ["of which net", "", doc["net"]],
                 [f"of which tax {rate} %", "", doc["tax"]]]
    else:
        rows += [["Net (rounded)", "", doc["net"]], [f"Tax {rate} % of the sum of the lines", "", doc["tax"]],
                 ["Total", "", doc["gross"]]]
    if doc["paid"] != amounts.fmt_total(0, cur):
        rows.append(["Paid", "", f"-{doc['paid']}"])
    rows.append([f"Amount due by {doc['due_date']}", "", f"{doc['due']} {cur}"])
    total = next(i for i, r in enumerate(rows) if str(r[0]).startswith("Total"))
    bold = fonts()[1]
    style = [*table_style(), ("FONT", (0, total), (-1, total), bold, 9),
             ("LINEABOVE", (0, total), (-1, total), 0.6, GREY), ("FONT", (0, -1), (-1, -1), bold, 10.5),
             ("LINEABOVE", (0, -1), (-1, -1), 1, GREY),
             ("TOPPADDING", (0, -1), (-1, -1), 5), ("LINEBELOW", (0, -1), (-1, -1), 0, colors.white)]
    return Table(rows, colWidths=[WIDTH - 74 * mm, 34 * mm, 40 * mm], style=TableStyle(style))


def _payment(doc: dict[str, Any]) -> list[Flowable]:
    if doc["status"] == "void":
        cn = doc["credit_note"]
        return [_p(f"This invoice is void: credit note {cn['number']} of {cn['issue_date']} ({cn['reason']}).",
                   "void")]
    if doc["due"] == amounts.fmt_total(0, doc["currency"]):
        return [_p("Prepaid: charged to your balance as used; nothing is due." if doc["tax_included"] else
                   "This invoice is paid. Thank you.")]
    text = [f"Please pay {doc['due']} {doc['currency']} by {doc['due_date']}, quoting {doc['number']}."]
    return [_p("Payment", "label"), *[_p(x) for x in [*text, doc["seller"]["bank"]] if x]]


def _lines(doc: dict[str, Any], usage: bool) -> list[Flowable]:
    """One section of lines (usage by destination, or fees and adjustments) with its own subtotal."""
    lines = [ln for ln in doc["lines"] if (ln["kind"] == "usage") == usage]
    if not lines:
        return []
    cur = doc["currency"]
    values = [_micros(ln["amount"]) for ln in lines]
    places = amounts.line_places([*values, sum(values)], cur)
    rows: list[list[Any]] = [["Destination" if usage else "Description", "Calls" if usage else "",
                              "Quantity" if usage else "", f"Amount ({cur})"]]
    for ln, value in zip(lines, values, strict=True):
        if usage:
            desc = ln["description"] + ("" if ln["service"] == "voice" else f" ({ln['service']})")
            rows.append([_p(desc), f"{ln['calls']:,}", amounts.fmt_units(ln["service"], ln["units"]),
                         amounts.fmt_line(value, places)])
        else:
            rows.append([_p(ln["description"]), "", "", amounts.fmt_line(value, places)])
    rows.append(["Total", "", "", amounts.fmt_line(sum(values), places)])
    style = [*table_style(), ("FONT", (0, -1), (-1, -1), fonts()[1], 8.5), ("LINEABOVE", (0, -1), (-1, -1), 0.6, GREY)]
    title = "Usage by destination" if usage else "Fees and adjustments"
    return [_p(title, "h2"), Table(rows, colWidths=[WIDTH - 82 * mm, 20 * mm, 28 * mm, 34 * mm], repeatRows=1,
                                   style=TableStyle(style))]


async def _calls(conn: Conn, doc: dict[str, Any], inv_id: int) -> list[Flowable]:
    """The appendix: the CDRs of calls started in the period (by start time, in the invoice's timezone)."""
    rows = await conn.fetch(
        "SELECT c.start_time, c.called, c.destination, c.duration, c.charge FROM cdrs c, invoices i"
        " WHERE i.id = $1 AND c.account = i.account_id AND c.start_time >= i.period_start"
        " AND c.start_time < i.period_end AND c.record_id NOT LIKE 'ref:%'"  # refused attempts: ocs.store.refusals
        " ORDER BY c.start_time, c.session_id LIMIT $2", inv_id, MAX_CALLS + 1)
    shown, tz, cur = rows[:MAX_CALLS], ZoneInfo(doc["timezone"]), doc["currency"]
    places = amounts.line_places([int(r["charge"]) for r in shown], cur)
    table: list[list[Any]] = [["Start", "Number called", "Destination", "Duration", f"Charge ({cur})"]]
    for r in shown:
        start: datetime = r["start_time"].astimezone(tz)
        secs = int(r["duration"])
        table.append([start.strftime("%Y-%m-%d %H:%M:%S"), r["called"], _p(r["destination"], "cell"),
                      f"{secs // 60}:{secs % 60:02d}", amounts.fmt_line(int(r["charge"]), places)])
    out: list[Flowable] = [PageBreak(), _p("Appendix: calls in the period", "h2"),
                           _p(f"{len(shown):,} calls started {_period(doc)}, times in {doc['timezone']}."
                              " A call's charge is on the invoice of the month it was charged in.", "small"),
                           Spacer(1, 2 * mm),
                           Table(table, colWidths=[34 * mm, 34 * mm, WIDTH - 116 * mm, 18 * mm, 30 * mm], repeatRows=1,
                                 style=TableStyle(table_style(numeric_from=3)))]
    if len(rows) > MAX_CALLS:
        out.append(_p(f"Only the first {MAX_CALLS:,} calls are listed.", "small"))
    return out


async def invoice_pdf(conn: Conn, number: str, *, with_calls: bool = False) -> bytes:
    """The invoice as PDF bytes."""
    doc = await invoice_docs.show(conn, number)
    story: list[Flowable] = [_parties(doc), Spacer(1, 9 * mm)]
    if doc["status"] == "void":
        story += [_p(f"VOID - credit note {doc['credit_note']['number']}", "void"), Spacer(1, 3 * mm)]
    story += [KeepTogether([_summary(doc), Spacer(1, 6 * mm), *_payment(doc)]), Spacer(1, 4 * mm),
              *_lines(doc, usage=True), *_lines(doc, usage=False)]
    if with_calls:
        story += await _calls(conn, doc, int((await invoice_docs.get(conn, number))["id"]))
    out = io.BytesIO()
    seller = doc["seller"]["company"]
    footer = f"{seller + '  ·  ' if seller else ''}Invoice {doc['number']}  ·  Account {doc['account']}"
    pdf = SimpleDocTemplate(out, pagesize=PAGE, leftMargin=MARGIN, rightMargin=MARGIN, topMargin=MARGIN,
                            bottomMargin=20 * mm, title=f"Invoice {doc['number']}", author=seller or "ocs",
                            subject=f"Invoice {doc['number']} for account {doc['account']}")
    pdf.build(story, canvasmaker=numbered_canvas(footer))
    return out.getvalue()
