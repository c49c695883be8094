"""Imported records -> charges: whose call it was (as the charging core resolves it) and its price.

- account: the ``account`` column as an account id, else the calling number as a subscriber, through
  :class:`~ocs.store.accounts_view.AccountView` (alias as written, then normalised like a number, then
  the value as an account id), so a switch file and a Diameter request find the same account;
- price: the pure engine (:mod:`ocs.rating.engine`) on the account's tariff, its current version,
  with the rows in force when the call started; the charge is the one of a session of that duration
  (connect fee, increments, time bands, one half-up rounding); an account paying in another currency
  than its tariff's is charged the exact price times the FX rate in force at the call's start, rounded
  once (:func:`ocs.rating.fx.converted_charge`, as the core), and its CDR says ``rate_currency`` and
  ``fx_rate``.
- a reseller's subscriber (docs/wholesale.md "Mediation"): the reseller's wholesale price too, rated
  the same way on the reseller's tariff (converted to the reseller's currency like ocs/resale.py);
  ``import.lua`` debits both legs in one step.  A reseller that is gone, or a destination its tariff
  does not rate, rejects the record (the live path refuses such a call too).

Resolved subscribers and loaded tariffs are kept for the run (an import is minutes, not days: an
alias moved during it counts from the next import).  Where the price depends on the row and the
duration alone (one row, no bands: most of a file), it is memoised.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from ocs.mediation.cdr_csv import CdrRecord, Rejected
from ocs.rating.engine import CompiledTariff, Rating, Selection
from ocs.rating.fx import FxTable, converted_charge, format_rate
from ocs.rating.tariff import ANY_BAND, Tariff
from ocs.store.accounts_view import Account, AccountView
from ocs.store.cdr_imports import PROTOCOL, Charge
from ocs.usage import MAX_EXACT

CACHE = 100_000  # subscribers and memoised prices kept per run


class RecordRater:
    def __init__(self, accounts: AccountView, load_tariff: Callable[[str], Awaitable[Tariff | None]],
                 load_fx: Callable[[], Awaitable[FxTable]], source: str) -> None:
        self.accounts = accounts
        self.load_tariff = load_tariff
        self.load_fx = load_fx
        self.source = source
        self._subs: dict[tuple[bool, str], Account | None] = {}
        self._tariffs: dict[str, CompiledTariff | None] = {}
        self._memo: dict[tuple[int, int], Rating] = {}
        self._fx: FxTable | None = None  # loaded with the first account paying in another currency
        self._resellers: dict[str, Account | None] = {}  # resellers of the run's subscribers

    async def resolve(self, recs: list[CdrRecord]) -> None:
        """Find the accounts (and load the tariffs) of these records: one pipelined round for all."""
        wanted = list({(bool(r.account), r.account or r.calling) for r in recs} - self._subs.keys())
        if len(self._subs) + len(wanted) > CACHE:
            self._subs.clear()
        found = await asyncio.gather(*(self.accounts.get(v) if by_id else self.accounts.resolve(v, fresh=True)
                                       for by_id, v in wanted))
        self._subs.update(zip(wanted, found, strict=True))
        for acct in found:
            if acct is not None:
                await self._load(acct)
                if acct.reseller and acct.reseller not in self._resellers:  # the wholesale leg's payer
                    rs = self._resellers[acct.reseller] = await self.accounts.reseller(acct.reseller)
                    if rs is not None:
                        await self._load(rs)

    async def _load(self, acct: Account) -> None:
        """The account's tariff, and the FX table when it pays in another currency."""
        if acct.tariff not in self._tariffs:
            loaded = await self.load_tariff(acct.tariff)
            self._tariffs[acct.tariff] = CompiledTariff(loaded) if loaded is not None else None
        tariff = self._tariffs[acct.tariff]
        if tariff is not None and self._fx is None and tariff.tariff.currency.strip() != acct.currency:
            self._fx = await self.load_fx()

    def rate(self, rec: CdrRecord) -> Charge | Rejected:
        """The record's charge, or why it is not imported (after :meth:`resolve`)."""
        acct = self._subs.get((bool(rec.account), rec.account or rec.calling))
        if acct is None:
            return _no(rec, "unknown account", f"unknown account {rec.account!r}" if rec.account
                       else f"no account for calling number {rec.calling!r}")
        if acct.blocked:
            return _no(rec, "blocked", f"account {acct.id} blocked")
        tariff = self._tariffs.get(acct.tariff)
        if tariff is None:
            return _no(rec, "unknown tariff", f"tariff {acct.tariff!r} of account {acct.id} not found")
        sel = tariff.select(rec.called, rec.start)
        if sel is None:
            return _no(rec, "not rated", f"destination not rated: {rec.called!r}")
        rating = self._rating(tariff, sel, rec.duration)
        charge, rate_currency, fx_rate = rating.charge, "", ""
        currency = tariff.tariff.currency.strip()
        if currency != acct.currency:  # converted as the core does: exact price times the rate at the start
            fx = self._fx.rate(currency, acct.currency, rec.start) if self._fx is not None else None
            if fx is None:
                return _no(rec, "not rated", f"no FX rate {currency} -> {acct.currency} at {rec.start_iso()}")
            charge, rate_currency, fx_rate = converted_charge(rating, fx), currency, format_rate(fx)
        if charge > MAX_EXACT:
            return _no(rec, "bad field", "charge beyond any plausible amount")
        out = Charge(acct.id, rec.key, f"{PROTOCOL}:{self.source}:{rec.key}", rec.calling, sel.number, sel.prefix,
                     sel.destination, rec.start_iso(), rec.end_iso(), rec.duration, rating.billed_units, charge,
                     acct.currency, sel.tariff, sel.version, rate_currency, fx_rate)
        if acct.reseller:  # the one branch of the plain path
            return self._wholesale(rec, acct.reseller, out)
        return out

    def _wholesale(self, rec: CdrRecord, reseller: str, out: Charge) -> Charge | Rejected:
        """``out`` with the reseller's leg: the wholesale price of the call in the reseller's currency."""
        rs = self._resellers.get(reseller)
        if rs is None:
            return _no(rec, "reseller blocked", f"reseller {reseller} of account {out.account} missing")
        tariff = self._tariffs.get(rs.tariff)
        if tariff is None:
            return _no(rec, "not rated", f"reseller {reseller}'s tariff {rs.tariff!r} not found")
        sel = tariff.select(rec.called, rec.start)
        if sel is None:
            return _no(rec, "not rated", f"destination not rated for reseller {reseller}: {rec.called!r}")
        rating = tariff.rate(sel, rec.duration)
        charge, currency = rating.charge, tariff.tariff.currency.strip()
        if rs.currency and currency != rs.currency:
            fx = self._fx.rate(currency, rs.currency, rec.start) if self._fx is not None else None
            if fx is None:
                return _no(rec, "not rated", f"no FX rate {currency} -> {rs.currency} at {rec.start_iso()}"
                           f" for reseller {reseller}")
            charge = converted_charge(rating, fx)
        if charge > MAX_EXACT:
            return _no(rec, "bad field", "wholesale charge beyond any plausible amount")
        out.reseller, out.reseller_charge = reseller, charge
        return out

    def _rating(self, tariff: CompiledTariff, sel: Selection, duration: int) -> Rating:
        """Rules 2-4; memoised where the price depends on the row and the duration alone."""
        if len(sel.band_rows) != 1 or ANY_BAND not in sel.band_rows:
            return tariff.rate(sel, duration)
        memo = (id(sel.row), duration)  # the run keeps its compiled tariffs (and their rows) alive
        hit = self._memo.get(memo)
        if hit is None:
            if len(self._memo) >= CACHE:
                self._memo.clear()
            hit = self._memo[memo] = tariff.rate(sel, duration)
        return hit


def _no(rec: CdrRecord, category: str, reason: str) -> Rejected:
    return Rejected(rec.line, category, reason, rec.raw)
