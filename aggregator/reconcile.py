"""Reconciliation: every ``RECONCILE_INTERVAL_SECONDS``, make the database agree with Helix.

One run: Get Streams for every tracked channel, connected or followed (100 ids per call),
repair sessions (``repairs.py`` decides, ``repair_store.py`` writes), store viewer
samples, make Twitch's EventSub subscriptions match the tracked channels, and mark chat
gaps (connected channels only: chat is collected for those alone). Each run is a
``job_runs`` row. Only one run at a time across all processes: a run holds a PostgreSQL
session-level advisory lock on its own connection (released by PostgreSQL if the process
dies), and a run that finds it taken is recorded as ``skipped``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from arq.cron import CronJob, cron
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from aggregator.chat_gaps import mark_chat_gaps
from aggregator.context import job_id as current_job_id
from aggregator.context import state
from aggregator.job_runs import fail_abandoned, finish_run, record_skipped, start_run
from aggregator.metrics import count_run
from aggregator.repair_store import repair_channels, tracked_channels
from aggregator.repairs import LiveStream
from aggregator.schedule import cron_schedule, is_due
from schema.events import parse_instant
from schema.logs import get_logger
from schema.settings import Settings
from schema.twitch import Stream, TwitchClient
from schema.twitch.subscriptions import sync_subscriptions

log = get_logger("aggregator.reconcile")

JOB = "reconcile"
# arq keeps a job's "in progress" key for the largest function timeout + 10 s, so this
# also bounds how long a fold batch of a killed worker waits (130 s rather than 40 s).
# Room for a full rate-limit reset (about 60 s) on top of a 10,000-channel run.
RECONCILE_TIMEOUT_SECONDS = 120
# Our own deadline, below arq's, so a slow run ends as a recorded failure, not a kill.
RUN_DEADLINE_SECONDS = 110
CHANNELS_PER_TRANSACTION = 100
_LOCK_KEY = "SELECT {}(hashtext('streamfold'), hashtext(:job))"


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class RunResult:
    outcome: str  # success | failed | skipped
    counts: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    run_id: int | None = None
    changed_channels: list[str] = field(default_factory=list)


@contextlib.asynccontextmanager
async def run_lock(engine: AsyncEngine, job: str = JOB) -> AsyncIterator[bool]:
    """Yield True while this process holds ``job``'s lock, False if another does."""
    lock = {"job": job}
    async with engine.connect() as conn:
        held = bool(await conn.scalar(text(_LOCK_KEY.format("pg_try_advisory_lock")), lock))
        await conn.commit()  # a session-level lock outlives the transaction
        try:
            yield held
        finally:
            if held:
                try:
                    await conn.scalar(text(_LOCK_KEY.format("pg_advisory_unlock")), lock)
                    await conn.commit()
                except Exception:
                    # Never hand a connection that may still hold the lock back to the pool.
                    await conn.invalidate()


async def recorded_run(
    job: str,
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    clock: Callable[[], datetime],
    body: Callable[[RunResult], Awaitable[None]],
) -> RunResult:
    """Run a periodic job's ``body`` once: under the job's lock (skipped, and recorded as
    such, while another run holds it), as one ``job_runs`` row, within the run deadline,
    counted in metrics. A failure is recorded with its reason, never raised."""
    async with run_lock(engine, job) as held:
        if not held:
            async with sessions.begin() as session:
                await record_skipped(session, job, clock(), "another run was in progress")
            log.warning(f"{job}.skipped", reason="another run was in progress")
            count_run(job, "skipped")
            return RunResult("skipped")
        async with sessions.begin() as session:
            abandoned = await fail_abandoned(session, job, clock())
            run_id = await start_run(session, job, clock())
        if abandoned:
            log.warning(f"{job}.abandoned_runs_failed", runs=abandoned)
        result = RunResult("success", run_id=run_id)
        try:
            async with asyncio.timeout(RUN_DEADLINE_SECONDS):
                await body(result)
        except Exception as exc:
            result.outcome = "failed"
            result.error = _describe(exc)
            log.error(f"{job}.failed", error=result.error, **result.counts)
        else:
            log.info(f"{job}.finished", **result.counts)
        async with sessions.begin() as session:
            await finish_run(
                session,
                run_id,
                outcome=result.outcome,
                finished_at=clock(),
                counts=result.counts,
                error=result.error,
            )
        count_run(job, result.outcome, result.counts)
        return result


async def reconcile_once(
    settings: Settings,
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    twitch: TwitchClient,
    *,
    clock: Callable[[], datetime] = utcnow,
) -> RunResult:
    async def body(result: RunResult) -> None:
        await _run(settings, sessions, twitch, clock, result)

    return await recorded_run(JOB, engine, sessions, clock, body)


async def _run(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    twitch: TwitchClient,
    clock: Callable[[], datetime],
    result: RunResult,
) -> None:
    counts = result.counts
    phase = time.monotonic()
    async with sessions() as session:
        channels = await tracked_channels(session)
    polled_at = clock()
    live = _live_streams(await twitch.get_streams(channels), set(channels))
    phase = _timed(counts, "streams_ms", phase)
    grace = timedelta(seconds=settings.reconcile_grace_seconds)
    interval = timedelta(seconds=settings.reconcile_interval_seconds)
    for start in range(0, len(channels), CHANNELS_PER_TRANSACTION):
        chunk = channels[start : start + CHANNELS_PER_TRANSACTION]
        async with sessions.begin() as session:
            repaired = await repair_channels(
                session,
                chunk,
                {b: live[b] for b in chunk if b in live},
                now=polled_at,
                grace=grace,
                interval=interval,
            )
        result.changed_channels += repaired.changed_channels
        for name, value in dataclasses.asdict(repaired).items():
            if isinstance(value, int):
                counts[name] = counts.get(name, 0) + value
    counts.setdefault("channels_checked", 0)
    phase = _timed(counts, "repairs_ms", phase)

    # Gaps first, from the state the receiver recorded (revocation times, the challenge
    # answer that enabled a subscription), before the sync replaces those rows.
    await _mark_gaps(sessions, clock, counts)
    sync_error: Exception | None = None
    try:
        async with sessions.begin() as session:
            report = await sync_subscriptions(session, twitch, settings)
        counts.update({f"subscriptions_{k}": v for k, v in report.counts().items()})
        if report.failed:
            log.warning("reconcile.subscriptions_refused", failed=report.failed[:20])
    except Exception as exc:
        # The chat gaps below still need marking; the run is failed afterwards.
        sync_error = exc
    phase = _timed(counts, "subscriptions_ms", phase)
    # Again after the sync: a subscription it could not create is a gap from now on.
    await _mark_gaps(sessions, clock, counts)
    if sync_error is not None:
        raise sync_error


async def _mark_gaps(
    sessions: async_sessionmaker[AsyncSession],
    clock: Callable[[], datetime],
    counts: dict[str, int],
) -> None:
    async with sessions.begin() as session:
        gaps = await mark_chat_gaps(session, clock())
    for name, value in dataclasses.asdict(gaps).items():
        counts[name] = counts.get(name, 0) + value


def _timed(counts: dict[str, int], name: str, since: float) -> float:
    """Record the milliseconds a phase took (where a slow run spends its time)."""
    now = time.monotonic()
    counts[name] = round((now - since) * 1000)
    return now


def _live_streams(streams: list[Stream], channels: set[str]) -> dict[str, LiveStream]:
    live: dict[str, LiveStream] = {}
    for stream in streams:
        # Helix's type is "" when the stream errored: not live for our purposes.
        if stream.type != "live" or stream.user_id not in channels:
            continue
        try:
            started_at = parse_instant(stream.started_at)
        except ValueError:
            log.warning("reconcile.bad_started_at", broadcaster_id=stream.user_id)
            continue
        live[stream.user_id] = LiveStream(
            stream_id=stream.id,
            broadcaster_id=stream.user_id,
            started_at=started_at,
            viewer_count=stream.viewer_count,
            title=stream.title or None,
            game_name=stream.game_name or None,
            game_id=stream.game_id or None,
            language=stream.language or None,
            thumbnail_url=stream.thumbnail_url or None,
        )
    return live


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"the run did not finish within {RUN_DEADLINE_SECONDS} s"
    detail = getattr(exc, "detail", None) or next(iter(str(exc).splitlines()), "")
    return f"{type(exc).__name__}: {detail}"[:2000]


# -- the arq cron job ---------------------------------------------------------------------


async def reconcile_job(ctx: dict[str, Any]) -> str | None:
    """arq cron entry point; returns the outcome (None for a tick that is not due)."""
    work = state(ctx)
    tick = _tick_seconds(ctx)
    schedule = cron_schedule(work.settings.reconcile_interval_seconds)
    if tick is not None and not is_due(schedule, tick):
        return None
    result = await reconcile_once(work.settings, work.engine, work.sessions, work.twitch)
    return result.outcome


def _tick_seconds(ctx: dict[str, Any], job: str = JOB) -> float | None:
    """The tick this job was enqueued for: arq's unique cron id ends with it in ms (the
    queue score is the enqueue time instead when a busy worker enqueued it late)."""
    job_id = current_job_id(ctx) or ""
    _, _, suffix = job_id.rpartition(":")
    if job_id.startswith(f"cron:{job}:") and suffix.isdigit():
        return int(suffix) / 1000
    return None


def reconcile_cron(settings: Settings) -> CronJob:
    schedule = cron_schedule(settings.reconcile_interval_seconds)
    return cron(
        reconcile_job,
        name=f"cron:{JOB}",
        second=set(schedule.second),
        minute=set(schedule.minute) if schedule.minute is not None else None,
        # One job per tick across all workers (arq's unique cron id); never at start-up,
        # which arq does not deduplicate (RELIABILITY.md 2).
        unique=True,
        run_at_startup=False,
        timeout=RECONCILE_TIMEOUT_SECONDS,
        max_tries=1,
        keep_result=0,
    )
