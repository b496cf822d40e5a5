"""Search reads ``channel_search``, the narrow copy of what it matches and orders by: the
copy follows the profiles (and only when what it holds changes), and search answers
exactly what it answered when it read the profiles themselves."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from receiver.reads import discovery
from tests.aggregator.reconcile_rig import Rig, base_time
from tests.discovery.rig import collect, top_stream

MIN = timedelta(minutes=1)

# Search as it read ``channel_profiles`` before the narrow table (migration 0009's).
PROFILE_SEARCH = text(r"""
    WITH candidates AS (
        SELECT p.*, greatest(similarity(p.login, :q), similarity(p.display_name, :q)) AS score
        FROM channel_profiles p
        WHERE p.login % :q OR p.display_name % :q
           OR p.login ILIKE :prefix ESCAPE '\' OR p.display_name ILIKE :prefix ESCAPE '\'
        ORDER BY score DESC, p.broadcaster_id
        LIMIT 200
    )
    SELECT c.broadcaster_id, c.login, c.display_name, c.profile_image_url,
           c.broadcaster_type, c.live_at IS NOT NULL AS live, c.live_viewers AS viewers,
           c.recent_viewer_seconds / 3600.0 AS hours_watched_30d
    FROM candidates c
    ORDER BY live DESC, hours_watched_30d DESC, c.score DESC, c.login, c.broadcaster_id
    LIMIT :limit
""")
COPY = "SELECT broadcaster_id, login, display_name, live, recent_viewer_seconds"
SEARCH_ROWS = f"{COPY} FROM channel_search ORDER BY 1"
FROM_PROFILES = (
    "SELECT broadcaster_id, login, display_name, live_at IS NOT NULL, recent_viewer_seconds "
    "FROM channel_profiles ORDER BY 1"
)
SYLLABLES = ["sh", "ro", "ud", "ka", "mi", "to", "ne", "zu", "li", "ra", "vo", "ge"]


def swapped(word: str, rng: random.Random) -> str:
    if len(word) < 4:
        return word
    at = rng.randrange(1, len(word) - 2)
    return word[:at] + word[at + 1] + word[at] + word[at + 2 :]


async def rows_of(sessions: async_sessionmaker[AsyncSession], sql: str) -> list[tuple[Any, ...]]:
    async with sessions() as session:
        return [tuple(r) for r in (await session.execute(text(sql))).all()]


async def test_search_answers_what_it_answered_from_the_profiles(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        if not await session.scalar(text("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")):
            # The embedded server: likeness is SQL there (migration 0005), a scan per
            # search, and these ~600 searches take minutes; the other run compares them.
            pytest.skip("no pg_trgm on this server: search scans (its SQL fallback, README)")
    rng = random.Random(15)
    logins = [
        "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4)))
        + (str(rng.randint(0, 99)) if rng.random() < 0.3 else "")
        for _ in range(600)
    ]
    at = base_time()
    async with sessions.begin() as session:
        for n, login in enumerate(logins):
            await session.execute(
                text("""INSERT INTO channel_profiles
                            (broadcaster_id, login, display_name, profile_image_url,
                             broadcaster_type, live_at, live_viewers, recent_viewer_seconds)
                        VALUES (:b, :l, :d, :i, 'partner', :at, :v, :r)"""),
                {
                    "b": str(1000 + n),
                    "l": login,
                    "d": login.title() if n % 5 else f"The {login}_tv",
                    "i": f"https://img.example/{n}.png",
                    "at": at if n % 4 == 0 else None,
                    "v": rng.randint(1, 900) if n % 4 == 0 else None,
                    "r": rng.choice([0, 0, 3600, 7200, rng.randint(0, 10**7)]),
                },
            )
    async with sessions.begin() as session:  # renames, going live and offline, new figures
        for n in rng.sample(range(600), 120):
            change = n % 3
            if change == 0:
                login = "".join(rng.choice(SYLLABLES) for _ in range(3))
                await session.execute(
                    text("UPDATE channel_profiles SET login = :l, display_name = :d "
                         "WHERE broadcaster_id = :b"),
                    {"l": login, "d": login.upper(), "b": str(1000 + n)},
                )  # fmt: skip
            elif change == 1:
                await session.execute(
                    text("UPDATE channel_profiles SET live_at = CASE WHEN live_at IS NULL "
                         "THEN CAST(:at AS timestamptz) END, live_viewers = 5 "
                         "WHERE broadcaster_id = :b"),
                    {"at": at, "b": str(1000 + n)},
                )  # fmt: skip
            else:
                await session.execute(
                    text("UPDATE channel_profiles SET recent_viewer_seconds = :r "
                         "WHERE broadcaster_id = :b"),
                    {"r": rng.randint(0, 10**6), "b": str(1000 + n)},
                )  # fmt: skip
    assert await rows_of(sessions, SEARCH_ROWS) == await rows_of(sessions, FROM_PROFILES)

    queries = {"sh", "ro", "zu", "the", "_tv", "%", "ne_", "100", "shro", "kami", "xyzzy"}
    for login in rng.sample(logins, 60):
        queries.add(login[: rng.randint(2, 6)])
        queries.add(swapped(login, rng))
        queries.add(login.upper())
    compared = 0
    for q in sorted(queries):
        for limit in (1, 20, 50):
            async with sessions() as session:
                await session.execute(discovery._THRESHOLD)
                bound = {"q": q, "prefix": discovery.like_prefix(q), "limit": limit}
                old = [tuple(r) for r in (await session.execute(PROFILE_SEARCH, bound)).all()]
            async with sessions() as session:
                new = await discovery.search(session, q, limit=limit)
            assert [
                (m.broadcaster_id, m.login, m.display_name, m.profile_image_url,
                 m.broadcaster_type, m.live, m.viewers, m.hours_watched_30d)
                for m in new
            ] == [(*r[:7], float(r[7])) for r in old], (q, limit)  # fmt: skip
            compared += bool(old)
    assert compared > 100  # most queries find something


async def test_a_search_row_is_rewritten_only_when_what_it_holds_changes(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    at = base_time()
    async with sessions.begin() as session:
        await session.execute(
            text("""INSERT INTO channel_profiles (broadcaster_id, login, display_name)
                    VALUES ('7', 'seven', 'Seven'), ('8', 'eight', 'Eight')""")
        )
    versions = "SELECT broadcaster_id, xmin::text FROM channel_search ORDER BY 1"
    before = dict(await rows_of(sessions, versions))
    unchanged = [  # what the collector writes every run, and an upsert of the same name
        "UPDATE channel_profiles SET live_viewers = 5, live_title = 't', last_seen_at = :at",
        "UPDATE channel_profiles SET login = login, display_name = display_name",
        "UPDATE channel_profiles SET recent_viewer_seconds = recent_viewer_seconds",
    ]
    for sql in unchanged:
        async with sessions.begin() as session:
            await session.execute(text(sql), {"at": at} if ":at" in sql else {})
        assert dict(await rows_of(sessions, versions)) == before, sql
    changes = [
        "UPDATE channel_profiles SET live_at = :at WHERE broadcaster_id = '7'",
        "UPDATE channel_profiles SET live_at = NULL WHERE broadcaster_id = '7'",
        "UPDATE channel_profiles SET recent_viewer_seconds = 60 WHERE broadcaster_id = '7'",
        "UPDATE channel_profiles SET display_name = 'SEVEN' WHERE broadcaster_id = '7'",
        "UPDATE channel_profiles SET login = 'sieben' WHERE broadcaster_id = '7'",
    ]
    for sql in changes:
        async with sessions.begin() as session:
            await session.execute(text(sql), {"at": at} if ":at" in sql else {})
        now = dict(await rows_of(sessions, versions))
        assert now["7"] != before["7"], sql
        assert now["8"] == before["8"], sql
        assert await rows_of(sessions, SEARCH_ROWS) == await rows_of(sessions, FROM_PROFILES)
        before = now
    async with sessions.begin() as session:
        await session.execute(text("DELETE FROM channel_profiles WHERE broadcaster_id = '8'"))
    assert await rows_of(sessions, SEARCH_ROWS) == [("7", "sieben", "SEVEN", False, 60)]


async def test_the_search_rows_follow_the_collector(rig: Rig) -> None:
    t = base_time()
    top_stream(rig, "201", "leaves", 900, t - 20 * MIN)
    top_stream(rig, "202", "stays", 800, t - 20 * MIN)
    await collect(rig, t)
    assert await rig.rows(SEARCH_ROWS) == await rig.rows(FROM_PROFILES)
    assert [(r.broadcaster_id, r.live) for r in await rig.rows(SEARCH_ROWS)] == [
        ("201", True),
        ("202", True),
    ]
    rig.go_offline("201")
    rig.standin.live["202"] |= {"viewer_count": 850, "title": "new title"}
    await collect(rig, t + 5 * MIN)
    assert await rig.rows(SEARCH_ROWS) == await rig.rows(FROM_PROFILES)
    assert [(r.broadcaster_id, r.live) for r in await rig.rows(SEARCH_ROWS)] == [
        ("201", False),
        ("202", True),
    ]
    async with rig.sessions() as session:
        found = await discovery.search(session, "leaves", limit=5)
    assert [(m.broadcaster_id, m.live) for m in found] == [("201", False)]
