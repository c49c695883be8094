"""structlog configuration: JSON lines (or console) on stderr, secrets redacted.

Every charging event is logged with the session id and account bound
(``ocs.charging``, front ends); a processor replaces the value of any key that
looks like a secret (passwords, RADIUS secrets, CHAP data, authenticators) so a
secret never reaches a log line, whatever the caller passed.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_SECRET_MARKERS = ("password", "secret", "chap", "authenticator", "pw")


def _is_secret(key: str) -> bool:
    k = key.lower()
    return k == "pw" or any(m in k for m in _SECRET_MARKERS if m != "pw")


def _scrub(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "***" if isinstance(k, str) and _is_secret(k) else _scrub(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_scrub(v) for v in value)
    return value


def redact(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Replace secret-looking keys, also inside nested dicts and lists."""
    for key in list(event):
        event[key] = "***" if _is_secret(key) else _scrub(event[key])
    return event


def charging_event(logger: Any, *, session: str, account: str, peer: str, outcome: str, **kw: Any) -> None:
    """Log one charging event with the fields every such line carries (spec section 8)."""
    logger.info("charging", session=session, account=account, peer=peer, outcome=outcome, **kw)


def configure(level: str = "info", fmt: str = "json") -> None:
    lvl = getattr(logging, level.upper(), logging.INFO)
    renderer: Any = (structlog.processors.JSONRenderer() if fmt == "json"
                     else structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
