"""``job_runs``: one row per run of a periodic job, what it did and how it ended.

A run is inserted as ``running`` in its own committed transaction before it does any
work, so a worker that dies mid-run leaves a visible row; the next run of the same job,
holding the job's lock, marks such rows ``failed``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

ABANDONED = "abandoned: the process stopped before the run finished"


async def start_run(session: AsyncSession, job: str, now: datetime) -> int:
    result = await session.execute(
        text("""INSERT INTO job_runs (job, started_at, outcome)
                VALUES (:job, :now, 'running') RETURNING id"""),
        {"job": job, "now": now},
    )
    return int(result.scalar_one())


async def finish_run(
    session: AsyncSession,
    run_id: int,
    *,
    outcome: str,
    finished_at: datetime,
    counts: Mapping[str, Any],
    error: str | None = None,
) -> None:
    await session.execute(
        text("""UPDATE job_runs SET outcome = :outcome, finished_at = :at,
                       counts = CAST(:counts AS jsonb), error = :error
                WHERE id = :id"""),
        {
            "id": run_id,
            "outcome": outcome,
            "at": finished_at,
            "counts": msgspec.json.encode(dict(counts)).decode(),
            "error": error[:2000] if error else None,
        },
    )


async def record_skipped(session: AsyncSession, job: str, now: datetime, reason: str) -> None:
    await session.execute(
        text("""INSERT INTO job_runs (job, started_at, finished_at, outcome, error)
                VALUES (:job, :now, :now, 'skipped', :reason)"""),
        {"job": job, "now": now, "reason": reason},
    )


async def fail_abandoned(session: AsyncSession, job: str, now: datetime) -> int:
    """Mark ``running`` rows failed; only call while holding the job's lock."""
    result = await session.execute(
        text("""UPDATE job_runs SET outcome = 'failed', finished_at = :now, error = :error
                WHERE job = :job AND outcome = 'running' RETURNING id"""),
        {"job": job, "now": now, "error": ABANDONED},
    )
    return len(result.all())


@dataclass(frozen=True, slots=True)
class RunRow:
    id: int
    job: str
    started_at: datetime
    finished_at: datetime | None
    outcome: str
    counts: dict[str, Any]
    error: str | None


@dataclass(frozen=True, slots=True)
class Outcomes:
    success: int
    failed: int
    skipped: int
    running: int

    @property
    def success_rate(self) -> float | None:
        """Successful runs among finished attempts (skipped ticks are counted apart)."""
        attempts = self.success + self.failed
        return self.success / attempts if attempts else None


async def recent_runs(session: AsyncSession, job: str | None, limit: int) -> list[RunRow]:
    rows = await session.execute(
        text("""SELECT id, job, started_at, finished_at, outcome, counts, error FROM job_runs
                WHERE CAST(:job AS text) IS NULL OR job = :job
                ORDER BY started_at DESC, id DESC LIMIT :limit"""),
        {"job": job, "limit": limit},
    )
    return [RunRow(**r._mapping) for r in rows]


async def outcomes(
    session: AsyncSession, job: str | None, now: datetime, window: timedelta
) -> Outcomes:
    row = (
        await session.execute(
            text("""SELECT count(*) FILTER (WHERE outcome = 'success') AS success,
                           count(*) FILTER (WHERE outcome = 'failed') AS failed,
                           count(*) FILTER (WHERE outcome = 'skipped') AS skipped,
                           count(*) FILTER (WHERE outcome = 'running') AS running
                    FROM job_runs
                    WHERE (CAST(:job AS text) IS NULL OR job = :job) AND started_at >= :since"""),
            {"job": job, "since": now - window},
        )
    ).one()
    return Outcomes(int(row.success), int(row.failed), int(row.skipped), int(row.running))
