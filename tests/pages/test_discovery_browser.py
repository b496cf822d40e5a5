"""The public pages in a real headless browser, anonymous, at 375 px: the collector fills
them from the Twitch stand-in's top streams, and the browser sees live now in viewer
order, finds a channel by a misspelt name with the keyboard alone, reads its history
without chat figures, and the categories. Screenshots go beside the other pages'."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from playwright.async_api import Browser, Page, Route

from receiver.app import create_app
from tests.aggregator.conftest import rig as rig
from tests.aggregator.reconcile_rig import Rig, base_time
from tests.conftest import Clock, serve
from tests.discovery.rig import collect, top_stream
from tests.pages.test_browser import _shot, _watch_console
from tests.pages.test_browser import browser as browser

pytestmark = [pytest.mark.usefixtures("redis"), pytest.mark.slow, pytest.mark.timeout(240)]

MIN = timedelta(minutes=1)
THUMB = "https://static-cdn.jtvnw.net/previews-ttv/live_user_shroud-{width}x{height}.jpg"
# A 1x1 PNG: Twitch's image host is not reachable from the tests, so the browser's
# requests to it are answered here (they still pass the page's Content-Security-Policy).
PIXEL = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d49444154789c6360f8cfc00000030101005c1c2d4a0000000049454e44ae426082"
)


@pytest.fixture
async def site(rig: Rig, clock: Clock) -> AsyncIterator[str]:
    t = base_time() - timedelta(hours=1)
    await rig.connect(["100"])
    rig.go_live("100", "s100", t - 30 * MIN, viewers=450, title="tracked and chatting")
    top_stream(rig, "201", "shroud", 900, t - 20 * MIN, game=("33", "Shooters"))
    rig.standin.live["201"]["thumbnail_url"] = THUMB
    top_stream(rig, "202", "pokimane", 700, t - 20 * MIN, game=("33", "Shooters"))
    top_stream(rig, "203", "xqcow", 300, t - 20 * MIN, game=("44", "Chess"), language="fr")
    for at in (t, t + 5 * MIN, t + 10 * MIN):  # three polls, as the worker's cron runs them
        await rig.run(at)
        await collect(rig, at)
        rig.standin.live["201"]["viewer_count"] += 50
    clock.now = t + 11 * MIN  # a minute after the last poll (windows end before now)
    settings = rig.settings.model_copy(update={"public_rate_limit": 1000})
    async with serve(create_app(settings, clock=clock)) as url:
        yield url.rstrip("/")


async def _texts(page: Page, selector: str) -> list[str]:
    return [(await e.inner_text()).strip() for e in await page.locator(selector).all()]


async def _tab_to(page: Page, name: str, presses: int = 30) -> None:
    """Press Tab until the element named ``name`` has the focus."""
    for _ in range(presses):
        await page.keyboard.press("Tab")
        focused = await page.evaluate(
            "() => document.activeElement.getAttribute('name') || document.activeElement.innerText"
        )
        if focused and focused.strip() == name:
            return
    raise AssertionError(f"{name} is not reachable with Tab")


async def test_an_anonymous_browser_finds_live_channels_history_and_categories(
    site: str, browser: Browser
) -> None:
    errors: list[str] = []
    context = await browser.new_context(base_url=site, viewport={"width": 375, "height": 800})

    async def twitch_image(route: Route) -> None:
        await route.fulfill(status=200, content_type="image/png", body=PIXEL)

    await context.route("https://static-cdn.jtvnw.net/**", twitch_image)
    page = await context.new_page()
    _watch_console(page, errors)

    # Home lists who is live; the nav leads to live now, in viewer order.
    await page.goto(site + "/")
    assert await _texts(page, "#home-live a") == ["Shroud", "Pokimane", "Channel_100", "Xqcow"]
    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Live now").click()
    await page.wait_for_url("**/live")
    cards = page.locator("#live li.stream")
    ids = [await c.get_attribute("data-channel") for c in await cards.all()]
    assert ids == ["201", "202", "100", "203"]
    assert await _texts(page, "#live [data-field=viewers]") == ["1,000", "700", "450", "300"]
    async with httpx.AsyncClient(base_url=site) as http:
        api = (await http.get("/api/live")).json()["streams"]
    assert [s["channel"]["id"] for s in api] == ids
    thumb = page.locator("#live li[data-channel='201'] img.thumb")
    await thumb.scroll_into_view_if_needed()
    await page.wait_for_function("() => document.querySelector('img.thumb').naturalWidth > 0")
    assert await page.locator("#live img").count() == 1  # stand-in placeholders left out
    no_overflow = "() => document.documentElement.scrollWidth <= window.innerWidth"
    assert await page.evaluate(no_overflow)
    await _shot(page, "live-now")

    # A filter by language, from the form.
    await page.fill("input[name=language]", "fr")
    await page.get_by_role("button", name="Filter").click()
    await page.wait_for_url("**language=fr**")
    assert [await c.get_attribute("data-channel") for c in await cards.all()] == ["203"]

    # Search with a typo, by keyboard only: the nav link, the field, Enter.
    await page.goto(site + "/search")
    await page.keyboard.press("Tab")  # the skip link comes first
    await _tab_to(page, "q")
    await page.keyboard.type("shruod")
    await page.keyboard.press("Enter")
    await page.wait_for_url("**/search?q=shruod")
    first = page.locator("#results li").first
    assert await first.get_attribute("data-channel") == "201"
    assert "live · 1,000 viewers" in await first.inner_text()
    assert await page.evaluate(no_overflow)
    await _shot(page, "search")

    # The tracked channel's public page: history and viewer figures, no chat figures.
    await page.goto(site + "/search?q=channel_10")
    await page.get_by_role("link", name="Channel_100").first.click()
    await page.wait_for_url("**/c/100")
    await page.locator("#streams tr[data-stream='s100']").wait_for()
    headers = await _texts(page, "#streams th")
    assert "Avg viewers" in headers
    assert "Chat" not in headers
    assert "Chatters" not in headers
    assert await page.locator("#streams [data-field=chat_messages]").count() == 0
    assert await page.locator("#streams [data-field=peak_viewers]").inner_text() == "450"
    assert await page.locator("svg.chart polyline.viewers").count() == 1
    await _shot(page, "public-channel")
    await page.goto(site + "/c/201?window=24h")
    assert "Last seen live" in await _texts(page, "#streams th")
    assert await page.locator("#streams [data-field=peak_viewers]").inner_text() == "1,000"

    # Categories, by hours watched, and the window picker.
    await page.get_by_role("link", name="Categories").first.click()
    await page.wait_for_url("**/categories")
    rows = page.locator("#categories tbody tr[data-category]")
    assert [await r.get_attribute("data-category") for r in await rows.all()] == [
        "33", "509658", "44",
    ]  # fmt: skip
    await page.get_by_role("link", name="24h", exact=True).click()
    await page.wait_for_url("**window=24h")
    assert await rows.count() == 3
    await _shot(page, "categories")
    assert errors == []
