"""An account's statement (docs/billing.md, "Statement"): its invoices, payments and what is due.

``amount due`` = what is open on its invoices - its credit (payments not allocated to an invoice,
including what a voided invoice gave back).  A negative amount due is money the operator owes
the customer (an overpayment); it settles the next invoice when that is issued.
"""

from __future__ import annotations

from typing import Any

from ocs.billing import amounts, invoice_docs
from ocs.billing.errors import Refused
from ocs.store.provision import Conn


async def statement(conn: Conn, account_id: str) -> dict[str, Any]:
    acct = await conn.fetchrow("SELECT id, type, currency, status, name FROM accounts WHERE id = $1", account_id)
    if acct is None:
        raise Refused(f"unknown account {account_id!r}")
    cur = acct["currency"].strip()
    invs = await invoice_docs.listing(conn, account=account_id)
    pays = await conn.fetch("SELECT * FROM payments WHERE account_id = $1 ORDER BY paid_on, id", account_id)
    open_total = int(await conn.fetchval(
        "SELECT coalesce(sum(gross - paid), 0) FROM invoices WHERE account_id = $1 AND status = 'open'", account_id))
    credit = sum(int(p["unallocated"]) for p in pays)
    overdue = await conn.fetchval(
        "SELECT min(due_date) FROM invoices WHERE account_id = $1 AND status = 'open' AND due_date < current_date",
        account_id)
    return {"account": account_id, "name": acct["name"], "type": acct["type"], "status": acct["status"],
            "currency": cur, "invoices": invs,
            "payments": [{"reference": p["reference"], "date": p["paid_on"].isoformat(),
                          "amount": amounts.fmt_total(int(p["amount"]), cur),
                          "unallocated": amounts.fmt_total(int(p["unallocated"]), cur),
                          "invoice": p["invoice"]} for p in pays],
            "open": amounts.fmt_total(open_total, cur), "credit": amounts.fmt_total(credit, cur),
            "amount_due": amounts.fmt_total(open_total - credit, cur),
            "overdue_since": overdue.isoformat() if overdue else None}


def text(doc: dict[str, Any]) -> str:
    cur = doc["currency"]
    out = [f"statement of account {doc['account']} {doc['name']}".rstrip() + f" ({doc['type']}, {doc['status']})",
           "invoices:"]
    out += [f"  {d['number']}  {d['period']}  issued {d['issue_date']}  due {d['due_date']}  {d['gross']:>12} {cur}"
            f"  paid {d['paid']:>12}  {d['status']}" for d in doc["invoices"]] or ["  none"]
    out.append("payments:")
    out += [f"  {p['date']}  {p['reference']:<24} {p['amount']:>12} {cur}"
            + (f"  (unallocated {p['unallocated']})" if p["unallocated"] != amounts.fmt_total(0, cur) else "")
            for p in doc["payments"]] or ["  none"]
    out.append(f"open {doc['open']} {cur}, credit {doc['credit']} {cur}, amount due {doc['amount_due']} {cur}"
               + (f", overdue since {doc['overdue_since']}" if doc["overdue_since"] else ""))
    return "\n".join(out)
