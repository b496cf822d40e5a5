"""The read routes over HTTP (uvicorn) against rows folded by the real pipeline."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from receiver.reads import queries
from schema.settings import Settings
from tests.conftest import Clock
from tests.receiver.api_script import ALICE, BOB, NOW, S2, S3, VIEWER, A, fold_history
from tests.receiver.people import add_user, sign_in

SESSION_FIELDS = [
    "id", "broadcaster_id", "started_at", "ended_at", "duration_seconds", "chat_messages",
    "unique_chatters", "peak_viewers", "avg_viewers", "hours_watched", "title", "game_name",
    "started_by", "ended_by", "chat_complete",
    # Beyond PRODUCT.md's list: whether retention left the edges exact (README "Data lifecycle").
    "chat_exact_edges",
]  # fmt: skip
HOUR_FIELDS = [
    "hour", "live_seconds", "chat_messages", "unique_chatters", "avg_viewers", "peak_viewers",
    "hours_watched", "chat_complete",
]  # fmt: skip
SUMMARY_FIELDS = [
    "hours_streamed", "sessions", "chat_messages", "unique_chatters", "avg_viewers",
    "peak_viewers", "hours_watched", "chat_exact_edges", "viewer_exact_edges",
]  # fmt: skip


@pytest.fixture
async def alice(
    receiver: httpx.AsyncClient,
    clock: Clock,
    drain: Callable[[], Any],
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> dict[str, str]:
    """Alice's signed-in browser, after the history was folded."""
    await add_user(sessions, ALICE, "alice", streamer=True)
    await add_user(sessions, BOB, "bob", streamer=True)
    await fold_history(receiver, clock, drain, sessions)
    return await sign_in(sessions, settings, ALICE)


def test_wire_shapes_use_exactly_the_product_field_names() -> None:
    assert list(queries.Session.__struct_fields__) == SESSION_FIELDS
    assert list(queries.HourRow.__struct_fields__) == HOUR_FIELDS
    assert list(queries.Summary.__struct_fields__)[3:] == SUMMARY_FIELDS


async def test_sessions_newest_first_with_exact_chat_and_an_open_session(
    receiver: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    response = await receiver.get(f"/api/channels/{ALICE}/sessions", headers=alice)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert (body["since"], body["until"]) == ("2024-04-29T10:30:00Z", "2024-05-06T10:30:00Z")
    assert body["next"] is None
    s3, s2, s1 = body["sessions"]
    assert list(s1) == SESSION_FIELDS
    assert s1 == {
        "id": "s1",
        "broadcaster_id": ALICE,
        "started_at": "2024-05-04T11:40:00Z",
        "ended_at": "2024-05-04T12:11:00Z",
        "duration_seconds": 1860,
        "chat_messages": 30,
        "unique_chatters": 4,
        "peak_viewers": 30,
        "avg_viewers": 20.0,
        "hours_watched": 5.0,
        "title": "Speedrun",
        "game_name": "Celeste",
        "started_by": "eventsub",
        "ended_by": "eventsub",
        "chat_complete": True,
        "chat_exact_edges": True,
    }
    assert (s2["id"], s2["duration_seconds"], s2["chat_messages"], s2["unique_chatters"]) == (
        "s2", 1800, 5, 2,
    )  # fmt: skip
    assert (s2["peak_viewers"], s2["avg_viewers"], s2["hours_watched"]) == (None, None, None)
    assert (s3["id"], s3["ended_at"], s3["ended_by"]) == ("s3", None, None)
    assert s3["duration_seconds"] == (NOW - S3).total_seconds() == 5400
    assert (s3["chat_messages"], s3["unique_chatters"]) == (2, 2)


async def test_hourly_rows_are_utc_hours_with_live_chat_and_viewers(
    receiver: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    response = await receiver.get(
        f"/api/channels/{ALICE}/hourly",
        params={"since": "2024-05-04T11:30:00Z", "until": "2024-05-04T13:00:00Z"},
        headers=alice,
    )
    assert response.status_code == 200, response.text
    hours = response.json()["hours"]
    assert [list(h) for h in hours] == [HOUR_FIELDS, HOUR_FIELDS]
    assert hours == [
        {
            "hour": "2024-05-04T11:00:00Z",
            "live_seconds": 1200,
            "chat_messages": 20,
            "unique_chatters": 3,
            "avg_viewers": 15.0,
            "peak_viewers": 20,
            "hours_watched": 2.5,
            "chat_complete": True,
        },
        {
            "hour": "2024-05-04T12:00:00Z",
            "live_seconds": 660,
            "chat_messages": 10,
            "unique_chatters": 3,
            "avg_viewers": 30.0,
            "peak_viewers": 30,
            "hours_watched": 2.5,
            "chat_complete": True,
        },
    ]


async def test_summary_counts_distinct_chatters_over_the_window_not_per_hour(
    receiver: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    whole = await receiver.get(f"/api/channels/{ALICE}/summary", headers=alice)
    assert whole.status_code == 200, whole.text
    body = whole.json()
    assert list(body)[3:] == SUMMARY_FIELDS
    assert body == {
        "broadcaster_id": ALICE,
        "since": "2024-04-29T10:30:00Z",
        "until": "2024-05-06T10:30:00Z",
        "hours_streamed": round((1860 + 1800 + 5400) / 3600, 4),
        "sessions": 3,
        "chat_messages": 37,
        "unique_chatters": 6,  # a..f; the hourly rows alone would add up to 3+3+2+1+1
        "avg_viewers": 20.0,
        "peak_viewers": 30,
        "hours_watched": 5.0,
        "chat_exact_edges": True,
        "viewer_exact_edges": True,
    }
    # 11:55-12:05 cuts both hours: messages 15..24 by a,b,c,a,b then d,b,c,d,b
    edges = await receiver.get(
        f"/api/channels/{ALICE}/summary",
        params={"since": "2024-05-04T11:55:00Z", "until": "2024-05-04T12:05:00+00:00"},
        headers=alice,
    )
    assert (edges.json()["chat_messages"], edges.json()["unique_chatters"]) == (10, 4)
    day = await receiver.get(
        f"/api/channels/{ALICE}/summary",
        params={"window": "24h", "until": "2024-05-05T12:00:00Z"},
        headers=alice,
    )
    assert (day.json()["sessions"], day.json()["chat_messages"]) == (2, 10 + 5)
    # A window starting inside s2: s2 counts from there on, s1 (over before) does not.
    inside = await receiver.get(
        f"/api/channels/{ALICE}/summary",
        params={"since": "2024-05-05T10:10:00Z"},
        headers=alice,
    )
    assert (inside.json()["sessions"], inside.json()["hours_streamed"]) == (
        2,
        round((1200 + 5400) / 3600, 4),
    )


async def test_csv_has_a_header_row_and_the_same_values_as_json(
    receiver: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    url = f"/api/channels/{ALICE}/sessions"
    as_json = (await receiver.get(url, headers=alice)).json()["sessions"]
    response = await receiver.get(url, params={"format": "csv"}, headers=alice)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert response.text.splitlines()[0] == ",".join(SESSION_FIELDS)
    assert [r["id"] for r in rows] == ["s3", "s2", "s1"]
    for row, expected in zip(rows, as_json, strict=True):
        for name, value in expected.items():
            wanted = (
                "" if value is None else str(value).lower() if isinstance(value, bool) else value
            )
            assert row[name] == str(wanted), name

    hourly = await receiver.get(
        f"/api/channels/{ALICE}/hourly",
        params={"window": "90d"},
        headers={**alice, "Accept": "text/csv"},
    )
    assert hourly.headers["content-type"].startswith("text/csv")
    hours = list(csv.DictReader(io.StringIO(hourly.text)))
    assert list(hours[0]) == HOUR_FIELDS
    assert [(h["hour"], h["chat_messages"]) for h in hours[:2]] == [
        ("2024-05-04T11:00:00Z", "20"),
        ("2024-05-04T12:00:00Z", "10"),
    ]
    assert sum(int(h["chat_messages"]) for h in hours) == 37
    assert sum(int(h["live_seconds"]) for h in hours) == 1860 + 1800 + 5400


async def test_pagination_walks_every_session_exactly_once(
    receiver: httpx.AsyncClient,
    alice: dict[str, str],
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions.begin() as session:
        for i in range(23):  # same start for pairs: the id breaks the tie
            start = S2 - timedelta(hours=2 + 3 * (i // 2))
            await session.execute(
                text("""INSERT INTO stream_sessions (id, broadcaster_id, started_at, ended_at,
                                                     started_by, ended_by)
                        VALUES (:id, :b, :s, :e, 'eventsub', 'eventsub')"""),
                {"id": f"x{i:02d}", "b": ALICE, "s": start, "e": start + timedelta(hours=1)},
            )
    seen: list[str] = []
    starts: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": "5", **({"cursor": cursor} if cursor else {})}
        page = (
            await receiver.get(f"/api/channels/{ALICE}/sessions", params=params, headers=alice)
        ).json()
        pages += 1
        seen += [s["id"] for s in page["sessions"]]
        starts += [s["started_at"] for s in page["sessions"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(["s1", "s2", "s3", *(f"x{i:02d}" for i in range(23))])
    assert len(seen) == len(set(seen)) == 26
    assert pages == 6
    assert starts == sorted(starts, reverse=True)


async def test_viewer_stats_are_the_callers_own_chat_per_channel_and_day(
    receiver: httpx.AsyncClient,
    alice: dict[str, str],
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    await add_user(sessions, VIEWER, "viewer_a", streamer=False)
    viewer = await sign_in(sessions, settings, VIEWER)
    by_day = (await receiver.get("/api/viewers/me/stats", headers=viewer)).json()
    assert by_day["user_id"] == A
    assert (by_day["since"], by_day["until"]) == ("2024-04-29T10:00:00Z", "2024-05-06T11:00:00Z")
    assert by_day["granularity"] == "day"
    assert by_day["chat_messages"] == 7 + 3 + 1
    [channel] = by_day["channels"]
    assert (channel["broadcaster_id"], channel["login"]) == (ALICE, "channel_1337")  # from events
    assert (channel["chat_messages"], channel["active_hours"]) == (11, 3)
    assert channel["periods"] == [
        {"start": "2024-05-04T00:00:00Z", "chat_messages": 7, "active_hours": 1},
        {"start": "2024-05-05T00:00:00Z", "chat_messages": 3, "active_hours": 1},
        {"start": "2024-05-06T00:00:00Z", "chat_messages": 1, "active_hours": 1},
    ]
    by_hour = await receiver.get(
        "/api/viewers/me/stats",
        params={
            "granularity": "hour",
            "since": "2024-05-04T11:30:00Z",
            "until": "2024-05-06T00:00:00Z",
        },
        headers=viewer,
    )
    assert [p["start"] for p in by_hour.json()["channels"][0]["periods"]] == [
        "2024-05-04T11:00:00Z",
        "2024-05-05T10:00:00Z",
    ]


async def test_me_says_who_i_am_and_what_i_may_read(
    receiver: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    me = (await receiver.get("/api/me", headers=alice)).json()
    assert me == {
        "user_id": ALICE,
        "login": "alice",
        "display_name": "Alice",
        "roles": ["viewer", "streamer"],
        "channels": [
            {
                "broadcaster_id": ALICE,
                "login": "channel_1337",  # the channel's login as its events carry it
                "display_name": "Channel_1337",
                "connected": True,
                "chat_blocked_reason": None,
            }
        ],
        "reads_all_channels": False,
        "authenticated_by": "session",
    }


async def test_a_since_after_now_without_until_is_an_empty_window_not_an_error(
    receiver: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    # A client clock a minute ahead, while s3 is still live: nothing has happened yet.
    ahead = {"since": "2024-05-06T10:31:00Z"}
    base = f"/api/channels/{ALICE}"
    sessions = await receiver.get(f"{base}/sessions", params=ahead, headers=alice)
    assert sessions.status_code == 200, sessions.text
    assert sessions.json()["sessions"] == []
    assert (sessions.json()["since"], sessions.json()["until"]) == (
        "2024-05-06T10:31:00Z",
        "2024-05-06T10:31:00Z",
    )
    hourly = await receiver.get(f"{base}/hourly", params=ahead, headers=alice)
    assert (hourly.status_code, hourly.json()["hours"]) == (200, [])
    as_csv = await receiver.get(f"{base}/hourly", params={**ahead, "format": "csv"}, headers=alice)
    assert as_csv.status_code == 200
    assert as_csv.text.splitlines() == [",".join(HOUR_FIELDS)]
    summary = (await receiver.get(f"{base}/summary", params=ahead, headers=alice)).json()
    assert {k: summary[k] for k in SUMMARY_FIELDS} == {
        "hours_streamed": 0.0, "sessions": 0, "chat_messages": 0, "unique_chatters": 0,
        "avg_viewers": None, "peak_viewers": None, "hours_watched": None,
        "chat_exact_edges": True, "viewer_exact_edges": True,
    }  # fmt: skip
    # Exactly now is empty too; the explicit contradiction stays a 422.
    at_now = {"since": "2024-05-06T10:30:00Z"}
    now = await receiver.get(f"{base}/hourly", params=at_now, headers=alice)
    assert (now.status_code, now.json()["hours"]) == (200, [])
    both = await receiver.get(
        f"{base}/hourly",
        params={"since": "2024-05-06T10:31:00Z", "until": "2024-05-06T10:31:00Z"},
        headers=alice,
    )
    assert (both.status_code, both.json()["error"]) == (422, "invalid_parameter")
    assert both.json()["detail"] == "since: must be before until"
