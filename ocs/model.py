"""Protocol-neutral value types of the charging core.

Front ends (Diameter Gy, RADIUS) translate their wire messages into a
:class:`ChargeRequest`, call one verb of :class:`ChargingCore`, and map the
tagged :class:`Outcome` back to their own result codes.  Nothing here knows a
wire format; see ``docs/architecture.md``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


class StoreUnavailable(Exception):
    """The balance store (Redis) cannot be reached: nothing was decided, nothing moved.

    Raised by the core's verbs instead of an outcome; front ends answer
    Diameter 3004 DIAMETER_TOO_BUSY (RFC 6733 section 7.1.3) so the client
    tries another server, and RADIUS drops the packet so the NAS retransmits.
    """


class Service(enum.Enum):
    """What is being charged; decides the unit (seconds, octets, messages)."""

    VOICE = "voice"
    DATA = "data"
    SMS = "sms"


class Status(enum.Enum):
    """The tag of an :class:`Outcome`.  Front ends map each to a result code."""

    GRANTED = "granted"  # units granted (possibly 0 on terminate), money moved
    OUT_OF_CREDIT = "out_of_credit"  # less than one block affordable (Diameter 4012)
    UNKNOWN_SUBSCRIBER = "unknown_subscriber"  # no such alias/account (5030)
    BLOCKED = "blocked"  # account blocked (4010)
    NOT_RATED = "not_rated"  # no tariff row for the destination (5031)
    UNKNOWN_SESSION = "unknown_session"  # update/terminate of a session we do not hold (5002)
    BAD_CREDENTIALS = "bad_credentials"  # RADIUS PAP/CHAP check failed (Access-Reject)
    INVALID = "invalid"  # the request itself is unusable (missing field) (5005)
    ERROR = "error"  # internal failure (5012); nothing was moved


class EventAction(enum.Enum):
    """RFC 4006 section 8.41 Requested-Action values, as verbs of :meth:`ChargingCore.event`."""

    DIRECT_DEBITING = "direct_debiting"
    REFUND_ACCOUNT = "refund_account"
    CHECK_BALANCE = "check_balance"
    PRICE_ENQUIRY = "price_enquiry"


@dataclass(slots=True)  # built per request: slots, not frozen (a frozen init costs ~2 µs more)
class ChargeRequest:
    """One charging request, whatever protocol carried it.

    ``session`` is the front end's session key; a Diameter session with several
    rating groups calls the core once per Multiple-Services-Credit-Control with
    the same ``session`` and its own ``rating_group``; the core keys its state on
    (session, rating_group).  ``request_number`` makes every verb idempotent:
    a repeated (session, rating_group, request_number) returns the stored outcome
    and moves no money.

    ``used_units`` is the usage reported by this request (seconds, octets or
    messages).  Diameter reports increments; RADIUS reports the cumulative
    Acct-Session-Time, which a front end passes with ``used_is_total=True``.
    """

    subscriber: str
    session: str
    request_number: int
    service: Service = Service.VOICE
    rating_group: int = 0
    destination: str = ""
    event_time: datetime | None = None
    used_units: int = 0
    used_is_total: bool = False
    requested_units: int | None = None
    protocol: str = ""  # "diameter" / "radius" (records only)
    origin: str = ""  # NAS address or Diameter Origin-Host (records, Accounting-On/Off)
    calling: str = ""  # calling party for records
    termination_cause: str = ""  # for the CDR on terminate
    password_check: Callable[[str], bool] | None = None  # given the stored secret: does the credential match?
    hold_seconds: int | None = None  # keep the hold this long without news (default validity + grace)
    reach: str = ""  # how the front end reaches the session's client later (RADIUS: NAS address, user), kept as is

    def __init__(self, subscriber: str, session: str, request_number: int, service: Service = Service.VOICE,
                 rating_group: int = 0, destination: str = "", event_time: datetime | None = None,
                 used_units: int = 0, used_is_total: bool = False, requested_units: int | None = None,
                 protocol: str = "", origin: str = "", calling: str = "", termination_cause: str = "",
                 password_check: Callable[[str], bool] | None = None, hold_seconds: int | None = None,
                 reach: str = "") -> None:
        """Written out, not generated: mypyc compiles it."""
        self.subscriber = subscriber
        self.session = session
        self.request_number = request_number
        self.service = service
        self.rating_group = rating_group
        self.destination = destination
        self.event_time = event_time
        self.used_units = used_units
        self.used_is_total = used_is_total
        self.requested_units = requested_units
        self.protocol = protocol
        self.origin = origin
        self.calling = calling
        self.termination_cause = termination_cause
        self.password_check = password_check
        self.hold_seconds = hold_seconds
        self.reach = reach


@dataclass(slots=True)  # built per request (and per stored-outcome replay): slots, not frozen
class Outcome:
    """The tagged answer of a verb.

    ``granted_units`` and ``validity_seconds`` are meaningful for GRANTED;
    ``final`` is true when the grant was cut short by the balance (Diameter
    Final-Unit-Indication TERMINATE, RADIUS: the Session-Timeout is all there is).
    ``charged`` is the money debited by this request, ``reserved`` the hold now
    kept for the session, ``balance`` the account balance after the request
    (all integer micro-units).  ``duplicate`` marks an answer replayed from the
    stored outcome of an already processed request.
    """

    status: Status
    granted_units: int = 0
    validity_seconds: int = 0
    final: bool = False
    charged: int = 0
    reserved: int = 0
    balance: int | None = None
    price: int | None = None  # PRICE_ENQUIRY / authorize: price of the requested units
    account: str = ""
    currency: str = ""
    duplicate: bool = False
    reason: str = ""  # human text for Reply-Message / logs

    def __init__(self, status: Status, granted_units: int = 0, validity_seconds: int = 0, final: bool = False,
                 charged: int = 0, reserved: int = 0, balance: int | None = None, price: int | None = None,
                 account: str = "", currency: str = "", duplicate: bool = False, reason: str = "") -> None:
        """Written out, not generated: mypyc compiles it."""
        self.status = status
        self.granted_units = granted_units
        self.validity_seconds = validity_seconds
        self.final = final
        self.charged = charged
        self.reserved = reserved
        self.balance = balance
        self.price = price
        self.account = account
        self.currency = currency
        self.duplicate = duplicate
        self.reason = reason

    @property
    def ok(self) -> bool:
        return self.status is Status.GRANTED


class ChargingCore(Protocol):
    """The five verbs both front ends call (``ocs.charging.Charging`` implements them)."""

    async def authorize(self, req: ChargeRequest) -> Outcome:
        """Check subscriber, rating and credit for ``requested_units``; moves no money."""

    async def initiate(self, req: ChargeRequest) -> Outcome:
        """Open a session and reserve the first grant (CCR-I, RADIUS Access-Request)."""

    async def update(self, req: ChargeRequest) -> Outcome:
        """Debit reported usage cumulatively and reserve the next grant (CCR-U, Interim)."""

    async def terminate(self, req: ChargeRequest) -> Outcome:
        """Debit final usage, release the rest, write the CDR (CCR-T, Stop)."""

    async def terminate_session(self, req: ChargeRequest) -> Outcome:
        """Terminate every rating group of the session (Diameter CCR-T without MSCC)."""

    async def event(self, req: ChargeRequest, action: EventAction) -> Outcome:
        """One-shot charging (CCR-E): direct debit, refund, balance check, price enquiry."""

    async def bind(self, old_session: str, new_session: str, subscriber: str,
                   hold_seconds: int | None = None, origin: str = "") -> bool:
        """Re-key an open session (RADIUS: hold made at Access-Request, bound at Start; ``origin``
        the NAS it is indexed under), or, with the same key, make its hold last ``hold_seconds``."""

    async def terminate_origin(self, origin: str, cause: str) -> int:
        """Settle every open session of one NAS/peer (Accounting-On/Off); returns the count."""
