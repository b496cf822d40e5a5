"""`streamfold status` against a real PostgreSQL and Redis: each line's verdict follows
what the tables and the queue hold."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import pytest
from arq.connections import ArqRedis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schema.jobs import failed_batches_key
from schema.settings import Settings
from streamfold.cli import main
from streamfold.status import Check, gather, render


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


async def test_a_quiet_healthy_pipeline_is_all_ok(
    settings: Settings, redis: ArqRedis, sessions: async_sessionmaker[AsyncSession]
) -> None:
    now = datetime.now(UTC)
    async with sessions.begin() as session:
        for job in ("reconcile", "token_upkeep"):
            await session.execute(
                text("""INSERT INTO job_runs (job, started_at, finished_at, outcome)
                        VALUES (:job, :at, :at, 'success')"""),
                {"job": job, "at": now - timedelta(minutes=1)},
            )
        await session.execute(
            text("""INSERT INTO eventsub_subscriptions (id, type, version, condition, status)
                    VALUES ('s1', 'stream.online', '1', '{}', 'enabled')""")
        )
    checks = await gather(settings, now)
    assert [c.name for c in checks if not c.ok] == []
    report = render(checks)
    assert "1 enabled" in report
    assert re.search(r"database size +[\d.]+ MiB; largest: \w+ [\d.]+ KiB", report)


async def test_each_problem_is_flagged(
    settings: Settings, redis: ArqRedis, sessions: async_sessionmaker[AsyncSession]
) -> None:
    now = datetime.now(UTC)
    async with sessions.begin() as session:
        await session.execute(
            text("""INSERT INTO job_runs (job, started_at, finished_at, outcome, error)
                    VALUES ('reconcile', :at, :at, 'failed', 'TwitchUnavailable: 503')"""),
            {"at": now - timedelta(minutes=2)},
        )
        await session.execute(
            text("""INSERT INTO job_runs (job, started_at, finished_at, outcome)
                    VALUES ('token_upkeep', :at, :at, 'success')"""),
            {"at": now - timedelta(hours=2)},  # three periods missed
        )
        await session.execute(
            text("""INSERT INTO eventsub_subscriptions (id, type, version, condition, status)
                    VALUES ('s1', 'channel.chat.message', '1', '{}', 'enabled'),
                           ('s2', 'channel.chat.message', '1', '{}',
                            'authorization_revoked')""")
        )
        await session.execute(
            text("""INSERT INTO chat_gaps (broadcaster_id, started_at, reason)
                    VALUES ('7', :at, 'subscription revoked')"""),
            {"at": now - timedelta(minutes=5)},
        )
    # A job queued five minutes ago that nobody folded, and a parked batch.
    await redis.zadd(settings.queue_name, {"fold:stuck": (time.time() - 300) * 1000})
    await redis.rpush(failed_batches_key(settings.queue_name), b"payload")  # type: ignore[misc]
    checks = by_name(await gather(settings, now))
    flagged = {name for name, c in checks.items() if not c.ok}
    assert flagged == {
        "queue",
        "parked batches",
        "fold lag",
        "job reconcile",
        "job token_upkeep",
        "job success 24 h",
        "subscriptions",
        "chat gaps open",
    }
    assert "TwitchUnavailable" in checks["job reconcile"].detail
    assert "overdue" in checks["job token_upkeep"].detail
    assert "1 authorization_revoked" in checks["subscriptions"].detail
    assert checks["queue"].detail.startswith("1 job(s) waiting, the oldest due 5 min ago")
    assert checks["database size"].ok


def test_the_command_prints_verdicts_and_exits_1_when_something_needs_a_look(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", settings.database_url or "")
    monkeypatch.setenv("REDIS_URL", settings.redis_url or "")
    monkeypatch.setenv("QUEUE_NAME", settings.queue_name)
    monkeypatch.setenv("TWITCH_CLIENT_SECRET", "secret")  # periodic jobs are expected
    assert main(["status"]) == 1  # they never ran
    out = capsys.readouterr().out
    assert "look at this  job reconcile" in out
    assert "ok            queue" in out
