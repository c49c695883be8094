"""The dashboard and self-care in a real browser: Debian's headless Chromium driven by Playwright, against
a running ocsd with its API port (docs/api.md).  Screenshots of every page land in the test's tmp dir
(``OCS_SCREENSHOTS=DIR`` keeps them), so a person can look at what the test saw."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from tests.support.daemon import Daemon, free_port, provision_demo, require_services

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture
def web_daemon(tmp_path: Path) -> Iterator[Daemon]:
    require_services()
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is needed (scripts/bootstrap.sh installs it)")
    port = free_port()
    d = Daemon(tmp_path, extra_toml=f'[api]\nlisten = "127.0.0.1:{port}"\ntoken_cache_seconds = 0\n')
    d.ports["api"] = port
    d.write_config()
    d.create_database()
    provision_demo(d)
    _calls(d)
    try:
        d.start()
        yield d
    finally:
        d.cleanup()


def _calls(d: Daemon) -> None:
    """Two of alice's calls today and a refused attempt, straight into the CDR table (reports read them)."""
    async def go() -> None:
        conn = await asyncpg.connect(d.dsn)
        now = datetime.now(UTC).replace(microsecond=0)
        try:
            await conn.executemany(
                "INSERT INTO cdrs (record_id, session_id, account, called, prefix, destination, start_time,"
                " duration, billed_seconds, charge, currency, termination_cause) VALUES"
                " ($1, $1, 'alice', $2, '49', $3, $4, $5, $5, $6, 'EUR', $7)",
                [("c1", "4930123456", "Germany fixed", now, 61, 86_000, "NORMAL"),
                 ("c2", "4915123456", "Germany mobile", now, 125, 260_000, "NORMAL"),
                 ("c3", "4915123456", "Germany mobile", now, 0, 0, "out_of_credit")])
        finally:
            await conn.close()
    asyncio.run(go())


def _shot(page: Page, out: Path, name: str) -> None:
    page.screenshot(path=str(out / f"{name}.png"), full_page=True)


def test_operator_and_subscriber_in_chromium(web_daemon: Daemon, tmp_path: Path) -> None:
    d = web_daemon
    base = f"http://127.0.0.1:{d.ports['api']}"
    token = d.ocsctl("api", "token", "create", "ops", "--role", "operator", json_out=True)["token"]
    shots = Path(os.environ.get("OCS_SCREENSHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        page.goto(f"{base}/ui")
        expect(page).to_have_url(f"{base}/ui/login")
        _shot(page, shots, "01-login")
        page.fill("#token", token)
        page.click("button[type=submit]")
        expect(page.get_by_role("heading", name="Overview")).to_be_visible()
        expect(page.locator("canvas#chart[data-drawn='1']")).to_be_visible()  # Chart.js drew (vendored, no CDN)
        _shot(page, shots, "02-overview")

        page.get_by_role("link", name="Accounts", exact=True).click()
        page.fill("input[name=q]", "ali")
        page.get_by_role("button", name="Search").click()
        page.get_by_role("link", name="alice").click()
        expect(page.locator("#balance")).to_have_text("10.00 EUR")
        page.fill("#amount", "5")
        page.get_by_role("button", name="Top up").click()
        expect(page.locator(".flash")).to_contain_text("Topped up 5.00.")
        expect(page.locator("#balance")).to_have_text("15.00 EUR")
        _shot(page, shots, "03-account")
        assert d.ocsctl("account", "show", "alice", json_out=True)["balance"] == "15.00"

        page.get_by_role("link", name="Reports").click()
        page.select_option("select[name=by]", "destination")
        page.get_by_role("button", name="Show").click()
        expect(page.locator("canvas#chart[data-drawn='1']")).to_be_visible()
        expect(page.locator("tr.total")).to_contain_text("66.67")  # ASR: 2 answered of 3 attempts
        _shot(page, shots, "04-reports")

        page.get_by_role("link", name="CDRs").click()
        expect(page.locator("table")).to_contain_text("Germany mobile")
        _shot(page, shots, "05-cdrs")
        page.get_by_role("link", name="Sessions").click()
        _shot(page, shots, "06-sessions")
        page.get_by_role("button", name="Log out").click()
        expect(page).to_have_url(f"{base}/ui/login")

        page.goto(f"{base}/my")
        expect(page).to_have_url(f"{base}/my/login")
        page.fill("#alias", "4915110000001")
        page.fill("#password", "alice-secret")
        page.click("button[type=submit]")
        expect(page.locator("#balance")).to_have_text("15.00 EUR")
        expect(page.locator("table").first).to_contain_text("Germany fixed")
        expect(page.locator("table").first).to_contain_text("refused: out of credit")
        _shot(page, shots, "07-self-care")
        browser.close()
