"""structlog configuration: JSON lines (or console) on stderr, secrets redacted.

Every charging event is logged with the session id and account bound
(``ocs.charging``, front ends); a processor replaces the value of any key that
looks like a secret (passwords, RADIUS secrets, CHAP data, authenticators) so a
secret never reaches a log line, whatever the caller passed.

One line per charging event is on the hot path (it was ~20 % of the CPU of a
CCR), so: loggers are cached on first use, secret-key checks are memoised,
JSON is rendered by orjson, and inside the event loop the lines of one loop
tick are written to stderr with one ``write`` (outside a loop, at once). Under
load the per-request info lines are sampled (``ocs.log_sampling``).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import MutableMapping
from typing import IO, Any

import orjson
import structlog

from ocs.log_sampling import request_lines

_SECRET_MARKERS = ("password", "secret", "chap", "authenticator", "pw")


_secret_keys: dict[str, bool] = {}
_writer: LineWriter | None = None


def _is_secret(key: str) -> bool:
    hit = _secret_keys.get(key)
    if hit is None:
        k = key.lower()
        hit = k == "pw" or any(m in k for m in _SECRET_MARKERS if m != "pw")
        if len(_secret_keys) < 4096:  # keys are code-chosen names; the bound only guards odd callers
            _secret_keys[key] = hit
    return hit


def _scrub(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "***" if isinstance(k, str) and _is_secret(k) else _scrub(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_scrub(v) for v in value)
    return value


def redact(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Replace secret-looking keys, also inside nested dicts and lists."""
    for key, value in list(event.items()):
        if _is_secret(key):
            event[key] = "***"
        elif isinstance(value, (dict, list, tuple)):
            event[key] = _scrub(value)
    return event


def _render_json(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> str:
    return orjson.dumps(event, default=repr, option=orjson.OPT_NON_STR_KEYS).decode()


def flush() -> None:
    """Write out lines still waiting for the end of a loop tick (process exit), drops not yet reported first."""
    request_lines.report()
    if _writer is not None:
        _writer.flush()


class LineWriter:
    """A structlog logger writing one line per event; inside a running loop, one write per tick."""

    def __init__(self, file: IO[str]) -> None:
        self.file = file
        self._lines: list[str] = []

    def msg(self, message: str) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.file.write(message + "\n")
            self.file.flush()
            return
        if not self._lines:
            loop.call_soon(self.flush)
        self._lines.append(message)

    def flush(self) -> None:
        lines, self._lines = self._lines, []
        if lines:
            self.file.write("\n".join(lines) + "\n")
            self.file.flush()

    log = debug = info = warn = warning = error = critical = exception = fatal = failure = err = msg


def charging_event(logger: Any, *, session: str, account: str, peer: str, outcome: str, **kw: Any) -> None:
    """Log one charging event with the fields every such line carries (docs/observability.md)."""
    logger.info("charging", session=session, account=account, peer=peer, outcome=outcome, **kw)


def configure(level: str = "info", fmt: str = "json", request_lines_per_second: int = 0) -> None:
    """Set up structlog for a daemon; ``request_lines_per_second`` is the per-request line budget (ocs.log_sampling)."""
    request_lines.configure(request_lines_per_second)
    lvl = getattr(logging, level.upper(), logging.INFO)
    renderer: Any = _render_json if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    global _writer  # noqa: PLW0603 - one process-wide writer, flushed at exit by flush()
    _writer = writer = LineWriter(sys.stderr)
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
        logger_factory=lambda *_args: writer,
        cache_logger_on_first_use=True,
    )


def configure_cli() -> None:
    """ocsctl: warnings and errors on stderr (stdout is the verb's answer, one JSON document with --json).

    Left alone when something configured logging already (a daemon, a test harness); the stream is looked
    up at each line, so a caller that swaps sys.stderr (a test's capture) is followed.
    """
    if structlog.is_configured():
        return
    structlog.configure(
        processors=[structlog.processors.add_log_level, redact, structlog.dev.ConsoleRenderer(colors=False)],
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=lambda *_args: structlog.PrintLogger(sys.stderr),
        cache_logger_on_first_use=False,
    )
