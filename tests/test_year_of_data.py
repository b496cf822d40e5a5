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
from schema.partitions import DAILY_TABLES, PARTITIONED_TABLES, SCHEMES, partition_name
from schema.settings import Settings
from tests.receiver.people import add_user, api_token

CHANNELS = 100
PER_STREAM = 20
PER_STREAM_SAMPLES = 26  # one every 5 minutes of a 130-minute stream
# README "Storage per chat message", measured by bench/storage_bench.py, and "viewer
# snapshots", measured by this test; what a partition takes beyond its rows (the partly
# filled last pages of heap and indexes).
BYTES = {"chat_messages": 257, "folded_messages": 208, "viewer_samples": 291, "viewer_hours": 232}
MARGIN = 1.25
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
    INSERT INTO viewer_samples (broadcaster_id, sampled_at, stream_id, viewer_count,
                                interval_seconds, title, game_name, game_id, language,
                                thumbnail_url, started_at)
    SELECT s.broadcaster_id, s.started_at + k * interval '5 minutes', s.id,
           100 + (hashtext(s.id) & 1023) + k * 3, 300,
           'Stream ' || s.id || ', part ' || (k / 9) || ': ranked grind and chat, come say hi',
           'Category number ' || (k / 13), (509658 + k / 13)::text, 'en',
           'https://static-cdn.jtvnw.net/previews-ttv/live_user_ch' || s.broadcaster_id
               || '-{{width}}x{{height}}.jpg',
           s.started_at
    FROM stream_sessions s, generate_series(0, {per_stream_samples} - 1) AS k;
    ANALYZE;
"""

_KEPT = {
    "chat_messages": "SELECT count(*) FROM chat_messages WHERE NOT is_copy",
    "folded_messages": "SELECT count(DISTINCT message_id) FROM folded_messages",
    "viewer_samples": "SELECT count(*) FROM viewer_samples",
    "viewer_hours": "SELECT count(*) FROM viewer_hours",
}
_PER_PARTITION = """
    SELECT tableoid::regclass::text AS part, count(*) FROM {table} GROUP BY 1
"""
_SIZE = """
    SELECT coalesce(sum(pg_total_relation_size(inhrelid)), pg_total_relation_size(:t))
    FROM pg_inherits WHERE inhparent = CAST(:t AS regclass)
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
    viewers = SCHEMES["viewer_samples"]
    for month in viewers.periods(today - timedelta(days=368), today):
        lo, hi = viewers.literal(month), viewers.literal(viewers.after(month))
        statements.append(
            f"CREATE TABLE IF NOT EXISTS {viewers.name(month)} PARTITION OF viewer_samples"
            f" FOR VALUES FROM ({lo}) TO ({hi})"
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
        # Both edges inside hours whose raw rows retention removes.
        (
            "ragged",
            "summary",
            {
                "since": _z(today - timedelta(days=200, minutes=-10)),
                "until": _z(today - timedelta(days=110, minutes=-10)),
            },
        ),
    ):
        response = await api.get(f"/api/channels/{b}/{path}", params=params, headers=headers)
        assert response.status_code == 200, response.text
        out[f"{b} {name}"] = response.json()
    return out


_EDGE_FLAGS = ("chat_exact_edges", "viewer_exact_edges")


def _without_edge_flags(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_edge_flags(v) for k, v in value.items() if k not in _EDGE_FLAGS}
    if isinstance(value, list):
        return [_without_edge_flags(v) for v in value]
    return value


def _flags(answer: Any, flag: str = "chat_exact_edges") -> list[bool]:
    items = answer["sessions"] if isinstance(answer.get("sessions"), list) else [answer]
    return [item[flag] for item in items if flag in item]


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
            text(
                _GENERATE.format(
                    channels=CHANNELS,
                    per_stream=PER_STREAM,
                    per_stream_samples=PER_STREAM_SAMPLES,
                )
            ),
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
        before = {t: await _per_partition(session, t) for t in PARTITIONED_TABLES}
        messages = int(
            await session.scalar(text("SELECT count(*) FROM chat_messages WHERE NOT is_copy")) or 0
        )
        hours_before = int(await session.scalar(text(_KEPT["viewer_hours"])) or 0)
    streams = sum(1 for c in range(CHANNELS) for d in range(2, 366) if (d + c) % 3 == 0)
    assert messages == streams * PER_STREAM

    result, _ = await retention_once(settings, engine, sessions)

    assert result.outcome == "success", result.error
    today = datetime.now(UTC).date()
    async with sessions() as session:
        after = {t: await _per_partition(session, t) for t in PARTITIONED_TABLES}
        sizes = {
            t: int(await session.scalar(text(_SIZE), {"t": t}) or 0)
            for t in (*PARTITIONED_TABLES, "viewer_hours")
        }
        kept = {t: int(await session.scalar(text(_KEPT[t])) or 0) for t in _KEPT}
    print(
        "year of data: bytes", sizes, "rows", kept, "partitions", {t: len(after[t]) for t in after}
    )
    keep_days = {
        "chat_messages": settings.retention_days,
        "folded_messages": 7,
        "viewer_samples": settings.retention_days,
    }
    for table in PARTITIONED_TABLES:
        cutoff = SCHEMES[table].start(today - timedelta(days=keep_days[table]))
        expected = {
            part: n
            for part, n in before[table].items()
            if part.endswith("_default") or part >= partition_name(table, cutoff)
        }
        assert after[table] == expected, table
        gone = sum(before[table].values()) - sum(expected.values())
        assert result.counts[table] == gone
        # What the README predicts for the rows kept, and the disk they take.
        predicted = kept[table] * BYTES[table] * MARGIN + len(after[table]) * PARTITION_BYTES
        assert sizes[table] <= predicted, (table, sizes[table], kept[table], len(after[table]))
    # The rollup is kept whole, and is what the README says it costs.
    assert kept["viewer_hours"] == hours_before
    assert sizes["viewer_hours"] <= kept["viewer_hours"] * BYTES["viewer_hours"] * MARGIN

    after_answers = await answers()
    assert _without_edge_flags(after_answers) == _without_edge_flags(before_answers)
    for b in SAMPLED:
        assert all(_flags(before_answers[f"{b} sessions"]))
        assert _flags(after_answers[f"{b} 90d"]) == [True]
        ragged = (before_answers[f"{b} ragged"], after_answers[f"{b} ragged"])
        assert [_flags(r, "viewer_exact_edges") for r in ragged] == [[True], [False]]
        assert [_flags(r) for r in ragged] == [[True], [False]]
        assert after_answers[f"{b} year"]["viewer_exact_edges"]
        # Sessions older than the kept chat rows are answered on whole hours, and say so
        # (here the same figures: nobody chats outside a stream).
        flags = _flags(after_answers[f"{b} sessions"])
        assert flags.count(False) > 0
        assert flags.count(True) > 0
