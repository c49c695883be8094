"""Gy/Ro (RFC 4006, 3GPP TS 32.299): CCR -> charging verbs -> CCA.

Pure translation: :func:`parse_ccr` turns a decoded CCR into one
:class:`~ocs.model.ChargeRequest` per Multiple-Services-Credit-Control (or one
for the single-service form), :func:`handle_ccr` calls the core verb for each
concurrently, and :func:`encode_cca` builds the answer deterministically from
the outcomes, so a retransmitted CCR answered from stored outcomes gets an
identical CCA (RFC 4006 section 5.1, duplicate detection).
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from ocs.diameter import codec
from ocs.diameter import constants as c
from ocs.diameter.codec import Avp, CodecError, Message
from ocs.model import ChargeRequest, ChargingCore, EventAction, Outcome, Service, Status

NTP_EPOCH = datetime(1900, 1, 1, tzinfo=UTC)
MAX_UNITS = 2**53 - 1  # largest Unsigned64 count accepted (Lua numbers are exact below 2^53)

RESULT_OF = {
    Status.GRANTED: c.SUCCESS, Status.OUT_OF_CREDIT: c.CREDIT_LIMIT_REACHED,
    Status.BLOCKED: c.END_USER_SERVICE_DENIED, Status.UNKNOWN_SUBSCRIBER: c.USER_UNKNOWN,
    Status.NOT_RATED: c.RATING_FAILED, Status.UNKNOWN_SESSION: c.UNKNOWN_SESSION_ID,
    Status.INVALID: c.MISSING_AVP, Status.ERROR: c.UNABLE_TO_COMPLY,
    Status.BAD_CREDENTIALS: c.END_USER_SERVICE_DENIED,
}
ACTIONS = {0: EventAction.DIRECT_DEBITING, 1: EventAction.REFUND_ACCOUNT, 2: EventAction.CHECK_BALANCE,
           3: EventAction.PRICE_ENQUIRY}


class GyError(Exception):
    """A CCR we answer with one command-level Result-Code (5005, 5001, 5004, 5014 ...)."""

    def __init__(self, result: int, failed: bytes = b"", text: str = "") -> None:
        super().__init__(text or str(result))
        self.result = result
        self.failed = failed  # encoded AVP(s) for Failed-AVP


@dataclass
class Units:
    time: int | None = None
    octets: int | None = None
    ssu: int | None = None

    def __init__(self, time: int | None = None, octets: int | None = None, ssu: int | None = None) -> None:
        """Written out, not generated: mypyc compiles it."""
        self.time = time
        self.octets = octets
        self.ssu = ssu

    def service(self) -> Service | None:
        if self.time is not None:
            return Service.VOICE
        if self.octets is not None:
            return Service.DATA
        if self.ssu is not None:
            return Service.SMS
        return None

    def amount(self, service: Service) -> int | None:
        if service is Service.VOICE:
            return self.time
        return self.octets if service is Service.DATA else self.ssu


_FRESH: Final[list[ChargeRequest]] = []  # Ccr's default for requests, never stored: each Ccr gets a new list


@dataclass
class Ccr:
    session_id: str
    request_type: int
    request_number: int
    origin_host: str
    subscriber: str
    destination: str
    calling: str
    event_time: datetime | None
    action: EventAction
    cause: str
    mscc: bool
    requests: list[ChargeRequest] = field(default_factory=list)
    session_echo: str = ""  # Session-Id as received, echoed in the CCA (session_id is its wire_text)

    def __init__(self, session_id: str, request_type: int, request_number: int, origin_host: str, subscriber: str,
                 destination: str, calling: str, event_time: datetime | None, action: EventAction, cause: str,
                 mscc: bool, requests: list[ChargeRequest] = _FRESH, session_echo: str = "") -> None:
        """Written out, not generated: mypyc compiles it."""
        self.session_id = session_id
        self.request_type = request_type
        self.request_number = request_number
        self.origin_host = origin_host
        self.subscriber = subscriber
        self.destination = destination
        self.calling = calling
        self.event_time = event_time
        self.action = action
        self.cause = cause
        self.mscc = mscc
        self.requests = [] if requests is _FRESH else requests  # as default_factory=list
        self.session_echo = session_echo


def _u64(avp: Avp) -> int:
    """An Unsigned64 count, range-checked where it enters: above :data:`MAX_UNITS` no real session
    reports it, and the scripts' Lua numbers stop being exact.  5004 with the AVP (RFC 6733 7.1.5)."""
    value = avp.u64()
    if value > MAX_UNITS:
        raise GyError(c.INVALID_AVP_VALUE, avp.raw, f"AVP {avp.code}: {value} is beyond {MAX_UNITS}")
    return value


def _units(avp: Avp | None) -> Units:
    u = Units()
    if avp is None:
        return u
    g = avp.group()
    if (a := codec.find(g, c.CC_TIME)) is not None:
        u.time = a.u32()
    total = codec.find(g, c.CC_TOTAL_OCTETS)
    inp, out = codec.find(g, c.CC_INPUT_OCTETS), codec.find(g, c.CC_OUTPUT_OCTETS)
    if total is not None:
        u.octets = _u64(total)
    elif inp is not None or out is not None:
        u.octets = (_u64(inp) if inp else 0) + (_u64(out) if out else 0)
    if (a := codec.find(g, c.CC_SERVICE_SPECIFIC_UNITS)) is not None:
        u.ssu = _u64(a)
    return u


def _used(avps: list[Avp]) -> Units:
    """Several Used-Service-Unit AVPs (e.g. per tariff-change) add up."""
    total = Units()
    for a in avps:
        u = _units(a)
        for name in ("time", "octets", "ssu"):
            v = getattr(u, name)
            if v is not None:
                setattr(total, name, (getattr(total, name) or 0) + v)
    return total


def _deep(avps: list[Avp], code: int, vendor: int) -> Avp | None:
    """First AVP ``code`` anywhere inside the grouped AVPs (Service-Information trees)."""
    for a in avps:
        if a.code == code and a.vendor == vendor:
            return a
        if a.vendor == c.VENDOR_3GPP and a.code in (c.SERVICE_INFORMATION, c.IMS_INFORMATION, 2000, 2026, 1201):
            found = _deep(a.group(), code, vendor)
            if found is not None:
                return found
    return None


def _subscriber(subs: list[Avp], user: Avp | None) -> str:
    ids: dict[int, str] = {}
    for sub in subs:
        g = sub.group()
        t, d = codec.find(g, c.SUBSCRIPTION_ID_TYPE), codec.find(g, c.SUBSCRIPTION_ID_DATA)
        if t is not None and d is not None:
            ids.setdefault(t.u32(), d.text())
    for kind in (c.END_USER_E164, c.END_USER_IMSI, c.END_USER_SIP_URI, c.END_USER_NAI, c.END_USER_PRIVATE):
        if kind in ids:
            return ids[kind]
    return user.text() if user is not None else ""


def _required(first: dict[int, Avp], code: int) -> Avp:
    a = first.get(code)
    if a is None:
        raise GyError(c.MISSING_AVP, codec.avp(code, b"\0\0\0\0"), f"missing AVP {code}")
    return a


def check_unknown_mandatory(msg: Message) -> None:
    """RFC 6733 section 7.1.5: an unknown AVP with the M-bit gets 5001 with it as Failed-AVP."""
    _Index(msg)


class _Index:
    """One pass over a CCR's top-level AVPs: the first base AVP of each code, the repeated AVPs the
    parser reads (Subscription-Id, MSCC, Service-Information), and the 5001 check on the way.

    Why: :func:`parse_ccr` asked ``msg.first`` about a dozen codes, each a scan of every AVP.
    """

    __slots__ = ("first", "mscc", "service_info", "subscription_ids")

    def __init__(self, msg: Message) -> None:
        first: dict[int, Avp] = {}
        subs: list[Avp] = []
        mscc: list[Avp] = []
        si: list[Avp] = []
        known = c.KNOWN_BASE
        for a in msg.avps:
            code = a.code
            if a.vendor == 0:
                if code not in first:
                    first[code] = a
                if a.flags & codec.AVP_M and code not in known:
                    raise GyError(c.AVP_UNSUPPORTED, a.raw, f"unsupported AVP {code}")
                if code == c.SUBSCRIPTION_ID:
                    subs.append(a)
                elif code == c.MULTIPLE_SERVICES_CREDIT_CONTROL:
                    mscc.append(a)
            elif code == c.SERVICE_INFORMATION and a.vendor == c.VENDOR_3GPP:
                si.append(a)
        self.first, self.subscription_ids, self.mscc, self.service_info = first, subs, mscc, si


def _service_default(context: str, destination: str) -> Service:
    if "32274" in context:
        return Service.SMS
    if "32251" in context or not destination:
        return Service.DATA
    return Service.VOICE


_REQUIRED = (c.SESSION_ID, c.ORIGIN_HOST, c.ORIGIN_REALM, c.DESTINATION_REALM, c.AUTH_APPLICATION_ID,
             c.SERVICE_CONTEXT_ID, c.CC_REQUEST_TYPE, c.CC_REQUEST_NUMBER)


def parse_ccr(msg: Message) -> Ccr:
    ix = _Index(msg)
    first = ix.first
    for code in _REQUIRED:
        _required(first, code)
    rtype_avp = first[c.CC_REQUEST_TYPE]
    rtype = rtype_avp.u32()
    if rtype not in (c.INITIAL, c.UPDATE, c.TERMINATION, c.EVENT):
        raise GyError(c.INVALID_AVP_VALUE, rtype_avp.raw, "bad CC-Request-Type")
    subscriber = _subscriber(ix.subscription_ids, first.get(c.USER_NAME))
    if not subscriber and rtype in (c.INITIAL, c.EVENT):
        raise GyError(c.MISSING_AVP, codec.grouped(c.SUBSCRIPTION_ID, codec.u32(c.SUBSCRIPTION_ID_TYPE, 0),
                                                   codec.utf8(c.SUBSCRIPTION_ID_DATA, "")),
                      "missing Subscription-Id")
    si = ix.service_info
    called = _deep(si, c.CALLED_PARTY_ADDRESS, c.VENDOR_3GPP) or _deep(si, c.ADDRESS_DATA, c.VENDOR_3GPP) \
        if si else None
    calling = _deep(si, c.CALLING_PARTY_ADDRESS, c.VENDOR_3GPP) if si else None
    ts = first.get(c.EVENT_TIMESTAMP)
    action = first.get(c.REQUESTED_ACTION)
    cause = first.get(c.TERMINATION_CAUSE)
    sid = first[c.SESSION_ID]
    ccr = Ccr(
        session_id=sid.wire(), request_type=rtype,
        request_number=first[c.CC_REQUEST_NUMBER].u32(),
        origin_host=first[c.ORIGIN_HOST].wire(), subscriber=subscriber,
        destination=called.text() if called else "", calling=calling.wire() if calling else subscriber,
        event_time=NTP_EPOCH + timedelta(seconds=ts.u32()) if ts else None,
        action=ACTIONS.get(action.u32(), EventAction.DIRECT_DEBITING) if action else EventAction.DIRECT_DEBITING,
        cause=c.TERMINATION_CAUSES.get(cause.u32(), str(cause.u32())) if cause else "",
        mscc=bool(ix.mscc),
        session_echo=sid.text(),
    )
    context = first[c.SERVICE_CONTEXT_ID].text()
    blocks = [m.group() for m in ix.mscc] or [msg.avps]
    for g in blocks:
        ccr.requests.append(_request(ccr, g, context))
    return ccr


def _request(ccr: Ccr, g: list[Avp], context: str) -> ChargeRequest:
    rg = codec.find(g, c.RATING_GROUP)
    rsu_avp = codec.find(g, c.REQUESTED_SERVICE_UNIT)
    rsu, usu = _units(rsu_avp), _used([a for a in g if a.code == c.USED_SERVICE_UNIT and a.vendor == 0])
    service = rsu.service() or usu.service() or _service_default(context, ccr.destination)
    return ChargeRequest(
        subscriber=ccr.subscriber, session=ccr.session_id, request_number=ccr.request_number, service=service,
        rating_group=rg.u32() if rg else 0, destination=ccr.destination, event_time=ccr.event_time,
        used_units=usu.amount(service) or 0, requested_units=rsu.amount(service), protocol="diameter",
        origin=ccr.origin_host, calling=ccr.calling, termination_cause=ccr.cause or "DIAMETER_LOGOUT",
    )


async def handle_ccr(core: ChargingCore, ccr: Ccr) -> list[Outcome]:
    """One verb call per MSCC, run concurrently (one Redis pipeline round trip for all)."""
    if ccr.request_type == c.INITIAL:
        calls = [core.initiate(r) for r in ccr.requests]
    elif ccr.request_type == c.UPDATE:
        calls = [core.update(r) for r in ccr.requests]
    elif ccr.request_type == c.TERMINATION and not ccr.mscc:  # the whole session, every rating group
        calls = [core.terminate_session(ccr.requests[0])]
    elif ccr.request_type == c.TERMINATION:
        calls = [core.terminate(r) for r in ccr.requests]
    else:
        calls = [core.event(r, ccr.action) for r in ccr.requests]
    if len(calls) == 1:  # the common case: no gather, whose task per coroutine costs ~10 µs
        return [await calls[0]]
    return list(await asyncio.gather(*calls))


@functools.lru_cache(maxsize=4096)
def _gsu(service: Service, units: int) -> bytes:
    """Granted-Service-Unit: a few distinct grants (60 s, the quota) cover most answers, so each is packed once."""
    if service is Service.VOICE:
        unit = codec.u32(c.CC_TIME, units)
    elif service is Service.DATA:
        unit = codec.u64(c.CC_TOTAL_OCTETS, units)
    else:
        unit = codec.u64(c.CC_SERVICE_SPECIFIC_UNITS, units)
    return codec.grouped(c.GRANTED_SERVICE_UNIT, unit)


@functools.lru_cache(maxsize=4096)
def _u32(code: int, value: int) -> bytes:
    """An Unsigned32 AVP from a small set of values (result codes, request types, rating groups,
    validity): packed once, not per answer."""
    return codec.u32(code, value)


@functools.lru_cache(maxsize=64)
def _identity(origin_host: str, origin_realm: str) -> bytes:
    """Origin-Host, Origin-Realm and Auth-Application-Id of every CCA: the same bytes each time."""
    return codec.utf8(c.ORIGIN_HOST, origin_host) + codec.utf8(c.ORIGIN_REALM, origin_realm) + \
        codec.u32(c.AUTH_APPLICATION_ID, c.APP_CC)


_FINAL_UNIT_TERMINATE = codec.grouped(c.FINAL_UNIT_INDICATION, codec.u32(c.FINAL_UNIT_ACTION, 0))


def _grant_avps(ccr: Ccr, req: ChargeRequest, out: Outcome) -> list[bytes]:
    parts: list[bytes] = []
    granting = out.status is Status.GRANTED and ccr.request_type in (c.INITIAL, c.UPDATE)
    if granting or (ccr.request_type == c.EVENT and out.ok and ccr.action is EventAction.DIRECT_DEBITING):
        parts.append(_gsu(req.service, out.granted_units))
    if granting and out.validity_seconds:
        parts.append(_u32(c.VALIDITY_TIME, out.validity_seconds))
    if granting and out.final:
        parts.append(_FINAL_UNIT_TERMINATE)
    return parts


def _cost(out: Outcome) -> bytes:
    digits = out.price if out.price is not None else 0
    return codec.grouped(c.COST_INFORMATION,
                         codec.grouped(c.UNIT_VALUE, codec.u64(c.VALUE_DIGITS, digits),
                                       codec.u32(c.EXPONENT, (-6) & 0xFFFFFFFF)),
                         codec.u32(c.CURRENCY_CODE, c.CURRENCY_NUMERIC.get(out.currency, 0)))


def command_result(outcomes: list[Outcome]) -> int:
    """2001 when any MSCC succeeded (each MSCC carries its own code), else the first MSCC's code."""
    if any(o.ok for o in outcomes):
        return c.SUCCESS
    return RESULT_OF[outcomes[0].status] if outcomes else c.UNABLE_TO_COMPLY


def encode_cca(ccr: Ccr, outcomes: list[Outcome], origin_host: str, origin_realm: str,
               hop_by_hop: int, end_to_end: int, request_flags: int = 0) -> bytes:
    """The CCA; its P bit is the request's (RFC 6733 section 6.2: an answer's P equals the request's)."""
    result = command_result(outcomes)
    body = [codec.utf8(c.SESSION_ID, ccr.session_echo or ccr.session_id), _u32(c.RESULT_CODE, result),
            _identity(origin_host, origin_realm), _u32(c.CC_REQUEST_TYPE, ccr.request_type),
            codec.u32(c.CC_REQUEST_NUMBER, ccr.request_number)]
    if ccr.mscc:
        for req, out in zip(ccr.requests, outcomes, strict=True):
            inner = _grant_avps(ccr, req, out)
            inner.append(_u32(c.RATING_GROUP, req.rating_group))
            inner.append(_u32(c.RESULT_CODE, RESULT_OF[out.status]))
            body.append(codec.grouped(c.MULTIPLE_SERVICES_CREDIT_CONTROL, *inner))
    elif outcomes:
        body += _grant_avps(ccr, ccr.requests[0], outcomes[0])
    if ccr.request_type == c.EVENT and outcomes and outcomes[0].ok:
        if ccr.action is EventAction.CHECK_BALANCE:
            body.append(codec.u32(c.CHECK_BALANCE_RESULT, 0 if (outcomes[0].price or 0) > 0 else 1))
        elif ccr.action is EventAction.PRICE_ENQUIRY:
            body.append(_cost(outcomes[0]))
    if result == c.RATING_FAILED:
        body.append(codec.grouped(c.FAILED_AVP, codec.grouped(
            c.SERVICE_INFORMATION, codec.grouped(c.IMS_INFORMATION, codec.utf8(
                c.CALLED_PARTY_ADDRESS, ccr.destination, vendor=c.VENDOR_3GPP), vendor=c.VENDOR_3GPP),
            vendor=c.VENDOR_3GPP)))
    return codec.message(c.CCR, request_flags & codec.FLAG_P, c.APP_CC, hop_by_hop, end_to_end, *body)


def error_answer(msg: Message, result: int, origin_host: str, origin_realm: str, *, failed: bytes = b"",
                 text: str = "") -> bytes:
    """An answer carrying only a Result-Code; the E-bit for protocol errors (3xxx, RFC 6733 section 7.1.3)."""
    body = []
    sid = msg.first(c.SESSION_ID)
    if sid is not None:
        body.append(sid.raw + b"\0" * (-len(sid.raw) % 4))
    body += [codec.u32(c.RESULT_CODE, result), codec.utf8(c.ORIGIN_HOST, origin_host),
             codec.utf8(c.ORIGIN_REALM, origin_realm)]
    if msg.app_id == c.APP_CC and msg.code == c.CCR:
        body.append(codec.u32(c.AUTH_APPLICATION_ID, c.APP_CC))
        for code in (c.CC_REQUEST_TYPE, c.CC_REQUEST_NUMBER):
            a = msg.first(code)
            if a is not None and len(a.data) == 4:
                body.append(codec.u32(code, a.u32()))
    if text:
        body.append(codec.utf8(c.ERROR_MESSAGE, text, mandatory=False))
    if failed:
        body.append(codec.grouped(c.FAILED_AVP, failed))
    flags = codec.FLAG_E if 3000 <= result < 4000 else 0
    if msg.flags & codec.FLAG_P:
        flags |= codec.FLAG_P
    return codec.message(msg.code, flags, msg.app_id, msg.hop_by_hop, msg.end_to_end, *body)


__all__ = ["Ccr", "CodecError", "GyError", "encode_cca", "error_answer", "handle_ccr", "parse_ccr"]
