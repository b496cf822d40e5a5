"""The public routes over what the collector and reconciliation stored from the stand-in:
shapes and order, chat figures only for the streamer, typo-tolerant search, CSV, and the
per-client rate limit."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest

from receiver.app import create_app
from tests.aggregator.reconcile_rig import Rig, base_time
from tests.conftest import Clock, serve
from tests.discovery.rig import collect, top_stream
from tests.receiver.people import add_user, sign_in

MIN = timedelta(minutes=1)


@pytest.fixture
async def world(rig: Rig, clock: Clock) -> AsyncIterator[tuple[Rig, httpx.AsyncClient]]:
    """A tracked channel (100, live), three collected ones (one leaves between polls, one
    category renamed), two polls, the rollup caught up; the API served at the last poll."""
    t = base_time() - timedelta(hours=1)
    await rig.connect(["100"])
    rig.go_live("100", "s100", t - 30 * MIN, viewers=500, title="=SUM(A1) tracked")
    top_stream(rig, "201", "shroud", 900, t - 20 * MIN, game=("33", "Old name"))
    top_stream(rig, "202", "pokimane", 700, t - 20 * MIN, game=("33", "Old name"), language="de")
    top_stream(rig, "203", "xqcow", 300, t - 20 * MIN, game=("44", "Chess"))
    await rig.run(t)
    await collect(rig, t)
    rig.go_offline("203")
    for renamed in ("201", "202"):  # Twitch renames the category for every stream
        rig.standin.live[renamed]["game_name"] = "New name"
    await rig.run(t + 5 * MIN)
    await collect(rig, t + 5 * MIN)
    await collect(rig, t + 10 * MIN)  # the rollup reads up to its lag
    clock.now = t + 10 * MIN
    settings = rig.settings.model_copy(update={"public_rate_limit": 1000})
    async with (
        serve(create_app(settings, clock=clock)) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        yield rig, client


async def test_live_now_by_viewers_with_filters_and_pages(
    world: tuple[Rig, httpx.AsyncClient],
) -> None:
    _, client = world
    live = (await client.get("/api/live")).json()
    assert [s["channel"]["id"] for s in live["streams"]] == ["201", "202", "100"]
    first = live["streams"][0]
    assert first["channel"] == {
        "id": "201",
        "login": "shroud",
        "display_name": "Shroud",
        "profile_image_url": "https://example.invalid/shroud.png",
    }
    assert first["category"] == {"id": "33", "name": "New name"}  # renamed: by id
    assert first["viewers"] == 900
    assert first["uptime_seconds"] == 30 * 60
    assert first["stream_id"] == "st201"
    assert first["thumbnail_url"].endswith("{width}x{height}.jpg")
    assert live["next"] is None

    by_name = (await client.get("/api/live", params={"game": "new name"})).json()
    assert [s["channel"]["id"] for s in by_name["streams"]] == ["201", "202"]
    by_id = (await client.get("/api/live", params={"game": "33", "language": "de"})).json()
    assert [s["channel"]["id"] for s in by_id["streams"]] == ["202"]

    page1 = (await client.get("/api/live", params={"limit": 2})).json()
    page2 = (await client.get("/api/live", params={"limit": 2, "cursor": page1["next"]})).json()
    assert [s["channel"]["id"] for s in page1["streams"] + page2["streams"]] == [
        "201", "202", "100",
    ]  # fmt: skip
    assert page2["next"] is None
    bad = await client.get("/api/live", params={"cursor": "nope"})
    assert bad.status_code == 422
    assert bad.json()["error"] == "invalid_parameter"

    rows = list(csv.DictReader(io.StringIO((await client.get("/api/live?format=csv")).text)))
    assert [r["channel_id"] for r in rows] == ["201", "202", "100"]
    assert rows[2]["title"] == "'=SUM(A1) tracked"  # formula-safe


async def test_search_tolerates_typos_and_puts_live_channels_first(
    world: tuple[Rig, httpx.AsyncClient],
) -> None:
    _, client = world
    typo = (await client.get("/api/search", params={"q": "shruod"})).json()
    assert [c["id"] for c in typo["channels"]][:1] == ["201"]
    prefix = (await client.get("/api/search", params={"q": "poki"})).json()
    assert [c["login"] for c in prefix["channels"]] == ["pokimane"]
    # "xqcow" went offline: found, after the live ones that match.
    both = (await client.get("/api/search", params={"q": "o"})).status_code
    assert both == 422  # at least 2 characters
    wide = (await client.get("/api/search", params={"q": "%_"})).json()
    assert wide["channels"] == []  # wildcards are taken literally
    found = (await client.get("/api/search", params={"q": "xqco"})).json()["channels"]
    assert [(c["id"], c["live"]) for c in found] == [("203", False)]
    assert found[0]["hours_watched_30d"] == round(300 * 300 / 3600, 3)


async def test_history_hides_chat_figures_from_everyone_but_the_streamer(
    world: tuple[Rig, httpx.AsyncClient],
) -> None:
    rig, client = world
    anonymous = (await client.get("/api/channels/100/history", params={"window": "24h"})).json()
    assert anonymous["tracked"] is True
    [stream] = anonymous["streams"]
    assert stream["id"] == "s100"
    assert stream["peak_viewers"] == 500
    assert "chat_messages" not in stream
    assert "unique_chatters" not in stream

    await add_user(rig.sessions, "100", "channel_100", streamer=True)
    headers = await sign_in(rig.sessions, rig.settings, "100")
    own = (
        await client.get("/api/channels/100/history", params={"window": "24h"}, headers=headers)
    ).json()
    assert own["streams"][0]["chat_messages"] == 0


async def test_a_collected_channel_has_seen_streams_and_snapshots(
    world: tuple[Rig, httpx.AsyncClient],
) -> None:
    _, client = world
    history = (
        await client.get(
            "/api/channels/203/history", params={"window": "24h", "detail": "snapshots"}
        )
    ).json()
    assert history["tracked"] is False
    [seen] = history["streams"]
    assert seen["id"] == "st203"
    assert seen["ended_at"] is None
    assert seen["last_seen_at"] is not None
    assert (seen["peak_viewers"], seen["avg_viewers"], seen["game_name"]) == (300, 300.0, "Chess")
    assert [s["viewer_count"] for s in history["snapshots"]] == [300]
    assert (await client.get("/api/channels/999/history")).status_code == 404
    rows = list(csv.DictReader(io.StringIO(
        (await client.get("/api/channels/202/history?format=csv&window=24h")).text
    )))  # fmt: skip
    assert [r["id"] for r in rows] == ["st202"]


async def test_category_table_by_hours_watched(world: tuple[Rig, httpx.AsyncClient]) -> None:
    _, client = world
    table = (await client.get("/api/stats/categories", params={"window": "24h"})).json()
    names = [(c["id"], c["name"], c["channels"]) for c in table["categories"]]
    assert names == [("33", "New name", 2), ("509658", "Just Chatting", 1), ("44", "Chess", 1)]
    chess = table["categories"][2]
    assert chess["hours_streamed"] == round(300 / 3600, 3)
    assert chess["peak_viewers"] == 300
    limited = (await client.get("/api/stats/categories?window=24h&limit=1")).json()
    assert len(limited["categories"]) == 1
    text_csv = (await client.get("/api/stats/categories?window=24h&format=csv")).text
    assert text_csv.splitlines()[0].startswith("id,name,hours_streamed")


async def test_rate_limit_answers_429_then_recovers(rig: Rig, clock: Clock) -> None:
    settings = rig.settings.model_copy(update={"public_rate_limit": 3})
    async with (
        serve(create_app(settings, clock=clock)) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        clock.now = clock.now.replace(second=1, microsecond=0)
        statuses = [(await client.get("/api/live")).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        refused = await client.get("/api/stats/categories")
        assert refused.status_code == 429
        assert refused.json()["error"] == "rate_limited"
        assert refused.headers["Retry-After"] == "59"
        # Another address behind a proxy that is not trusted is still this client.
        spoofed = await client.get("/api/live", headers={"X-Forwarded-For": "203.0.113.9"})
        assert spoofed.status_code == 429
        clock.now += timedelta(minutes=1)
        assert (await client.get("/api/live")).status_code == 200

    trusting = settings.model_copy(update={"trusted_proxies": "127.0.0.1"})
    async with (
        serve(create_app(trusting, clock=clock)) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        for address in ("203.0.113.1", "203.0.113.2"):
            forwarded = {"X-Forwarded-For": f"198.51.100.7, {address}"}
            statuses = [
                (await client.get("/api/live", headers=forwarded)).status_code for _ in range(4)
            ]
            assert statuses == [200, 200, 200, 429], address


async def test_docs_render_from_local_assets_only(receiver: httpx.AsyncClient) -> None:
    page = await receiver.get("/docs")
    assert page.status_code == 200
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "http" not in page.text.replace('lang="en"', "")  # nothing from elsewhere
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "init.js"):
        served = await receiver.get(f"/docs/assets/{asset}")
        assert served.status_code == 200, asset
    assert "/openapi.json" in (await receiver.get("/docs/assets/init.js")).text
