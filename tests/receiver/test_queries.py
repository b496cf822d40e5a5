"""Read models on hand-made rows: edge cases the pipeline rarely produces."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from receiver.reads import queries
from schema.db import create_engine, create_sessionmaker

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


async def _closed_session_figures(
    database_url: str, start: datetime, end: datetime
) -> tuple[int, list[int], float]:
    """duration_seconds, hourly live_seconds and hours_streamed of one closed session."""
    engine = create_engine(database_url, pool_size=1)
    sessions = create_sessionmaker(engine)
    since, until = queries.floor_hour(start), queries.ceil_hour(end) + queries.HOUR
    try:
        async with sessions.begin() as session:
            await session.execute(text("TRUNCATE stream_sessions"))
            await session.execute(
                text(
                    "INSERT INTO stream_sessions (id, broadcaster_id, started_at, ended_at, "
                    "started_by, ended_by) VALUES ('s', '9', :s, :e, 'eventsub', 'eventsub')"
                ),
                {"s": start, "e": end},
            )
        async with sessions() as session:
            [row] = await queries.sessions(session, "9", since, until, now=until)
            hours = await queries.hourly(session, "9", since, until, now=until)
            total = await queries.summary(session, "9", since, until, now=until)
    finally:
        await engine.dispose()
    return row.duration_seconds, [h.live_seconds for h in hours], total.hours_streamed


MICROSECONDS_PER_DAY = 86_400 * 1_000_000


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    start_us=st.integers(0, 3 * MICROSECONDS_PER_DAY),
    length_us=st.integers(1, 2 * MICROSECONDS_PER_DAY),
)
# 11:59:59.4-12:00:00.7: hour shares 0.6 s and 0.7 s each rounded up to 2 s of a 1.3 s stream.
@example(start_us=43_199_400_000, length_us=1_300_000)
def test_the_hours_of_a_closed_session_add_up_to_its_duration_exactly(
    database_url: str, start_us: int, length_us: int
) -> None:
    start = datetime(2024, 5, 4, tzinfo=UTC) + timedelta(microseconds=start_us)
    end = start + timedelta(microseconds=length_us)
    duration, live, hours_streamed = asyncio.run(_closed_session_figures(database_url, start, end))
    assert sum(live) == duration
    assert all(0 <= seconds <= 3600 for seconds in live)
    assert abs(duration - (end - start).total_seconds()) < 1
    assert hours_streamed == round(duration / 3600, 4)
