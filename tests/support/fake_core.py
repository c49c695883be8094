"""A stand-in charging core for front-end component tests: records calls, answers what it is told."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from ocs.model import ChargeRequest, EventAction, Outcome, Status


@dataclass
class FakeCore:
    """Implements :class:`ocs.model.ChargingCore`; ``outcome`` answers every charging verb."""

    delay: float = 0.0
    outcome: Outcome = field(default_factory=lambda: Outcome(Status.GRANTED, granted_units=60, validity_seconds=100))
    bound: bool = True  # what bind() answers
    calls: list[ChargeRequest] = field(default_factory=list)
    verbs: list[str] = field(default_factory=list)
    origins: list[tuple[str, str]] = field(default_factory=list)

    async def _answer(self, verb: str, req: ChargeRequest) -> Outcome:
        self.calls.append(req)
        self.verbs.append(verb)
        await asyncio.sleep(self.delay)
        return self.outcome

    async def authorize(self, req: ChargeRequest) -> Outcome:
        return await self._answer("authorize", req)

    async def initiate(self, req: ChargeRequest) -> Outcome:
        return await self._answer("initiate", req)

    async def update(self, req: ChargeRequest) -> Outcome:
        return await self._answer("update", req)

    async def terminate(self, req: ChargeRequest) -> Outcome:
        return await self._answer("terminate", req)

    async def terminate_session(self, req: ChargeRequest) -> Outcome:
        return await self._answer("terminate_session", req)

    async def event(self, req: ChargeRequest, action: EventAction) -> Outcome:
        return await self._answer("event", req)

    async def bind(self, old: str, new: str, subscriber: str, hold_seconds: int | None = None,
                   origin: str = "") -> bool:
        self.verbs.append(f"bind {old} -> {new}")
        return self.bound

    async def terminate_origin(self, origin: str, cause: str) -> int:
        self.verbs.append("terminate_origin")
        self.origins.append((origin, cause))
        return 1
