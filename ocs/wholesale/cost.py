"""What a call costs us: the route table and the providers' rate sheets, pure (docs/wholesale.md).

A :class:`CostBook` is built once from the stored routes and the providers' compiled sheets (in the
flusher, in ``ocsctl``, in CDR import and re-rating) and answers :meth:`CostBook.cost_of` for one
call: which provider terminated it and what that provider charges us for it.

- Route: the longest route prefix of the normalised called number (the same normalisation as the
  retail tariffs).  No route: None (the CDR keeps an empty provider and a NULL cost).
- Ordered route: the first provider, in the route's order, whose sheet has a rate for the number
  at the call's start terminates it.
- ``--lcr`` route: every provider that has a rate is priced and the cheapest wins; prices in
  different currencies are compared exactly in the currency of the first priced provider, at the
  FX rate in force when the call started; a provider whose price cannot be converted is skipped.
  A tie goes to the provider listed first.
- The price is the provider's sheet applied with the retail rules (billed seconds with its
  increments, connect fee, band per block, one half-up rounding to micro-units), in the provider's
  currency: no conversion is stored, so ``cost`` is exactly what the provider's invoice says.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from typing import NamedTuple, Protocol

from ocs.model import Service
from ocs.rating.engine import CompiledTariff, normalize_number

PROVIDER_TARIFF_PREFIX = "provider:"
"""A provider's rate sheet is the tariff named ``provider:<name>`` (docs/wholesale.md)."""


def sheet_name(provider: str) -> str:
    return PROVIDER_TARIFF_PREFIX + provider


class Cost(NamedTuple):
    """The terminating provider and its price of the call (micro-units of ``currency``)."""

    provider: str
    cost: int
    currency: str


@dataclass(frozen=True)
class Route:
    prefix: str
    providers: tuple[str, ...]
    lcr: bool = False


class FxRates(Protocol):
    """:class:`ocs.rating.fx.FxTable` as far as LCR needs it."""

    def rate(self, src: str, dst: str, at: datetime) -> Fraction | None: ...


class CostBook:
    """Routes by prefix plus each provider's compiled sheet; immutable once built."""

    def __init__(self, routes: Iterable[Route], sheets: Mapping[str, CompiledTariff],
                 fx: FxRates | None = None) -> None:
        self.routes = {r.prefix: r for r in routes}
        self.sheets = dict(sheets)
        self.fx = fx
        self.max_len = max((len(p) for p in self.routes), default=0)

    def __len__(self) -> int:
        return len(self.routes)

    def route_for(self, digits: str) -> Route | None:
        """The longest route prefix of already normalised ``digits``."""
        routes = self.routes
        for length in range(min(len(digits), self.max_len), 0, -1):
            route = routes.get(digits[:length])
            if route is not None:
                return route
        return None

    def price(self, provider: str, number: str, start: datetime, units: int,
              service: Service = Service.VOICE) -> Cost | None:
        """``provider``'s price of the call, or None when its sheet has no rate for the number."""
        sheet = self.sheets.get(provider)
        if sheet is None:
            return None
        sel = sheet.select(number, start, service)
        if sel is None:
            return None
        return Cost(provider, sheet.rate(sel, units).charge, sheet.tariff.currency)

    def cost_of(self, called: str, start: datetime, duration: int,
                service: Service = Service.VOICE) -> Cost | None:
        """Who terminated the call and at what price; None: no route, or no provider of it rates the number."""
        if not self.routes:
            return None
        digits = normalize_number(called)
        route = self.route_for(digits)
        if route is None:
            return None
        number = called if digits.startswith("00") else digits  # select() normalises again: keep it once
        if not route.lcr:
            for provider in route.providers:
                found = self.price(provider, number, start, duration, service)
                if found is not None:
                    return found
            return None
        return self._cheapest(route, number, start, duration, service)

    def _cheapest(self, route: Route, number: str, start: datetime, duration: int,
                  service: Service) -> Cost | None:
        """Every priced provider compared exactly in the first priced one's currency; ties: listed first."""
        best: Cost | None = None
        best_value: int | Fraction = 0
        ref = ""
        for provider in route.providers:
            found = self.price(provider, number, start, duration, service)
            if found is None:
                continue
            if best is None:
                best, best_value, ref = found, found.cost, found.currency
                continue
            value: int | Fraction = found.cost
            if found.currency != ref:  # the common case (one currency) stays in integers
                rate = None if self.fx is None else self.fx.rate(found.currency, ref, start)
                if rate is None:
                    continue  # its price cannot be compared: skipped (docs/wholesale.md)
                value = found.cost * rate
            if value < best_value:
                best, best_value = found, value
        return best
