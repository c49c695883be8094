"""ocs.log_sampling: per-request info lines within a per-second budget; drops counted and reported once a second."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from ocs import config, log_sampling
from ocs.log import configure, flush
from ocs.log_sampling import RequestLines, request_lines

ROOT = Path(__file__).resolve().parents[2]


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(log_sampling, "monotonic", c)
    return c


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    """Back to no limit (drops a test left are reported into a throwaway capture) and default structlog."""
    yield
    with structlog.testing.capture_logs():
        request_lines.configure(0)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def lines(err: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in err.splitlines() if line.strip()]


def sampled(err: str) -> list[dict[str, object]]:
    return [r for r in lines(err) if r["event"] == "request_lines_sampled"]


def test_budget_per_second_then_drops_counted_per_event(clock: Clock) -> None:
    s = RequestLines(3)
    assert [s.allow("ccr") for _ in range(3)] == [True] * 3
    assert not s.allow("ccr") and not s.allow("access") and not s.allow("ccr")
    assert s.dropped() == {"ccr": 2, "access": 1}
    clock.now += 0.999
    assert not s.allow("accounting")  # still the same second
    clock.now += 0.001
    assert [s.allow("ccr") for _ in range(4)] == [True, True, True, False]  # a new window, a new budget


def test_drop_count_line_at_the_next_window_outside_a_loop(clock: Clock, capsys: pytest.CaptureFixture[str]) -> None:
    configure("info", "json", 2)
    capsys.readouterr()
    for _ in range(5):
        request_lines.allow("ccr")
    request_lines.allow("access")
    assert sampled(capsys.readouterr().err) == []  # nothing yet: the window is not over
    clock.now += 1.0
    assert request_lines.allow("ccr")
    (rec,) = sampled(capsys.readouterr().err)
    assert rec["level"] == "info" and rec["dropped"] == {"ccr": 3, "access": 1}
    assert rec["total"] == 4 and rec["per_second"] == 2
    assert request_lines.dropped() == {}


def test_drop_count_line_when_the_window_ends_in_a_loop(capsys: pytest.CaptureFixture[str]) -> None:
    """In the daemon a timer writes the line at the end of the second, also when no request follows."""
    configure("info", "json", 1)
    capsys.readouterr()

    async def go() -> list[dict[str, object]]:
        assert request_lines.allow("ccr")
        assert not request_lines.allow("ccr") and not request_lines.allow("ccr")
        await asyncio.sleep(1.2)
        flush_after_tick = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(flush_after_tick.set_result, None)  # the writer's tick
        await flush_after_tick
        return sampled(capsys.readouterr().err)

    (rec,) = asyncio.run(go())
    assert rec["dropped"] == {"ccr": 2} and rec["total"] == 2


def test_flush_at_exit_reports_drops_not_yet_reported(clock: Clock, capsys: pytest.CaptureFixture[str]) -> None:
    configure("info", "json", 1)
    request_lines.allow("ccr")
    request_lines.allow("accounting")
    flush()
    (rec,) = sampled(capsys.readouterr().err)
    assert rec["dropped"] == {"accounting": 1}


def test_zero_is_no_limit(clock: Clock) -> None:
    s = RequestLines(0)
    assert all(s.allow("ccr") for _ in range(100_000))
    assert s.dropped() == {}


def test_reconfigure_turns_sampling_off_and_reports(clock: Clock, capsys: pytest.CaptureFixture[str]) -> None:
    """SIGHUP with log.request_lines_per_second = 0: every line from then on; drops so far are reported."""
    configure("info", "json", 1)
    request_lines.allow("ccr")
    request_lines.allow("ccr")
    request_lines.configure(0)
    assert all(request_lines.allow("ccr") for _ in range(1000))
    (rec,) = sampled(capsys.readouterr().err)
    assert rec["dropped"] == {"ccr": 1}


def test_negative_budget_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        RequestLines(-1)


def test_warnings_and_errors_are_never_sampled(clock: Clock, capsys: pytest.CaptureFixture[str]) -> None:
    configure("info", "json", 1)
    log = structlog.get_logger("ocs.diameter")
    assert request_lines.allow("ccr") and not request_lines.allow("ccr")  # the budget is spent
    for _ in range(3):
        log.warning("ccr_store_unavailable", peer="pgw")
        log.error("ccr_failed", peer="pgw")
    events = [r["event"] for r in lines(capsys.readouterr().err)]
    assert events == ["ccr_store_unavailable", "ccr_failed"] * 3


def test_only_per_request_info_lines_are_sampled() -> None:
    """Every sampler check guards a log.info of the same event, written only when allowed (no kwargs built else)."""
    uses = []
    for path in sorted(p for p in (ROOT / "ocs").rglob("*.py") if p.name != "log_sampling.py"):
        src = path.read_text().splitlines()
        for i, line in enumerate(src):
            m = re.search(r"if request_lines\.allow\(\"(\w+)\"\):", line)
            if m:
                assert re.match(rf'\s+log\.info\("{m[1]}", ', src[i + 1]), f"{path}:{i + 2}"
                uses.append(m[1])
    assert sorted(uses) == ["access", "accounting", "ccr"]


def test_config_key_default_and_validation() -> None:
    assert config.from_mapping({}, env={}).log.request_lines_per_second == 200
    assert config.from_mapping({"log": {"request_lines_per_second": 0}}, env={}).log.request_lines_per_second == 0
    for bad in (-1, "200", 1.5, True):
        with pytest.raises(config.ConfigError, match=r"^log\.request_lines_per_second: ") as exc:
            config.from_mapping({"log": {"request_lines_per_second": bad}}, env={})
        assert "\n" not in str(exc.value)
