"""PIN secrets: how voucher and calling-card PINs are drawn, hashed and described (docs/billing.md).

- Drawn from the OS CSPRNG (:mod:`secrets`), ``length`` decimal digits, the first never 0: a
  spreadsheet opening the PIN file would drop a leading zero and the printed card would be wrong.
- Stored as ``HMAC-SHA256(pepper, PIN)``.  A PIN of 12 digits has about 40 bits: a plain fast
  hash is reversed offline by trying every PIN (minutes on one GPU), and a per-row salt or a slow
  KDF would force redeeming to try every row.  A keyed hash is deterministic, so the lookup is
  one unique-index probe, and useless without the pepper, which lives in a file outside the
  database (``billing.pin_pepper_file``): a stolen dump or backup alone gives no PIN.  The cost:
  whoever holds both the database and the pepper can brute-force the PINs as fast as SHA-256
  runs, and the pepper can never change while PINs are outstanding (their hashes would no longer
  match); each lot records which pepper hashed it (:func:`pepper_id`) so a change is visible.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

Kind = Literal["voucher", "card"]
KINDS: tuple[Kind, ...] = ("voucher", "card")
MIN_LENGTH, MAX_LENGTH = 8, 32
MIN_PEPPER_BYTES = 16
MAX_COUNT = 1_000_000
SPACE_FACTOR = 1000  # a lot may use at most 1/1000 of its PIN space: guessing stays hopeless, draws rarely collide
LOT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # part of card account ids and ledger references
CURRENCY = re.compile(r"[A-Z]{3}")


class PinRefused(Exception):
    """The operation was refused (unknown lot, PIN already redeemed, ...); one line for the operator."""


class PinUsage(Exception):
    """The request itself is wrong (count 0, card without tariff, no pepper configured); one line."""


@dataclass(frozen=True)
class LotSpec:
    """What ``ocsctl pin generate`` (or the API) asks for; money in micro-units."""

    name: str
    kind: Kind
    count: int
    value: int
    currency: str
    length: int = 12
    tariff: str | None = None
    expires: datetime | None = None  # vouchers only; aware

    def check(self, now: datetime) -> None:
        """Refuse a spec that no database state could make valid (:class:`PinUsage`)."""
        if not LOT_NAME.fullmatch(self.name):
            raise PinUsage(f"--lot {self.name!r}: 1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit")
        if not 1 <= self.count <= MAX_COUNT:
            raise PinUsage(f"--count: must be 1 to {MAX_COUNT}, got {self.count}")
        if not MIN_LENGTH <= self.length <= MAX_LENGTH:
            raise PinUsage(f"--length: must be {MIN_LENGTH} to {MAX_LENGTH} digits, got {self.length}")
        if self.count * SPACE_FACTOR > 9 * 10 ** (self.length - 1):
            raise PinUsage(f"--length {self.length} is too short for {self.count} PINs; use more digits")
        if self.value <= 0:
            raise PinUsage("--value: must be positive")
        if not CURRENCY.fullmatch(self.currency):
            raise PinUsage(f"--currency: three letters, got {self.currency!r}")
        if self.kind == "card" and not self.tariff:
            raise PinUsage("--tariff is required for --kind card")
        if self.kind == "voucher" and self.tariff:
            raise PinUsage("--tariff applies to --kind card only")
        if self.kind == "card" and self.expires is not None:
            raise PinUsage("--expires applies to vouchers; a card's account lives until it is blocked")
        if self.expires is not None and self.expires <= now:
            raise PinUsage(f"--expires: {self.expires.isoformat()} is already past")


@dataclass(frozen=True)
class Issued:
    """One new PIN; the cleartext exists only in memory and in the PIN file written once."""

    serial: int
    pin: str
    digest: bytes
    account: str | None  # cards: the card's own account id


def load_pepper(path: str) -> bytes:
    """The pepper from ``billing.pin_pepper_file`` (surrounding blanks ignored), or :class:`PinUsage`."""
    if not path:
        raise PinUsage("billing.pin_pepper_file is not set: PINs are hashed with a secret pepper (docs/billing.md)")
    try:
        pepper = Path(path).read_bytes().strip()
    except OSError as exc:
        raise PinUsage(f"billing.pin_pepper_file: cannot read {path}: {exc.strerror}") from None
    if len(pepper) < MIN_PEPPER_BYTES:
        raise PinUsage(f"billing.pin_pepper_file: {path} holds fewer than {MIN_PEPPER_BYTES} bytes")
    return pepper


def pin_hash(pepper: bytes, pin: str) -> bytes:
    return hmac.new(pepper, pin.encode("ascii"), hashlib.sha256).digest()


def pepper_id(pepper: bytes) -> str:
    """Names a pepper without revealing it (an HMAC of a fixed label), stored on each lot."""
    return hmac.new(pepper, b"ocs pin pepper id", hashlib.sha256).hexdigest()[:16]


def draw(length: int) -> str:
    """One PIN of ``length`` digits, uniform over those not starting with 0."""
    low = 10 ** (length - 1)
    return str(low + secrets.randbelow(9 * low))


def is_pin(text: str) -> bool:
    return MIN_LENGTH <= len(text) <= MAX_LENGTH and text.isascii() and text.isdigit()


def iso(ts: datetime | None) -> str | None:
    """Instants as the PIN file, ``pin list`` and the API show them: UTC, seconds, ``Z``."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if ts is not None else None


def card_account(lot: str, serial: int) -> str:
    """A card's account id: ``card-<lot>-<serial>``, the serial printed beside the PIN."""
    return f"card-{lot}-{serial}"


def reference(lot: str, serial: int) -> str:
    """The ledger reference of a PIN's credit: one per PIN, so it is applied at most once."""
    return f"pin:{lot}:{serial}"
