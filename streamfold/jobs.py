"""``streamfold reconcile`` (one run now) and ``streamfold jobs`` (recent runs, success rate)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from aggregator.job_runs import Outcomes, RunRow, outcomes, recent_runs
from aggregator.reconcile import RunResult, reconcile_once
from schema.db import create_engine, create_sessionmaker
from schema.settings import Settings
from schema.twitch import TwitchClient

WINDOW = timedelta(hours=24)
TARGET = 0.99  # the service aims for at least 99 % successful runs

# Short column names for a run's counts, in the order an operator reads them.
_LABELS = {
    "channels_checked": "channels",
    "live": "live",
    "sessions_opened": "opened",
    "sessions_closed": "closed",
    "sessions_replaced": "replaced",
    "sessions_reopened": "reopened",
    "samples_stored": "samples",
    "subscriptions_created": "subs+",
    "subscriptions_deleted": "subs-",
    "subscriptions_failed": "subs!",
    "chat_gaps_opened": "gaps+",
    "chat_gaps_closed": "gaps-",
}


async def run_reconcile(settings: Settings) -> RunResult:
    from redis.asyncio import Redis

    engine = create_engine(settings.database_url or "", pool_size=2)
    redis = Redis.from_url(settings.redis_url) if settings.redis_url else None
    try:
        async with TwitchClient(settings, redis) as twitch:
            return await reconcile_once(settings, engine, create_sessionmaker(engine), twitch)
    finally:
        if redis is not None:
            await redis.aclose()
        await engine.dispose()


async def run_retention(settings: Settings, dry_run: bool) -> tuple[str, bool]:
    """One retention run now (or only its plan); the report and whether it failed."""
    from aggregator.retention import retention_once

    engine = create_engine(settings.database_url or "", pool_size=2)
    try:
        result, plan = await retention_once(
            settings, engine, create_sessionmaker(engine), dry_run=dry_run
        )
    finally:
        await engine.dispose()
    if result.outcome == "skipped":
        return "skipped: another retention run is in progress", False
    if dry_run:
        lines = plan.lines()
    else:
        done = " ".join(f"{k}={v}" for k, v in sorted(result.counts.items()))
        lines = [f"{result.outcome}: {done or 'nothing to do'}"]
    if result.error:
        lines.append(f"error: {result.error}")
    return "\n".join(lines), result.outcome == "failed"


def describe_result(result: RunResult) -> str:
    counts = _counts(result.counts) or "nothing to do"
    if result.outcome == "skipped":
        return "skipped: another reconciliation run is in progress"
    line = f"{result.outcome}: {counts}"
    return f"{line}\nerror: {result.error}" if result.error else line


async def jobs_report(settings: Settings, job: str | None, limit: int) -> str:
    engine = create_engine(settings.database_url or "", pool_size=1)
    now = datetime.now(UTC)
    try:
        async with create_sessionmaker(engine)() as session:
            rows = await recent_runs(session, job, limit)
            totals = await outcomes(session, job, now, WINDOW)
    finally:
        await engine.dispose()
    return render(rows, totals, now)


def render(rows: Sequence[RunRow], totals: Outcomes, now: datetime) -> str:
    lines = [f"{'started (UTC)':<20} {'job':<10} {'outcome':<8} {'took':>7}  what it did"]
    for row in rows:
        took = "-" if row.finished_at is None else f"{_seconds(row):.1f}s"
        detail = _counts(row.counts)
        if row.error:
            detail = f"{detail}  error: {row.error}" if detail else f"error: {row.error}"
        started = row.started_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        lines.append(f"{started:<20} {row.job:<10} {row.outcome:<8} {took:>7}  {detail}")
    if not rows:
        lines.append("(no runs yet)")
    lines.append("")
    lines.append(summary(totals))
    return "\n".join(lines)


def summary(totals: Outcomes) -> str:
    rate = totals.success_rate
    head = (
        f"last 24 h: {totals.success} succeeded, {totals.failed} failed, "
        f"{totals.skipped} skipped (overlapping), {totals.running} running"
    )
    if rate is None:
        return head + "; success rate: no finished runs"
    verdict = "meets" if rate >= TARGET else "BELOW"
    return f"{head}; success rate {rate:.1%} ({verdict} the {TARGET:.0%} target)"


def _seconds(row: RunRow) -> float:
    assert row.finished_at is not None
    return (row.finished_at - row.started_at).total_seconds()


def _counts(counts: Mapping[str, object]) -> str:
    shown = [f"{label}={counts[name]}" for name, label in _LABELS.items() if counts.get(name)]
    return " ".join(shown)
