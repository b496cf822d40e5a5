"""The retention job: what it makes, what it removes, what it keeps, and what reads then say.

Real PostgreSQL and the real fold path; the days are placed relative to today, since
retention counts back from now.
"""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import UTC, datetime, time, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from aggregator.pipeline import fold_deliveries
from aggregator.retention import retention_once
from receiver.reads.chat_totals import chat_totals
from schema.events import Delivery
from schema.metrics import REGISTRY
from schema.partitions import create_partition, partition_name
from schema.settings import Settings
from streamfold.eventsub_sender import chat_message_body, rfc3339

CHAT = "channel.chat.message"
NOW = datetime.now(UTC)
TODAY = NOW.date()


def _at(days_ago: int, hour: int = 12, minute: int = 0) -> datetime:
    day = TODAY - timedelta(days=days_ago)
    return datetime.combine(day, time(hour, minute), tzinfo=UTC)


def _chat(n: int, at: datetime) -> Delivery:
    return Delivery(f"ev-{n}", rfc3339(at), CHAT, chat_message_body("7", f"u{n % 3}", f"m-{n}"))


async def _count(session: AsyncSession, sql: str) -> int:
    return int((await session.execute(text(sql))).scalar_one())


def _removed(table: str) -> float:
    name = "streamfold_retention_removed_rows_total"
    return REGISTRY.get_sample_value(name, {"table": table}) or 0


async def _setup(sessions: async_sessionmaker[AsyncSession]) -> None:
    # Partitions as the daily job would have made them; day 200 has none (default).
    for days_ago in (95, 91, 90, 89, 8):
        day = TODAY - timedelta(days=days_ago)
        for table in ("chat_messages", "folded_messages"):
            async with sessions.begin() as session:
                for statement in create_partition(table, day).statements:
                    await session.execute(text(statement))
    deliveries = [
        _chat(1, _at(200)),
        _chat(2, _at(95)),
        _chat(3, _at(91, 23, 30)),  # its copy is in day 90, which stays
        _chat(4, _at(89, 10, 15)),
        _chat(5, _at(8)),
        _chat(6, _at(1)),
    ]
    async with sessions.begin() as session:
        await fold_deliveries(session, deliveries)
        await session.execute(
            text("""INSERT INTO twitch_users (id, login, display_name) VALUES ('u', 'u', 'U');
                    INSERT INTO login_sessions (id, user_id, expires_at, ended_at) VALUES
                        ('expired', 'u', now() - interval '1 hour', NULL),
                        ('ended', 'u', now() + interval '1 day', now() - interval '1 minute'),
                        ('live', 'u', now() + interval '1 day', NULL);
                    INSERT INTO api_tokens (user_id, name, token_sha256, revoked_at) VALUES
                        ('u', 'old', 'a', now() - interval '100 days'),
                        ('u', 'recent', 'b', now() - interval '1 day'),
                        ('u', 'active', 'c', NULL);
                    INSERT INTO job_runs (job, started_at, finished_at, outcome) VALUES
                        ('reconcile', now() - interval '100 days', now() - interval '100 days',
                         'success'),
                        ('reconcile', now() - interval '1 day', now() - interval '1 day',
                         'success')""")
        )


async def test_retention_drops_old_days_and_expired_rows_and_keeps_aggregates(
    settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await _setup(sessions)
    async with sessions() as session:
        hours_before = (await session.execute(text("TABLE channel_hours ORDER BY 1, 2"))).all()
        before = await chat_totals(session, "7", _at(92, 10, 30), _at(88, 10, 30))
    assert (before.chat_messages, before.exact_edges) == (2, True)  # messages 3 and 4
    removed_before = {t: _removed(t) for t in ("chat_messages", "folded_messages")}

    _, plan = await retention_once(settings, engine, sessions, dry_run=True)
    lines = plan.lines()
    assert f"would remove partition {partition_name('chat_messages', _at(95).date())}: 1 rows" in (
        lines
    )
    assert "would remove chat_messages_default: 1 rows" in lines
    async with sessions() as session:
        assert await _count(session, "SELECT count(*) FROM chat_messages") == 7  # one copy

    result, _ = await retention_once(settings, engine, sessions)

    assert result.outcome == "success"
    async with sessions() as session:
        left = await _count(session, "SELECT count(*) FROM chat_messages WHERE NOT is_copy")
        ledger = (
            await session.execute(text("SELECT DISTINCT message_id FROM folded_messages"))
        ).scalars()
        hours_after = (await session.execute(text("TABLE channel_hours ORDER BY 1, 2"))).all()
        after = await chat_totals(session, "7", _at(92, 10, 30), _at(88, 10, 30))
        exact = await chat_totals(session, "7", _at(89, 9), _at(1, 13, 30))
        sessions_left = (
            await session.execute(text("SELECT id FROM login_sessions ORDER BY 1"))
        ).scalars()
        tokens_left = (
            await session.execute(text("SELECT name FROM api_tokens ORDER BY 1"))
        ).scalars()
        runs = (
            await session.execute(
                text("SELECT job, outcome, counts FROM job_runs ORDER BY started_at")
            )
        ).all()
    # Chat rows of days 200, 95 and 91 went (90 days kept); the ledger keeps 7 days.
    assert left == 3
    assert sorted(ledger) == ["ev-6"]
    assert hours_after == hours_before  # aggregates are kept
    # The window's start edge lay in removed rows: whole hours, and the answer says so.
    assert (after.chat_messages, after.exact_edges) == (2, False)
    assert (exact.chat_messages, exact.exact_edges) == (3, True)
    assert list(sessions_left) == ["live"]
    assert list(tokens_left) == ["active", "recent"]
    assert [r.job for r in runs] == ["reconcile", "retention"]
    counts = runs[1].counts
    assert counts["chat_messages"] == 3  # two partitions, one default row
    assert counts["job_runs"] == 1
    assert counts["login_sessions"] == 2
    assert counts["api_tokens"] == 1
    assert counts["folded_messages"] == 6  # 5 ids in 5 partitions (one twice), one default
    assert counts["partitions_dropped"] == 2 + 5  # chat: 95, 91; ledger: 95, 91, 90, 89, 8
    assert _removed("chat_messages") - removed_before["chat_messages"] == 3
    assert _removed("folded_messages") - removed_before["folded_messages"] == 6

    _, plan = await retention_once(settings, engine, sessions, dry_run=True)
    assert plan.removals == []
    assert plan.create == []


async def test_the_retention_command_prints_what_it_would_remove(settings: Settings) -> None:
    env = os.environ | {
        "DATABASE_URL": settings.database_url or "",
        "STREAMFOLD_DATA_DIR": "/nonexistent-streamfold-data",
        "LOG_FORMAT": "console",
        "RETENTION_DAYS": "30",
    }

    async def run(*args: str) -> str:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "streamfold",
            "retention",
            *args,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate()
        assert process.returncode == 0, err.decode()
        return out.decode()

    dry = await run("--dry-run")
    assert "would remove 0 rows in all" in dry
    done = await run()
    assert done.startswith("success: ")
