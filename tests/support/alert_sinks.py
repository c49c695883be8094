"""Real receivers for alert tests: an SMTP server (aiosmtpd) and an HTTP server, in the test's loop.

Both listen on a loopback port the test chooses, can be stopped and started again on the same
port (an outage), and keep what they accepted.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
from dataclasses import dataclass, field
from email.message import EmailMessage

from aiosmtpd.smtp import SMTP, Envelope, Session


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode()
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        self.sink.messages.append(msg)
        self.sink.recipients.append(list(envelope.rcpt_tos))
        return "250 OK"


@dataclass
class SmtpSink:
    """An SMTP server accepting every message; ``messages`` in arrival order."""

    port: int
    messages: list[EmailMessage] = field(default_factory=list)
    recipients: list[list[str]] = field(default_factory=list)
    _server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        handler = _Handler(self)
        self._server = await loop.create_server(lambda: SMTP(handler, hostname="sink.test"), "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int


@dataclass
class HttpSink:
    """A minimal HTTP/1.1 server: records each POST and answers ``status`` (settable between requests)."""

    port: int
    status: int = 200
    requests: list[Request] = field(default_factory=list)
    _server: asyncio.base_events.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            path = lines[0].split(" ")[1]
            headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append(Request(path, headers, body, self.status))
            writer.write(f"HTTP/1.1 {self.status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
        finally:
            writer.close()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def accepted(self) -> list[Request]:
        """The requests answered with a 2xx."""
        return [r for r in self.requests if 200 <= r.status < 300]
