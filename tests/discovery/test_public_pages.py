"""The public pages over what the collector stored from the stand-in: live now by viewers
with filters and pages, search, a channel's page (chat figures only for its streamer),
categories, thumbnails only from Twitch's image host, and the public rate limit."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from receiver.app import create_app
from receiver.pages import discover
from receiver.pages.chart import MAX_POINTS, snapshots_svg
from tests.aggregator.reconcile_rig import Rig, base_time
from tests.conftest import Clock, serve
from tests.discovery.rig import collect, top_stream
from tests.receiver.people import add_user, sign_in

MIN = timedelta(minutes=1)
TWITCH_THUMB = "https://static-cdn.jtvnw.net/previews-ttv/live_user_shroud-{width}x{height}.jpg"


@pytest.fixture
async def site(rig: Rig, clock: Clock) -> AsyncIterator[tuple[Rig, httpx.AsyncClient]]:
    """A tracked channel (100) and three collected ones, one of them with a thumbnail on
    Twitch's image host; 203 goes offline after the first poll."""
    t = base_time() - timedelta(hours=1)
    await rig.connect(["100"])
    rig.go_live("100", "s100", t - 30 * MIN, viewers=500, title="<script>x</script>")
    top_stream(rig, "201", "shroud", 900, t - 20 * MIN, game=("33", "Shooters"))
    rig.standin.live["201"]["thumbnail_url"] = TWITCH_THUMB
    top_stream(rig, "202", "pokimane", 700, t - 20 * MIN, game=("33", "Shooters"), language="de")
    top_stream(rig, "203", "xqcow", 300, t - 20 * MIN, game=("44", "Chess"))
    await rig.run(t)
    await collect(rig, t)
    rig.go_offline("203")
    await rig.run(t + 5 * MIN)
    await collect(rig, t + 5 * MIN)
    await collect(rig, t + 10 * MIN)
    clock.now = t + 10 * MIN
    settings = rig.settings.model_copy(update={"public_rate_limit": 1000})
    async with (
        serve(create_app(settings, clock=clock)) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        yield rig, client


def _ids(html: str, attribute: str) -> list[str]:
    return re.findall(rf'{attribute}="([^"]+)"', html)


async def test_live_now_page_by_viewers_with_filters_and_pages(
    site: tuple[Rig, httpx.AsyncClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, client = site
    page = await client.get("/live")
    assert page.status_code == 200
    assert _ids(page.text, "data-channel") == ["201", "202", "100"]
    assert '<strong data-field="viewers">900</strong>' in page.text
    assert "&lt;script&gt;x&lt;/script&gt;" in page.text  # titles are escaped

    german = await client.get("/live", params={"game": "shooters", "language": "DE"})
    assert _ids(german.text, "data-channel") == ["202"]
    blank = await client.get("/live", params={"game": "", "language": " "})  # the form, empty
    assert _ids(blank.text, "data-channel") == ["201", "202", "100"]
    by_id = await client.get("/live", params={"game": "33"})
    assert _ids(by_id.text, "data-channel") == ["201", "202"]

    monkeypatch.setattr(discover, "LIVE_PAGE", 2)
    first = await client.get("/live")
    assert _ids(first.text, "data-channel") == ["201", "202"]
    following = re.search(r'href="(/live\?cursor=[^"]+)" rel="next"', first.text)
    assert following is not None
    second = await client.get(following.group(1).replace("&amp;", "&"))
    assert _ids(second.text, "data-channel") == ["100"]
    assert 'rel="next"' not in second.text
    bad = await client.get("/live", params={"cursor": "nope"})
    assert bad.status_code == 422
    assert "text/html" in bad.headers["content-type"]


async def test_thumbnails_only_from_twitchs_image_host_under_a_strict_policy(
    site: tuple[Rig, httpx.AsyncClient],
) -> None:
    _, client = site
    page = await client.get("/live")
    images = re.findall(r"<img [^>]*>", page.text)
    # Only 201's thumbnail is on Twitch's host; the stand-in's placeholders are left out.
    assert len(images) == 1
    assert (
        'src="https://static-cdn.jtvnw.net/previews-ttv/live_user_shroud-320x180.jpg"'
        in (images[0])
    )
    assert 'loading="lazy"' in images[0]
    assert 'referrerpolicy="no-referrer"' in images[0]
    csp = page.headers["content-security-policy"]
    assert "img-src 'self' data: https://static-cdn.jtvnw.net;" in csp
    assert "script-src 'self';" in csp
    assert "unsafe-inline" not in csp
    # Pages that show no Twitch images keep the narrower policy.
    home = (await client.get("/")).headers["content-security-policy"]
    assert "jtvnw" not in home


def test_twitch_image_refuses_other_hosts() -> None:
    assert discover.twitch_image("https://static-cdn.jtvnw.net/a-{width}x{height}.jpg", 3, 2) == (
        "https://static-cdn.jtvnw.net/a-3x2.jpg"
    )
    for elsewhere in (
        "https://example.invalid/a.jpg",
        "http://static-cdn.jtvnw.net/a.jpg",
        "https://static-cdn.jtvnw.net.evil.example/a.jpg",
        "https://user@static-cdn.jtvnw.net/a.jpg",
        None,
        "",
    ):
        assert discover.twitch_image(elsewhere, 1, 1) is None, elsewhere


async def test_search_page_tolerates_typos_and_asks_for_two_characters(
    site: tuple[Rig, httpx.AsyncClient],
) -> None:
    _, client = site
    empty = await client.get("/search")
    assert empty.status_code == 200
    assert 'name="q"' in empty.text
    assert 'id="results"' not in empty.text
    typo = await client.get("/search", params={"q": "shruod"})
    assert _ids(typo.text, "data-channel")[:1] == ["201"]
    assert "live · 900 viewers" in typo.text
    offline = await client.get("/search", params={"q": "xqco"})
    assert _ids(offline.text, "data-channel") == ["203"]
    assert "live ·" not in offline.text
    short = await client.get("/search", params={"q": "x"})
    assert short.status_code == 422
    assert "q: must be 2 to 64 printable characters" in short.text
    assert 'name="q"' in short.text  # the form again, to try once more


async def test_channel_page_shows_history_and_chat_figures_only_to_the_streamer(
    site: tuple[Rig, httpx.AsyncClient],
) -> None:
    rig, client = site
    anonymous = await client.get("/c/100", params={"window": "24h"})
    assert anonymous.status_code == 200
    assert _ids(anonymous.text, "data-stream") == ["s100"]
    assert 'data-field="peak_viewers">500<' in anonymous.text
    assert "chat_messages" not in anonymous.text
    assert "Chatters" not in anonymous.text
    assert "<svg" in anonymous.text
    assert "<polyline" in anonymous.text  # two snapshots of s100

    await add_user(rig.sessions, "100", "channel_100", streamer=True)
    own = await client.get(
        "/c/100", params={"window": "24h"}, headers=await sign_in(rig.sessions, rig.settings, "100")
    )
    assert 'data-field="chat_messages">0<' in own.text
    assert 'href="/channels/100"' in own.text
    await add_user(rig.sessions, "555", "someone", streamer=True)
    other = await client.get(
        "/c/100", params={"window": "24h"}, headers=await sign_in(rig.sessions, rig.settings, "555")
    )
    assert "chat_messages" not in other.text

    collected = await client.get("/c/203", params={"window": "24h"})
    assert _ids(collected.text, "data-stream") == ["st203"]
    assert "Last seen live" in collected.text
    assert "Chess" in collected.text
    missing = await client.get("/c/999")
    assert missing.status_code == 404
    assert "Nothing here" in missing.text
    assert (await client.get("/c/abc")).status_code == 422


async def test_categories_page_by_hours_watched_with_a_window_picker(
    site: tuple[Rig, httpx.AsyncClient],
) -> None:
    _, client = site
    page = await client.get("/categories", params={"window": "24h"})
    assert _ids(page.text, "data-category") == ["33", "509658", "44"]
    assert 'href="?window=30d"' in page.text
    assert 'href="?window=24h" aria-current="page"' in page.text
    assert 'href="/live?game=33"' in page.text
    before = (datetime.now(UTC) - timedelta(days=30)).date()
    old = await client.get(
        "/categories", params={"from": before.isoformat(), "to": before.isoformat()}
    )
    assert "No category was streamed in this window." in old.text
    bad = await client.get("/categories", params={"window": "1y"})
    assert bad.status_code == 422


async def test_home_lists_who_is_live_and_links_the_public_pages(
    site: tuple[Rig, httpx.AsyncClient],
) -> None:
    _, client = site
    home = await client.get("/")
    top = home.text.split('id="home-live"')[1].split("</ol>")[0]
    assert re.findall(r'href="/c/(\d+)"', top) == ["201", "202", "100"]
    for link in ("/live", "/search", "/categories"):
        assert f'href="{link}"' in home.text


async def test_public_pages_share_the_public_rate_limit(rig: Rig, clock: Clock) -> None:
    settings = rig.settings.model_copy(update={"public_rate_limit": 3})
    async with (
        serve(create_app(settings, clock=clock)) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        clock.now = clock.now.replace(second=1, microsecond=0)
        assert (await client.get("/live")).status_code == 200
        assert (await client.get("/api/live")).status_code == 200
        assert (await client.get("/categories")).status_code == 200
        refused = await client.get("/search", params={"q": "shroud"})
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "59"
        assert "text/html" in refused.headers["content-type"]
        assert "Too many requests" in refused.text
        assert (await client.get("/api/live")).status_code == 429
        assert (await client.get("/static/app.css")).status_code == 200  # assets are not counted
        clock.now += timedelta(minutes=1)
        assert (await client.get("/c/100")).status_code == 404  # counted again, and answered


def test_snapshot_chart_thins_long_series_and_breaks_between_streams() -> None:
    start = datetime(2024, 5, 1, tzinfo=UTC)
    first = [(start + i * 5 * MIN, 100 + i % 7) for i in range(90 * 288 // 2)]
    later = start + timedelta(days=60)
    second = [(later + i * 5 * MIN, 50) for i in range(3 * 288)]  # three days
    svg = snapshots_svg([first, second])
    lines = re.findall(r'<polyline class="viewers" points="([^"]+)"', svg)
    assert len(lines) == 2
    assert len(lines[0].split()) <= MAX_POINTS
    assert len(svg) < 20_000
    assert snapshots_svg([]) == ""
    # The axis spans the snapshots, not the window: three snapshots are a line.
    short = snapshots_svg([[(start, 5), (start + 5 * MIN, 6), (start + 10 * MIN, 7)]])
    assert len(re.findall(r'points="([^"]+)"', short)[0].split()) == 3
    lone = snapshots_svg([[(start, 7)]])
    assert "<circle" in lone
    assert "7 viewers" in lone
