"""The pages in a real headless browser (Playwright driving the system's chromium): sign
in through the local Twitch's consent page, read the dashboard the simulation filled,
pick windows, download CSV, and the refusals a viewer meets. Screenshots of every page
go to ``tests/artifacts/screenshots/``; any console error fails the test."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from receiver.pages.render import figure
from schema.settings import Settings
from streamfold.simulate import build_plan
from streamfold.simulate_live import send_with_local_twitch
from streamfold.twitch_local_run import DEMO_VIEWER, build_standin
from tests.conftest import SECRET
from tests.connected import Connected, connected, folding

pytestmark = [pytest.mark.usefixtures("redis"), pytest.mark.slow, pytest.mark.timeout(240)]

CHROMIUM = os.environ.get("STREAMFOLD_CHROMIUM", "/usr/bin/chromium")
HAVE_CHROMIUM = Path(CHROMIUM).exists()
SCREENSHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not HAVE_CHROMIUM:
        pytest.fail(
            f"no chromium at {CHROMIUM}: install it (apt-get install -y chromium) or set "
            "STREAMFOLD_CHROMIUM; the browser tests never skip"
        )
    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


async def _simulated(env: Connected) -> None:
    plan = build_plan(
        SECRET.encode(), channels=1, messages=80, chatters=8, now=datetime.now(UTC), seed=3
    )
    base = str(env.browser.base_url).rstrip("/")
    async with folding(env):
        await send_with_local_twitch(env.settings, base, f"{base}/eventsub/callback", plan)


def _watch_console(page: Page, errors: list[str]) -> None:
    def seen(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(f"{page.url}: {message.text}")

    page.on("console", seen)
    page.on("pageerror", lambda exc: errors.append(f"{page.url}: {exc}"))


async def _shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


async def _sign_in(page: Page, base: str, role: str, user_id: str, shot: str) -> None:
    await page.goto(base + "/")
    await page.get_by_role("link", name=f"Sign in as {role}").first.click()
    await page.wait_for_url("**/oauth2/authorize**")
    await _shot(page, shot)
    await page.check(f"input[name=user_id][value='{user_id}']")
    await page.get_by_role("button", name="Authorize").click()
    await page.get_by_role("link", name="Continue to streamfold").click()


async def _api(page: Page, path: str) -> dict[str, object]:
    """The JSON API, with the browser's own cookie."""
    answer = await page.request.get(path)
    assert answer.status == 200, await answer.text()
    body: dict[str, object] = await answer.json()
    return body


async def _cards(page: Page) -> dict[str, str]:
    cards = page.locator("#summary dd")
    return {
        str(await c.get_attribute("data-field")): (await c.inner_text()).strip()
        for c in await cards.all()
    }


def _as_shown(summary: dict[str, object]) -> dict[str, str]:
    fields = ("hours_streamed", "sessions", "chat_messages", "unique_chatters")
    fields += ("avg_viewers", "peak_viewers", "hours_watched")
    return {f: figure(summary[f]) for f in fields}


async def test_streamer_and_viewer_pages_in_a_real_browser(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], browser: Browser
) -> None:
    standin = build_standin(settings.twitch_client_id or "", "test-client-secret")
    async with connected(settings, sessions, standin) as env:
        await _simulated(env)
        base = str(env.browser.base_url).rstrip("/")
        errors: list[str] = []
        context = await browser.new_context(base_url=base, viewport={"width": 375, "height": 800})
        page = await context.new_page()
        _watch_console(page, errors)

        await page.goto(base + "/")
        await _shot(page, "home")
        await _sign_in(page, base, "streamer", "1001", "consent")
        await page.wait_for_url("**/channels/1001")
        await page.get_by_role("heading", name="Summary").wait_for()
        await _shot(page, "dashboard")

        # The cards show what the API answers for the same window.
        api = await _api(page, "/api/channels/1001/summary?window=7d")
        assert api["sessions"] == 1
        assert api["avg_viewers"] is not None
        assert await _cards(page) == _as_shown(api)
        rows = page.locator("#sessions tbody tr[data-session]")
        assert await rows.count() == 1
        assert (await page.locator("svg.chart rect.messages").count()) >= 1

        # The window picker changes the figures: a custom window before the stream is empty.
        await page.get_by_role("link", name="24h", exact=True).click()
        await page.wait_for_url("**window=24h")
        assert await _cards(page) == _as_shown(
            await _api(page, "/api/channels/1001/summary?window=24h")
        )
        old = (datetime.now(UTC) - timedelta(days=20)).date()
        await page.fill("input[name=from]", old.isoformat())
        await page.fill("input[name=to]", (old + timedelta(days=2)).isoformat())
        await page.get_by_role("button", name="Custom").click()
        await page.wait_for_url("**from=*")
        assert (await _cards(page))["sessions"] == "0"
        await _shot(page, "dashboard-custom-window")
        await page.get_by_role("link", name="7d", exact=True).click()

        # CSV downloads: the existing API's CSV, with the browser's cookie.
        async with page.expect_download() as download_info:
            await page.get_by_role("link", name="Download sessions (CSV)").click()
        download = await download_info.value
        csv_text = await asyncio.to_thread(Path(await download.path()).read_text)
        assert csv_text.splitlines()[0].startswith("id,broadcaster_id,started_at")
        assert len(csv_text.splitlines()) == 2

        # An API token from the dashboard (JavaScript on /api/tokens).
        await page.fill("#new-token input[name=name]", "my frontend")
        await page.get_by_role("button", name="Create token").click()
        await page.locator("#token-secret").filter(has_text="sfk_").wait_for()
        await page.locator("#tokens li").filter(has_text="my frontend").wait_for()

        # A viewer sees their own chat, and a 403 page on the streamer's dashboard.
        viewer_context = await browser.new_context(
            base_url=base, viewport={"width": 375, "height": 800}
        )
        viewer = await viewer_context.new_page()
        _watch_console(viewer, errors)
        await _sign_in(viewer, base, "viewer", DEMO_VIEWER[0], "consent-viewer")
        await viewer.wait_for_url("**/me")
        stats = await _api(viewer, "/api/viewers/me/stats?window=7d")
        assert stats["chat_messages"]
        assert (await viewer.locator("#viewer-total strong").inner_text()) == figure(
            stats["chat_messages"]
        )
        await _shot(viewer, "viewer")
        refused = await viewer.goto(base + "/channels/1001")
        assert refused is not None
        assert refused.status == 403
        await viewer.get_by_role("heading", name="Not yours to see").wait_for()
        await _shot(viewer, "forbidden")
        missing = await viewer.goto(base + "/no/such/page")
        assert missing is not None
        assert missing.status == 404
        assert "text/html" in (missing.headers.get("content-type") or "")

        # Delete asks first, and a form without its CSRF token is refused.
        await page.get_by_role("link", name="Delete my data…").click()
        await page.wait_for_url("**/channels/1001/delete")
        await _shot(page, "confirm-delete")
        assert await env.scalar("SELECT count(*) FROM stream_sessions") == 1
        forged = await page.request.post(
            base + "/channels/1001/delete", form={"confirm": "yes", "csrf_token": "x"}
        )
        assert forged.status == 403
        assert await env.scalar("SELECT count(*) FROM stream_sessions") == 1
        await page.get_by_role("button", name="Delete everything").click()
        assert page.url.endswith("/channels/1001/delete")  # the box must be ticked first
        await page.check("input[name=confirm]")
        await page.get_by_role("button", name="Delete everything").click()
        await page.wait_for_url("**done=deleted")
        assert await env.scalar("SELECT count(*) FROM stream_sessions") == 0

        # Anonymous: a sign-in page, while the API keeps answering JSON.
        anonymous = await (await browser.new_context(base_url=base)).new_page()
        _watch_console(anonymous, errors)
        answer = await anonymous.goto(base + "/me")
        assert answer is not None
        assert answer.status == 401
        await anonymous.get_by_role("heading", name="Please sign in").wait_for()
        async with httpx.AsyncClient(base_url=base) as http:
            api_refusal = await http.get("/api/me", headers={"accept": "text/html"})
        assert api_refusal.json()["error"] == "not_authenticated"
        csp = (await page.request.get(base + "/")).headers["content-security-policy"]
        assert "script-src 'self'" in csp
        assert "unsafe-inline" not in csp
        # The 403/404 pages above log "failed to load resource" for their own status.
        assert [e for e in errors if "status of 40" not in e] == []
