"""The precomputed category table of a preset window answers what the rollup would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from aggregator import collector
from receiver.reads import discovery

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
DAY = timedelta(days=1)
_ROWS = text("""
    INSERT INTO category_days (day, game_id, broadcaster_id, samples, seconds, viewer_seconds,
                               viewer_sum, peak_viewers)
    SELECT date_trunc('day', CAST(:now AS timestamptz)) - d * interval '1 day',
           (1 + (b + d) % 3)::text, b::text, 12, 3600, 3600 * (b + 1), 12 * (b + 1), b + 2
    FROM generate_series(0, 40) AS d, generate_series(1, 5) AS b
""")


async def live_sum(session: AsyncSession, since: datetime, until: datetime) -> list[object]:
    rows = await session.execute(
        discovery._CATEGORIES, {"since": since, "until": until, "limit": 50}
    )
    return [discovery.CategoryRow(**r._mapping) for r in rows]


async def test_preset_windows_match_the_rollup_and_stale_ones_are_not_used(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions.begin() as session:
        await session.execute(_ROWS, {"now": NOW})
        mark = "INSERT INTO rollup_marks (name, upto) VALUES ('category_days', :upto)"
        await session.execute(text(mark), {"upto": NOW - timedelta(minutes=5)})
        assert await collector._refresh_windows(session, NOW) > 0
    async with sessions() as session:
        for back in collector.CATEGORY_WINDOWS:
            since = NOW - back
            precomputed = await session.execute(
                discovery._PRECOMPUTED,
                {"since": since, "until": NOW, "limit": 50, "seconds_back": back.total_seconds()},
            )
            expected = await live_sum(session, since, NOW)
            assert [discovery.CategoryRow(**r._mapping) for r in precomputed] == expected
            assert await discovery.categories(session, since, NOW, limit=50) == expected
        # A day later the table covers other days until the next refresh: summed instead.
        later = NOW + DAY
        month = timedelta(days=30)
        expected = await live_sum(session, later - month, later)
        assert await discovery.categories(session, later - month, later, limit=50) == expected
        # A window ending before the mark is not the precomputed one either.
        earlier = NOW - timedelta(hours=1)
        expected = await live_sum(session, earlier - month, earlier)
        assert await discovery.categories(session, earlier - month, earlier, limit=50) == expected
