"""The collector: every ``RECONCILE_INTERVAL_SECONDS``, what the public routes show.

One run: Get Streams without filters for Twitch's top ``COLLECT_TOP_STREAMS`` live
streams, a five-minute snapshot (a ``viewer_samples`` row) of each one that is not
tracked, profiles (Get Users) of every channel seen, refreshed at most daily, the "live
now" state of each profile, and the daily category rollup. Tracked channels are polled
by reconciliation, whose sample of a channel *is* its snapshot: one row per channel and
poll, and no second Get Streams call for the same ids.

Like reconciliation, each run is a ``job_runs`` row, and one run at a time holds the
job's advisory lock (a run that finds it taken is recorded as ``skipped``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from arq.cron import CronJob, cron
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from aggregator.reconcile import (
    RECONCILE_TIMEOUT_SECONDS,
    RunResult,
    _tick_seconds,
    recorded_run,
    utcnow,
)
from aggregator.repair_store import SAMPLES_INSERT, sample_rows, tracked_channels
from aggregator.repairs import Sample, sample_interval
from aggregator.schedule import cron_schedule, is_due
from schema.events import parse_instant
from schema.logs import get_logger
from schema.settings import Settings
from schema.twitch import Stream, TwitchClient, User

log = get_logger("aggregator.collector")

JOB = "collect"
PROFILE_MAX_AGE = timedelta(days=1)
# Get Users calls per run at most (100 ids each); the rest wait for the next run.
MAX_PROFILE_CALLS = 10
# Reconciliation stamps its samples with the poll's start and commits them up to its
# deadline later: the rollup reads only samples older than that, so none is missed.
ROLLUP_LAG = timedelta(seconds=RECONCILE_TIMEOUT_SECONDS + 10)
# A run rolls up at most this much history (the first run after an upgrade catches up
# over several runs instead of one long one).
ROLLUP_STEP = timedelta(days=7)
ROLLUP = "category_days"
# The public routes' preset windows (``window=24h|7d|30d|90d``): their category tables
# are precomputed with each rollup, other windows are summed from the rollup on request.
CATEGORY_WINDOWS = (
    timedelta(hours=24), timedelta(days=7), timedelta(days=30), timedelta(days=90),
)  # fmt: skip


async def collect_once(
    settings: Settings,
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    twitch: TwitchClient,
    *,
    clock: Callable[[], datetime] = utcnow,
) -> RunResult:
    async def body(result: RunResult) -> None:
        await _run(settings, sessions, twitch, clock, result.counts)

    return await recorded_run(JOB, engine, sessions, clock, body)


async def _run(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    twitch: TwitchClient,
    clock: Callable[[], datetime],
    counts: dict[str, int],
) -> None:
    began = time.monotonic()
    async with sessions() as session:
        tracked = set(await tracked_channels(session))
    polled_at = clock()
    top = [s for s in await twitch.get_top_streams(settings.collect_top_streams) if _live(s)]
    collected = [s for s in top if s.user_id not in tracked]
    interval = timedelta(seconds=settings.reconcile_interval_seconds)
    counts["top_streams"] = len(top)
    async with sessions.begin() as session:
        counts["snapshots_stored"] = await _store_snapshots(session, collected, polled_at, interval)
        await _note_profiles(session, top, polled_at)
        await _note_tracked(session, sorted(tracked))
    counts["streams_ms"] = round((time.monotonic() - began) * 1000)

    stale = await _stale_profiles(sessions, polled_at)
    users = await twitch.get_users(ids=stale) if stale else []
    async with sessions.begin() as session:
        await _store_users(session, users, polled_at)
        counts["profiles_refreshed"] = len(users)
        counts["live_now"] = await _mark_live(
            session, [s.user_id for s in collected], sorted(tracked), polled_at, interval
        )
        counts["rollup_rows"] = await _roll_up(session, polled_at - ROLLUP_LAG)
        counts["category_windows"] = await _refresh_windows(session, polled_at)
        counts["recent_figures"] = await _refresh_recent(session, polled_at)


def _live(stream: Stream) -> bool:
    # Helix's type is "" when the stream errored: not live for our purposes.
    return stream.type == "live"


async def _store_snapshots(
    session: AsyncSession, streams: Sequence[Stream], polled_at: datetime, interval: timedelta
) -> int:
    samples = []
    for stream in sorted(streams, key=lambda s: s.user_id):
        try:
            started_at = parse_instant(stream.started_at)
        except ValueError:
            log.warning("collect.bad_started_at", broadcaster_id=stream.user_id)
            continue
        samples.append(
            Sample(
                broadcaster_id=stream.user_id,
                stream_id=stream.id,
                viewer_count=max(0, stream.viewer_count),
                interval_seconds=sample_interval(interval),
                title=stream.title or None,
                game_name=stream.game_name or None,
                game_id=stream.game_id or None,
                language=stream.language or None,
                thumbnail_url=stream.thumbnail_url or None,
                started_at=started_at,
            )
        )
    if not samples:
        return 0
    stored = await session.execute(text(SAMPLES_INSERT), sample_rows(samples, polled_at))
    return len(stored.all())


# A stream entry names its channel: enough for a profile until Get Users answers.
_NOTE_PROFILES = text("""
    INSERT INTO channel_profiles (broadcaster_id, login, display_name, last_seen_at)
    SELECT b, l, d, :at
    FROM unnest(CAST(:b AS text[]), CAST(:l AS text[]), CAST(:d AS text[])) AS x(b, l, d)
    ORDER BY b
    ON CONFLICT (broadcaster_id) DO UPDATE
        SET login = excluded.login, display_name = excluded.display_name,
            last_seen_at = excluded.last_seen_at
""")

# Tracked channels get a profile even while offline (search finds them), named from
# what the OAuth login stored until Get Users answers.
_NOTE_TRACKED = text("""
    INSERT INTO channel_profiles (broadcaster_id, login, display_name)
    SELECT c.broadcaster_id, coalesce(c.login, u.login, c.broadcaster_id),
           coalesce(c.display_name, u.display_name, c.login, c.broadcaster_id)
    FROM channels c LEFT JOIN twitch_users u ON u.id = c.broadcaster_id
    WHERE c.broadcaster_id = ANY(CAST(:b AS text[]))
    ORDER BY c.broadcaster_id
    ON CONFLICT (broadcaster_id) DO NOTHING
""")


async def _note_profiles(session: AsyncSession, streams: Sequence[Stream], at: datetime) -> None:
    ordered = sorted({s.user_id: s for s in streams}.values(), key=lambda s: s.user_id)
    if ordered:
        await session.execute(
            _NOTE_PROFILES,
            {
                "at": at,
                "b": [s.user_id for s in ordered],
                "l": [s.user_login or s.user_id for s in ordered],
                "d": [s.user_name or s.user_login or s.user_id for s in ordered],
            },
        )


async def _note_tracked(session: AsyncSession, tracked: Sequence[str]) -> None:
    if tracked:
        await session.execute(_NOTE_TRACKED, {"b": list(tracked)})


_STALE = text("""
    SELECT broadcaster_id FROM channel_profiles
    WHERE refreshed_at IS NULL OR refreshed_at < :before
    ORDER BY refreshed_at NULLS FIRST, broadcaster_id
    LIMIT :limit
""")


async def _stale_profiles(
    sessions: async_sessionmaker[AsyncSession], polled_at: datetime
) -> list[str]:
    async with sessions() as session:
        rows = await session.execute(
            _STALE, {"before": polled_at - PROFILE_MAX_AGE, "limit": MAX_PROFILE_CALLS * 100}
        )
        return list(rows.scalars())


_STORE_USERS = text("""
    INSERT INTO channel_profiles
        (broadcaster_id, login, display_name, profile_image_url, broadcaster_type, refreshed_at)
    SELECT b, l, d, i, t, :at
    FROM unnest(CAST(:b AS text[]), CAST(:l AS text[]), CAST(:d AS text[]),
                CAST(:i AS text[]), CAST(:t AS text[])) AS x(b, l, d, i, t)
    ORDER BY b
    ON CONFLICT (broadcaster_id) DO UPDATE
        SET login = excluded.login, display_name = excluded.display_name,
            profile_image_url = excluded.profile_image_url,
            broadcaster_type = excluded.broadcaster_type, refreshed_at = excluded.refreshed_at
""")


async def _store_users(session: AsyncSession, users: Sequence[User], at: datetime) -> None:
    ordered = sorted({u.id: u for u in users}.values(), key=lambda u: u.id)
    if ordered:
        await session.execute(
            _STORE_USERS,
            {
                "at": at,
                "b": [u.id for u in ordered],
                "l": [u.login for u in ordered],
                "d": [u.display_name or u.login for u in ordered],
                "i": [u.profile_image_url or None for u in ordered],
                "t": [u.broadcaster_type for u in ordered],
            },
        )


# Live now: a collected channel is live while this poll's top list has it (leaving the
# list says nothing more); a tracked one while its session is open and sampled lately.
# The live snapshot's stream is copied onto the profile in the same statement that
# points ``live_at`` at it, so live now never reads the snapshots.
_MARK_LIVE = text("""
    WITH live AS (
        SELECT DISTINCT ON (v.broadcaster_id) v.broadcaster_id, v.sampled_at, v.viewer_count,
               v.stream_id, v.title, v.game_id, v.game_name, v.language, v.started_at,
               v.thumbnail_url
        FROM viewer_samples v
        WHERE v.sampled_at >= :since AND v.sampled_at <= :now
          AND ((v.broadcaster_id = ANY(CAST(:collected AS text[])) AND v.sampled_at = :now)
               OR (v.broadcaster_id = ANY(CAST(:tracked AS text[]))
                   AND EXISTS (SELECT 1 FROM stream_sessions s
                               WHERE s.id = v.stream_id AND s.ended_at IS NULL)))
        ORDER BY v.broadcaster_id, v.sampled_at DESC
    ), state AS (
        SELECT p.broadcaster_id, live.sampled_at, live.viewer_count, live.stream_id,
               live.title, live.game_id, live.game_name, live.language, live.started_at,
               live.thumbnail_url
        FROM channel_profiles p LEFT JOIN live USING (broadcaster_id)
        WHERE p.live_at IS NOT NULL OR live.broadcaster_id IS NOT NULL
    )
    UPDATE channel_profiles p
    SET live_at = state.sampled_at, live_viewers = state.viewer_count,
        live_stream_id = state.stream_id, live_title = state.title,
        live_game_id = state.game_id, live_game_name = state.game_name,
        live_language = state.language, live_started_at = state.started_at,
        live_thumbnail_url = state.thumbnail_url,
        last_seen_at = greatest(p.last_seen_at, state.sampled_at)
    FROM state WHERE p.broadcaster_id = state.broadcaster_id
""")

# A category's name is the newest a live snapshot reported (Twitch renames categories).
_CATEGORIES = text("""
    INSERT INTO categories (game_id, name, updated_at)
    SELECT DISTINCT ON (p.live_game_id) p.live_game_id, p.live_game_name, p.live_at
    FROM channel_profiles p
    WHERE p.live_at IS NOT NULL AND p.live_game_id IS NOT NULL AND p.live_game_name IS NOT NULL
    ORDER BY p.live_game_id, p.live_at DESC
    ON CONFLICT (game_id) DO UPDATE SET name = excluded.name, updated_at = excluded.updated_at
        WHERE categories.updated_at <= excluded.updated_at
          AND categories.name IS DISTINCT FROM excluded.name
""")


async def _mark_live(
    session: AsyncSession,
    collected: Sequence[str],
    tracked: Sequence[str],
    now: datetime,
    interval: timedelta,
) -> int:
    await session.execute(
        _MARK_LIVE,
        {
            "since": now - 2 * interval,
            "now": now,
            "collected": sorted(collected),
            "tracked": list(tracked),
        },
    )
    await session.execute(_CATEGORIES)
    live = await session.scalar(
        text("SELECT count(*) FROM channel_profiles WHERE live_at IS NOT NULL")
    )
    return int(live or 0)


_MARK = text("SELECT upto FROM rollup_marks WHERE name = :name FOR UPDATE")
_FIRST_SAMPLE = text("SELECT min(sampled_at) FROM viewer_samples")
_ROLL_UP = text("""
    INSERT INTO category_days AS d
        (day, game_id, broadcaster_id, samples, seconds, viewer_seconds, viewer_sum,
         peak_viewers)
    SELECT date_trunc('day', v.sampled_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
           coalesce(v.game_id, ''), v.broadcaster_id, count(*), sum(v.interval_seconds),
           sum(v.viewer_count::bigint * v.interval_seconds), sum(v.viewer_count),
           max(v.viewer_count)
    FROM viewer_samples v
    WHERE v.sampled_at > :since AND v.sampled_at <= :until
    GROUP BY 1, 2, 3
    ORDER BY 1, 2, 3
    ON CONFLICT (day, game_id, broadcaster_id) DO UPDATE
        SET samples = d.samples + excluded.samples, seconds = d.seconds + excluded.seconds,
            viewer_seconds = d.viewer_seconds + excluded.viewer_seconds,
            viewer_sum = d.viewer_sum + excluded.viewer_sum,
            peak_viewers = greatest(d.peak_viewers, excluded.peak_viewers)
    RETURNING 1
""")
_SET_MARK = text("""
    INSERT INTO rollup_marks (name, upto) VALUES (:name, :upto)
    ON CONFLICT (name) DO UPDATE SET upto = excluded.upto
""")


async def _roll_up(session: AsyncSession, upto: datetime) -> int:
    """Add the samples after the rollup's mark, up to ``upto``, to ``category_days``;
    the mark moves in the same transaction, so each sample is added exactly once."""
    since = await session.scalar(_MARK, {"name": ROLLUP})
    if since is None:
        first = await session.scalar(_FIRST_SAMPLE)
        if first is None:
            return 0
        since = first - timedelta(microseconds=1)
    until = min(upto, since + ROLLUP_STEP)
    if until <= since:
        return 0
    rows = await session.execute(_ROLL_UP, {"since": since, "until": until})
    await session.execute(_SET_MARK, {"name": ROLLUP, "upto": until})
    return len(rows.all())


# The public category table of each preset window, as of the rollup's mark, over the
# same whole UTC days the route would read (``receiver/reads/discovery.py``).
_REFRESH_WINDOWS = [
    text("DELETE FROM category_windows"),
    text("""
    INSERT INTO category_windows (seconds_back, game_id, since_day, upto, seconds,
                                  viewer_seconds, peak_viewers, channels)
    SELECT w.seconds_back, d.game_id, w.since_day, m.upto, sum(d.seconds),
           sum(d.viewer_seconds), max(d.peak_viewers), count(DISTINCT d.broadcaster_id)
    FROM rollup_marks m,
         (SELECT s AS seconds_back,
                 date_trunc('day', (CAST(:now AS timestamptz) - s * interval '1 second')
                                   AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS since_day
          FROM unnest(CAST(:windows AS int[])) AS s) AS w
    JOIN category_days d ON d.day >= w.since_day AND d.game_id <> ''
    WHERE m.name = :name
    GROUP BY w.seconds_back, w.since_day, m.upto, d.game_id
    """),
]


async def _refresh_windows(session: AsyncSession, now: datetime) -> int:
    """Recompute ``category_windows`` in the rollup's transaction, so the tables and the
    mark they were computed at always agree."""
    windows = [int(w.total_seconds()) for w in CATEGORY_WINDOWS]
    await session.execute(_REFRESH_WINDOWS[0])
    result = await session.execute(
        _REFRESH_WINDOWS[1], {"now": now, "windows": windows, "name": ROLLUP}
    )
    return int(getattr(result, "rowcount", 0) or 0)


# Search ranks channels by hours watched over the last 30 days: each profile's figure is
# kept as of the rollup's mark, recomputed here in the rollup's transaction (one pass
# over 30 days of ``category_days``; only the figures that changed are written).
RECENT = timedelta(days=30)
_REFRESH_RECENT = text("""
    UPDATE channel_profiles p SET recent_viewer_seconds = r.total
    FROM (SELECT p2.broadcaster_id, coalesce(d.total, 0) AS total
          FROM channel_profiles p2
          LEFT JOIN (SELECT broadcaster_id, sum(viewer_seconds) AS total FROM category_days
                     WHERE day >= :since GROUP BY broadcaster_id) d USING (broadcaster_id)) r
    WHERE p.broadcaster_id = r.broadcaster_id AND p.recent_viewer_seconds <> r.total
""")


async def _refresh_recent(session: AsyncSession, now: datetime) -> int:
    """Set each profile's viewer-seconds of the 30 days before ``now`` (whole rollup days
    from the first midnight after it, as search summed them per request before)."""
    result = await session.execute(_REFRESH_RECENT, {"since": now - RECENT})
    return int(getattr(result, "rowcount", 0) or 0)


# -- the arq cron job ---------------------------------------------------------------------


async def collect_job(ctx: dict[str, Any]) -> str | None:
    """arq cron entry point; returns the outcome (None for a tick that is not due)."""
    settings: Settings = ctx["settings"]
    tick = _tick_seconds(ctx, JOB)
    if tick is not None and not is_due(cron_schedule(settings.reconcile_interval_seconds), tick):
        return None
    redis: Redis = ctx["redis"]
    async with TwitchClient(settings, redis) as twitch:
        result = await collect_once(settings, ctx["engine"], ctx["sessions"], twitch)
    return result.outcome


def collect_cron(settings: Settings) -> CronJob:
    schedule = cron_schedule(settings.reconcile_interval_seconds)
    return cron(
        collect_job,
        name=f"cron:{JOB}",
        second=set(schedule.second),
        minute=set(schedule.minute) if schedule.minute is not None else None,
        unique=True,  # one job per tick across all workers
        run_at_startup=False,
        timeout=RECONCILE_TIMEOUT_SECONDS,
        max_tries=1,
        keep_result=0,
    )
