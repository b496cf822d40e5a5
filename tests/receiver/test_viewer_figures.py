"""Viewer figures from the hourly rollup: the same answers, to the bit, as the samples
gave, over any window; and after retention removed the samples, the same aggregates, with
partial-hour edges widened to whole hours and said so.

The reference is what the reads computed from ``viewer_samples`` before the rollup
existed (avg(), max() and sum() over the samples of the window, hour or session). Samples
are written with the collector's and reconciliation's own statement, in batches, with
repeats.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from aggregator.repair_store import SAMPLES_INSERT
from aggregator.retention import retention_once
from receiver.reads import discovery, queries
from schema.db import create_engine, create_sessionmaker
from schema.partitions import SCHEMES, create_partition
from schema.settings import Settings

START = datetime(2024, 5, 4, 9, 0, tzinfo=UTC)
STREAM_MINUTES = 200
STREAMS = 3
# Helix's started_at of the generated streams (the others report none).
STARTED = {
    f"s{(START + timedelta(minutes=STREAM_MINUTES * i)).isoformat()}": START
    + timedelta(minutes=STREAM_MINUTES * i)
    for i in range(STREAMS)
}

_RAW_FIGURES = """
    avg(viewer_count)::float AS avg_viewers, max(viewer_count) AS peak_viewers,
    (sum(viewer_count::bigint * interval_seconds) / 3600.0)::float AS hours_watched
"""
_RAW_WINDOW = text(f"""
    SELECT {_RAW_FIGURES} FROM viewer_samples
    WHERE broadcaster_id = :b AND sampled_at >= :since AND sampled_at < :until
""")  # noqa: S608
_RAW_HOURS = text(f"""
    SELECT date_trunc('hour', sampled_at, 'UTC') AS hour, {_RAW_FIGURES} FROM viewer_samples
    WHERE broadcaster_id = :b AND sampled_at >= :since AND sampled_at < :until
    GROUP BY 1 ORDER BY 1
""")  # noqa: S608
_RAW_SESSION = text(f"""
    SELECT {_RAW_FIGURES},
           (array_agg(title ORDER BY sampled_at DESC))[1] AS title,
           (array_agg(game_name ORDER BY sampled_at DESC))[1] AS game_name
    FROM viewer_samples
    WHERE broadcaster_id = :b AND stream_id = :s
      AND sampled_at >= :since AND sampled_at < :stop + interval '1 hour'
""")  # noqa: S608
_RAW_SEEN = text(f"""
    SELECT stream_id AS id, coalesce(min(started_at), min(sampled_at)) AS started_at,
           max(sampled_at) AS last_seen_at, {_RAW_FIGURES},
           (array_agg(title ORDER BY sampled_at DESC))[1] AS title,
           (array_agg(game_name ORDER BY sampled_at DESC))[1] AS game_name
    FROM viewer_samples
    WHERE broadcaster_id = :b AND sampled_at >= :since AND sampled_at < :until
    GROUP BY stream_id ORDER BY started_at DESC, id DESC
""")  # noqa: S608


def _batch(rows: list[tuple[str, str, datetime, int, int, str]]) -> dict[str, Any]:
    """One ``SAMPLES_INSERT`` of (channel, stream, time, viewers, interval, title) rows;
    each statement has one sampling time, as a poll's does."""
    return {
        "sampled_at": rows[0][2],
        "b": [r[0] for r in rows],
        "s": [r[1] for r in rows],
        "v": [r[3] for r in rows],
        "i": [r[4] for r in rows],
        "t": [r[5] for r in rows],
        "g": [f"game of {r[5]}" for r in rows],
        "gi": ["1" for _ in rows],
        "l": ["en" for _ in rows],
        "th": [None for _ in rows],
        "st": [STARTED.get(r[1]) for r in rows],
    }


async def _write(
    sessions: async_sessionmaker[AsyncSession],
    samples: list[tuple[str, str, datetime, int, int, str]],
) -> None:
    by_time: dict[datetime, list[tuple[str, str, datetime, int, int, str]]] = {}
    for sample in samples:
        by_time.setdefault(sample[2], []).append(sample)
    for rows in by_time.values():  # repeats of one channel and time are skipped
        async with sessions.begin() as session:
            await session.execute(text(SAMPLES_INSERT), _batch(rows))


async def _sessions_of(sessions: async_sessionmaker[AsyncSession], b: str) -> None:
    async with sessions.begin() as session:
        for i in range(STREAMS):
            start = START + timedelta(minutes=STREAM_MINUTES * i)
            await session.execute(
                text(
                    "INSERT INTO stream_sessions (id, broadcaster_id, started_at, ended_at, "
                    "started_by, ended_by) VALUES (:id, :b, :s, :e, 'eventsub', 'eventsub')"
                ),
                {
                    "id": f"s{start.isoformat()}",
                    "b": b,
                    "s": start,
                    "e": start + timedelta(minutes=STREAM_MINUTES),
                },
            )


def _stream(i: int) -> str:
    return list(STARTED)[i]


async def _compare(database_url: str, samples: list[Any], windows: list[tuple[int, int]]) -> None:
    engine = create_engine(database_url, pool_size=1)
    sessions = create_sessionmaker(engine)
    try:
        async with sessions.begin() as session:
            await session.execute(text("TRUNCATE viewer_samples, viewer_hours, stream_sessions"))
        await _sessions_of(sessions, "9")
        await _write(sessions, samples)
        now = START + timedelta(days=1)
        async with sessions() as session:
            rolled = await session.scalar(text("SELECT sum(samples) FROM viewer_hours"))
            kept = await session.scalar(text("SELECT count(*) FROM viewer_samples"))
            assert (rolled or 0) == kept
            for start_s, length_s in windows:
                since = START + timedelta(seconds=start_s)
                until = since + timedelta(seconds=length_s)
                p = {"b": "9", "since": since, "until": until}
                summary = await queries.summary(session, "9", since, until, now=now)
                raw = (await session.execute(_RAW_WINDOW, p)).one()
                assert (summary.avg_viewers, summary.peak_viewers, summary.hours_watched) == (
                    tuple(raw)
                ), (since, until)
                assert summary.viewer_exact_edges
                seen = await discovery.seen_streams(
                    session, "9", since, until, limit=10, before=None
                )
                raw_seen = (await session.execute(_RAW_SEEN, p)).all()
                assert [tuple(vars_of(s)) for s in seen] == [tuple(r) for r in raw_seen]
            since, until = START - timedelta(hours=2), START + timedelta(hours=14)
            hourly = await queries.hourly(session, "9", since, until, now=now)
            raw_hours = {
                r.hour: tuple(r)[1:]
                for r in await session.execute(
                    _RAW_HOURS, {"b": "9", "since": since, "until": until}
                )
            }
            got = {
                h.hour: (h.avg_viewers, h.peak_viewers, h.hours_watched)
                for h in hourly
                if h.peak_viewers is not None
            }
            assert got == raw_hours
            for row in await queries.sessions(session, "9", since, until, now=now):
                raw = (
                    await session.execute(
                        _RAW_SESSION,
                        {"b": "9", "s": row.id, "since": row.started_at, "stop": row.ended_at},
                    )
                ).one()
                assert (row.avg_viewers, row.peak_viewers, row.hours_watched) == tuple(raw)[:3]
                assert (row.title, row.game_name) == tuple(raw)[3:]
    finally:
        await engine.dispose()


def vars_of(s: discovery.SeenStream) -> tuple[Any, ...]:
    return (
        s.id,
        s.started_at,
        s.last_seen_at,
        s.avg_viewers,
        s.peak_viewers,
        s.hours_watched,
        s.title,
        s.game_name,
    )


_SAMPLE = st.tuples(
    st.sampled_from(["9", "9", "9", "8"]),  # another channel's samples are never counted
    st.integers(0, STREAMS - 1),
    st.integers(0, STREAM_MINUTES - 1),
    st.integers(0, 100_000),
    st.sampled_from([60, 300, 301, 1]),
    st.sampled_from(["a", "b", "c"]),
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    raw=st.lists(_SAMPLE, max_size=60),
    windows=st.lists(st.tuples(st.integers(-3600, 40_000), st.integers(1, 40_000)), max_size=6),
)
def test_rollup_answers_what_the_samples_answered(
    database_url: str, raw: list[tuple[str, int, int, int, int, str]], windows: list[Any]
) -> None:
    samples = [
        (
            b,
            _stream(i),
            START + timedelta(minutes=STREAM_MINUTES * i + minute),
            viewers,
            interval,
            title,
        )
        for b, i, minute, viewers, interval, title in raw
    ]
    # Window edges on whole hours, on sample times, and anywhere.
    windows = [*windows, (0, 3600 * 10), (seconds_to(samples, 0), 3 * 3600)]
    asyncio.run(_compare(database_url, samples, windows))


def seconds_to(samples: list[Any], k: int) -> int:
    """Seconds from START to the ``k``th sample (0 without samples): an edge on a sample."""
    return int((samples[k][2] - START).total_seconds()) if len(samples) > k else 0


def _no_chat_flag(answers: tuple[Any, ...]) -> tuple[Any, ...]:
    def plain(x: Any) -> Any:
        if isinstance(x, list):
            return [plain(y) for y in x]
        if hasattr(x, "chat_exact_edges"):
            return msgspec.structs.replace(x, chat_exact_edges=True)
        return x

    return tuple(plain(a) for a in answers)


# -- after retention ----------------------------------------------------------------------


def _month_ago(months: int) -> date:
    d = datetime.now(UTC).date().replace(day=1)
    for _ in range(months):
        d = (d - timedelta(days=1)).replace(day=1)
    return d


async def test_retention_drops_old_months_and_the_figures_stay(
    settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    old = _month_ago(5)  # dropped: it ended long before RETENTION_DAYS (90) ago
    older = _month_ago(9)  # no partition: its samples wait in the default partition
    async with sessions.begin() as session:
        for statement in create_partition("viewer_samples", old).statements:
            await session.execute(text(statement))
    stream_start = datetime.combine(old + timedelta(days=3), time(10, 20), tzinfo=UTC)
    samples = [
        ("9", "s-old", stream_start + timedelta(minutes=5 * k), 100 + 7 * k, 300, f"t{k // 5}")
        for k in range(30)
    ]
    samples += [
        ("9", "s-older", datetime.combine(older, time(3), tzinfo=UTC), 5, 300, "x"),
        ("9", "s-now", datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1), 9, 60, "n"),
    ]
    await _write(sessions, samples)
    async with sessions.begin() as session:
        await session.execute(
            text(
                "INSERT INTO stream_sessions (id, broadcaster_id, started_at, ended_at, "
                "started_by, ended_by) VALUES ('s-old', '9', :s, :e, 'eventsub', 'eventsub')"
            ),
            {"s": stream_start, "e": stream_start + timedelta(minutes=150)},
        )
    day = datetime.combine(old, time(), tzinfo=UTC)
    aligned = (day, day + timedelta(days=20))
    ragged = (stream_start + timedelta(minutes=12), stream_start + timedelta(minutes=110))
    now = datetime.now(UTC)

    async def answers() -> tuple[Any, ...]:
        async with sessions() as session:
            return (
                await queries.hourly(session, "9", *aligned, now=now),
                await queries.sessions(session, "9", *aligned, now=now),
                await queries.summary(session, "9", *aligned, now=now),
                await discovery.seen_streams(session, "9", *aligned, limit=10, before=None),
                await queries.summary(session, "9", *ragged, now=now),
                (await session.execute(text("TABLE viewer_hours ORDER BY 1, 2, 3"))).all(),
            )

    hourly, session_rows, summary, seen, ragged_before, hours = await answers()
    assert summary.peak_viewers == 100 + 7 * 29
    assert summary.viewer_exact_edges
    assert ragged_before.viewer_exact_edges
    assert session_rows[0].title == "t5"

    result, _ = await retention_once(settings, engine, sessions)

    assert result.outcome == "success", result.error
    assert result.counts["viewer_samples"] == 31  # a month partition's 30, one default row
    async with sessions() as session:
        left = (await session.execute(text("SELECT stream_id FROM viewer_samples"))).scalars()
        mark = await session.scalar(
            text("SELECT removed_before FROM retention_marks WHERE table_name = 'viewer_samples'")
        )
    assert list(left) == ["s-now"]
    cutoff = SCHEMES["viewer_samples"].start(datetime.now(UTC).date() - timedelta(days=90))
    assert mark == datetime.combine(cutoff, time(), tzinfo=UTC)
    after = await answers()
    # Chat edges degrade too (the chat rows went as well); viewer figures do not.
    assert _no_chat_flag(after[:4]) == _no_chat_flag((hourly, session_rows, summary, seen))
    assert after[5] == hours  # the rollup is kept
    # The ragged window's edges lay in removed samples: its whole hours, and it says so.
    ragged_after = after[4]
    assert not ragged_after.viewer_exact_edges
    async with sessions() as session:
        whole = await queries.summary(
            session,
            "9",
            queries.floor_hour(ragged[0]),
            queries.ceil_hour(ragged[1]),
            now=now,
        )
    assert (ragged_after.avg_viewers, ragged_after.peak_viewers) == (
        whole.avg_viewers,
        whole.peak_viewers,
    )
    assert ragged_after.peak_viewers != ragged_before.peak_viewers
