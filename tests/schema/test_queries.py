"""Read models on hand-made rows: edge cases the pipeline rarely produces."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schema import queries

NOW = datetime(2024, 5, 4, 12, 20, tzinfo=UTC)


async def test_a_session_stamped_slightly_in_the_future_has_no_negative_live_time(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    # A sender clock 30 s ahead of ours: the stream "starts" after our now.
    async with sessions.begin() as session:
        await session.execute(
            text(
                "INSERT INTO stream_sessions (id, broadcaster_id, started_at, started_by) "
                "VALUES ('s', '9', :t, 'eventsub')"
            ),
            {"t": NOW + timedelta(seconds=30)},
        )
    async with sessions() as session:
        hours = await queries.hourly(session, "9", NOW - timedelta(hours=1), NOW, now=NOW)
        total = await queries.summary(session, "9", NOW - timedelta(hours=1), NOW, now=NOW)
    assert all(h.live_seconds >= 0 for h in hours)
    assert total.hours_streamed >= 0


async def test_hourly_viewer_figures_cover_the_whole_hour_when_the_window_ends_inside_it(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    hour = NOW.replace(minute=0)
    async with sessions.begin() as session:
        for minute, viewers in ((5, 10), (50, 30)):
            await session.execute(
                text(
                    "INSERT INTO viewer_samples (broadcaster_id, sampled_at, stream_id, "
                    "viewer_count, interval_seconds) VALUES ('9', :t, 's', :v, 300)"
                ),
                {"t": hour + timedelta(minutes=minute), "v": viewers},
            )
    async with sessions() as session:
        [row] = await queries.hourly(
            session, "9", hour, hour + timedelta(minutes=20), now=hour + timedelta(hours=1)
        )
    assert (row.avg_viewers, row.peak_viewers) == (20.0, 30)
