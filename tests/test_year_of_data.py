"""A year of data for 100 channels, generated in PostgreSQL (not folded one by one), then
one retention run: the raw tables' size is what the README predicts, retention removes
exactly the day partitions past their retention (counted per partition before and after),
and the API answers the same aggregates as before.

Each channel streams every third day for 2 h 10 min from a channel-dependent hour (some
across midnight, so copies exist), with 20 chat messages per stream.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from aggregator.retention import retention_once
from schema.partitions import DAILY_TABLES, partition_name
from schema.settings import Settings
from tests.receiver.people import add_user, api_token

CHANNELS = 100
PER_STREAM = 20
# README "Storage per chat message", measured by bench/storage_bench.py, and what a day
# partition takes beyond its rows (the partly filled last pages of heap and indexes).
CHAT_BYTES, LEDGER_BYTES, MARGIN = 257, 208, 1.25
PARTITION_BYTES = 48 * 1024
SAMPLED = ("100000", "100013", "100042")

_GENERATE = """
    INSERT INTO channels (broadcaster_id) SELECT (100000 + c)::text
        FROM generate_series(0, {channels} - 1) AS c ON CONFLICT DO NOTHING;
    INSERT INTO stream_sessions (id, broadcaster_id, started_at, ended_at, started_by, ended_by)
    SELECT 's' || c || '-' || d, (100000 + c)::text, st, st + interval '130 minutes',
           'eventsub', 'eventsub'
    FROM generate_series(0, {channels} - 1) AS c, generate_series(2, 365) AS d,
         LATERAL (SELECT ((current_date - d)::timestamp AT TIME ZONE 'UTC')
                         + ((c * 7) % 24) * interval '1 hour' + interval '20 minutes') AS t(st)
    WHERE (d + c) % 3 = 0;
    INSERT INTO chat_messages (message_id, day, broadcaster_id, chatter_id, sent_at, is_copy)
    SELECT m.id, x.day, m.b, m.u, m.at, x.is_copy
    FROM (SELECT md5(s.id || '-' || k)::uuid::text AS id, s.broadcaster_id AS b,
                 (5000000 + (s.broadcaster_id::int - 100000) * 100 + (k * 7) % 40)::text AS u,
                 s.started_at + k * interval '260 seconds' AS at
          FROM stream_sessions s, generate_series(0, {per_stream} - 1) AS k) AS m,
         LATERAL (SELECT (m.at AT TIME ZONE 'UTC')::date, false
                  UNION ALL
                  SELECT ((m.at + interval '1 hour') AT TIME ZONE 'UTC')::date, true
                  WHERE ((m.at + interval '1 hour') AT TIME ZONE 'UTC')::date
                        <> (m.at AT TIME ZONE 'UTC')::date) AS x(day, is_copy);
    INSERT INTO folded_messages (message_id, day, subscription_type, folded_at)
    SELECT md5('ev' || message_id)::uuid::text, day, 'channel.chat.message', sent_at
    FROM chat_messages;
    INSERT INTO chatter_hours (broadcaster_id, hour, chatter_id, messages)
    SELECT broadcaster_id, date_trunc('hour', sent_at, 'UTC'), chatter_id, count(*)
    FROM chat_messages WHERE NOT is_copy GROUP BY 1, 2, 3;
    INSERT INTO channel_hours (broadcaster_id, hour, chat_messages, unique_chatters)
    SELECT broadcaster_id, hour, sum(messages), count(*) FROM chatter_hours GROUP BY 1, 2;
    ANALYZE;
"""

_PER_PARTITION = """
    SELECT tableoid::regclass::text AS part, count(*) FROM {table} GROUP BY 1
"""
_SIZE = """
    SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0) FROM pg_inherits
    WHERE inhparent = CAST(:t AS regclass)
"""


async def _partitions_for_the_year(sessions: async_sessionmaker[AsyncSession]) -> None:
    """As the daily job would have made them (the template has the last week)."""
    today = datetime.now(UTC).date()
    statements = []
    for table in DAILY_TABLES:
        for back in range(8, 368):
            day = today - timedelta(days=back)
            statements.append(
                f"CREATE TABLE {partition_name(table, day)} PARTITION OF {table}"
                f" FOR VALUES FROM ('{day}') TO ('{day + timedelta(days=1)}')"
            )
    async with sessions.begin() as session:
        await session.execute(text(";".join(statements)))


async def _per_partition(session: AsyncSession, table: str) -> dict[str, int]:
    rows = await session.execute(text(_PER_PARTITION.format(table=table)))
    return {r.part: int(r.count) for r in rows}


def _z(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


async def _answers(api: httpx.AsyncClient, b: str, headers: dict[str, str]) -> dict[str, Any]:
    """What the API answers about channel ``b``: its hours, sessions and summaries."""
    today = datetime.combine(datetime.now(UTC).date(), time(), tzinfo=UTC)
    year = {"since": _z(today - timedelta(days=366)), "until": _z(today)}
    out: dict[str, Any] = {}
    for name, path, params in (
        ("hourly", "hourly", year),
        ("year", "summary", year),
        ("90d", "summary", {"window": "90d", "until": _z(today)}),
        ("sessions", "sessions", year | {"limit": "500"}),
    ):
        response = await api.get(f"/api/channels/{b}/{path}", params=params, headers=headers)
        assert response.status_code == 200, response.text
        out[f"{b} {name}"] = response.json()
    return out


def _without_edge_flags(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_edge_flags(v) for k, v in value.items() if k != "chat_exact_edges"}
    if isinstance(value, list):
        return [_without_edge_flags(v) for v in value]
    return value


def _flags(answer: Any) -> list[bool]:
    items = answer["sessions"] if isinstance(answer.get("sessions"), list) else [answer]
    return [item["chat_exact_edges"] for item in items if "chat_exact_edges" in item]


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_a_year_of_data_then_retention(
    settings: Settings,
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    receiver: httpx.AsyncClient,
) -> None:
    await _partitions_for_the_year(sessions)
    async with sessions.begin() as session:
        await session.execute(
            text(_GENERATE.format(channels=CHANNELS, per_stream=PER_STREAM)),
        )
    tokens = {}
    for b in SAMPLED:  # each read by its streamer
        await add_user(sessions, b, f"ch{b}", streamer=True)
        tokens[b] = await api_token(sessions, b)

    async def answers() -> dict[str, Any]:
        out: dict[str, Any] = {}
        for b in SAMPLED:
            out |= await _answers(receiver, b, tokens[b])
        return out

    before_answers = await answers()
    async with sessions() as session:
        before = {t: await _per_partition(session, t) for t in DAILY_TABLES}
        messages = int(
            await session.scalar(text("SELECT count(*) FROM chat_messages WHERE NOT is_copy")) or 0
        )
    streams = sum(1 for c in range(CHANNELS) for d in range(2, 366) if (d + c) % 3 == 0)
    assert messages == streams * PER_STREAM

    result, _ = await retention_once(settings, engine, sessions)

    assert result.outcome == "success", result.error
    today = datetime.now(UTC).date()
    async with sessions() as session:
        after = {t: await _per_partition(session, t) for t in DAILY_TABLES}
        sizes = {t: int(await session.scalar(text(_SIZE), {"t": t}) or 0) for t in DAILY_TABLES}
        kept = {
            t: int(
                await session.scalar(
                    text(f"SELECT count(*) FROM {t} WHERE NOT is_copy")  # noqa: S608
                    if t == "chat_messages"
                    else text(f"SELECT count(DISTINCT message_id) FROM {t}")  # noqa: S608
                )
                or 0
            )
            for t in DAILY_TABLES
        }
    print(
        "year of data: bytes", sizes, "rows", kept, "partitions", {t: len(after[t]) for t in after}
    )
    keep_days = {"chat_messages": settings.retention_days, "folded_messages": 7}
    for table in DAILY_TABLES:
        cutoff = today - timedelta(days=keep_days[table])
        expected = {
            part: n
            for part, n in before[table].items()
            if part.endswith("_default") or part >= partition_name(table, cutoff)
        }
        assert after[table] == expected, table
        gone = sum(before[table].values()) - sum(expected.values())
        assert result.counts[table] == gone
        # What the README predicts for the rows kept, and the disk they take.
        per = CHAT_BYTES if table == "chat_messages" else LEDGER_BYTES
        predicted = kept[table] * per * MARGIN + len(after[table]) * PARTITION_BYTES
        assert sizes[table] <= predicted, (table, sizes[table], kept[table], len(after[table]))

    after_answers = await answers()
    assert _without_edge_flags(after_answers) == _without_edge_flags(before_answers)
    for b in SAMPLED:
        assert all(_flags(before_answers[f"{b} sessions"]))
        assert _flags(after_answers[f"{b} 90d"]) == [True]
        # Sessions older than the kept chat rows are answered on whole hours, and say so
        # (here the same figures: nobody chats outside a stream).
        flags = _flags(after_answers[f"{b} sessions"])
        assert flags.count(False) > 0
        assert flags.count(True) > 0
