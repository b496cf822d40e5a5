"""``roll_up_chatters`` (cron): build the hour, day and month chatter sets
(``chatter_sets``, see ``schema/chatter_sets.py``) of periods that ended recently and have
no current set yet, so a window's exact unique chatters union a few bitmaps instead of
every chatter-hour; and the chat totals of sessions that ended recently (``span_chat``),
so the sessions page reads one row per session instead of its edge messages.

The fold does not touch the sets: a set is written once its period is over, by one job,
so the hot channel's rows get no second writer and the fold no extra statement. Reads
never depend on it having run: a missing or stale set is read one level finer.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from arq.cron import CronJob, cron
from pyroaring import BitMap
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from aggregator.context import state
from schema import chatter_sets
from schema.chatter_sets import LEVELS, Level
from schema.logs import get_logger

log = get_logger("aggregator.chatter_rollup")

ROLLUP_JOB = "roll_up_chatters"
# Chat reaches the fold within Twitch's redelivery window, minutes late at worst; two days
# back re-checks whatever a worker outage delayed. A set made stale later still reads
# exactly, through its finer periods.
LOOKBACK = timedelta(days=2)
# Sessions counted per statement: a backfill of a year of 1,000 channels is 366,000.
SPAN_BATCH = 2_000

# Periods of one level that saw chat and whose set is missing or counts other rows than
# ``channel_hours`` does now. The session runs in UTC, so month arithmetic is UTC's.
_TODO = text("""
    WITH counts AS (
        SELECT broadcaster_id, date_trunc(:level, hour) AS period_start,
               date_trunc(:level, hour) + CAST(:step AS interval) AS period_end,
               sum(unique_chatters) AS n
        FROM channel_hours
        WHERE hour >= :scan_from AND hour < :until AND unique_chatters > 0
        GROUP BY 1, 2
    )
    SELECT c.broadcaster_id, c.period_start, c.period_end
    FROM counts c
    LEFT JOIN chatter_sets s ON s.broadcaster_id = c.broadcaster_id
        AND s.period_start = c.period_start AND s.period_end = c.period_end
    WHERE c.period_end > :ended_after AND c.period_end <= :until
      AND s.chatter_hours IS DISTINCT FROM c.n
""")

_ADD_KEYS = text("""
    INSERT INTO chatter_keys (chatter_id)
    SELECT DISTINCT chatter_id FROM chatter_hours
    WHERE broadcaster_id = ANY(:bs) AND hour >= :since AND hour < :until
    ORDER BY chatter_id
    ON CONFLICT (chatter_id) DO NOTHING
""")

# A row without a key yet (folded after _ADD_KEYS) is left out of both the set and its
# count, so the set reads as stale until the next run rather than as complete.
_HOUR_KEYS = text("""
    SELECT h.broadcaster_id, h.hour, array_agg(k.chatter_key) AS keys
    FROM chatter_hours h JOIN chatter_keys k USING (chatter_id)
    WHERE h.broadcaster_id = ANY(:bs) AND h.hour >= :since AND h.hour < :until
    GROUP BY 1, 2
""")

_SAVE = text("""
    INSERT INTO chatter_sets (broadcaster_id, period_start, period_end, chatter_hours, chatters)
    SELECT * FROM unnest(CAST(:bs AS text[]), CAST(:starts AS timestamptz[]),
                         CAST(:ends AS timestamptz[]), CAST(:counts AS int[]),
                         CAST(:blobs AS bytea[]))
    ON CONFLICT (broadcaster_id, period_start, period_end) DO UPDATE
        SET chatter_hours = excluded.chatter_hours, chatters = excluded.chatters
""")

_TOUCHED = chatter_sets.touched_messages("s.broadcaster_id", "s.started_at", "s.ended_at")

# Sessions that ended in (ended_after, until] whose totals are missing or stale. The stamp
# is read before the totals are counted (next statement), so a message folded in between
# is counted but makes the stamp older than the hours: the row reads as stale, never as
# current without it. Totals are per span, not per session: two sessions of one channel
# with the same start and end (not one Twitch makes, but nothing refuses it) share a row.
_SPANS_TODO = text(f"""
    SELECT DISTINCT s.broadcaster_id, s.started_at, s.ended_at, {_TOUCHED} AS hour_messages
    FROM stream_sessions s
    LEFT JOIN span_chat t USING (broadcaster_id, started_at, ended_at)
    WHERE s.ended_at > :ended_after AND s.ended_at <= :until AND s.ended_at > s.started_at
      AND t.hour_messages IS DISTINCT FROM {_TOUCHED}
""")  # noqa: S608 - fixed SQL fragments

# A span's totals, counted plainly: whole hours [wf, wt) from the hour rows, the partial
# hours at its edges from the messages; distinct over both.
_SAVE_SPANS = text("""
    WITH due AS (
        SELECT d.*, greatest(d.wf, date_trunc('hour', d.ended_at, 'UTC')) AS wt
        FROM (SELECT u.*, CASE WHEN date_trunc('hour', u.started_at, 'UTC') = u.started_at
                              THEN u.started_at
                              ELSE date_trunc('hour', u.started_at, 'UTC') + interval '1 hour'
                         END AS wf
              FROM unnest(CAST(:bs AS text[]), CAST(:starts AS timestamptz[]),
                          CAST(:ends AS timestamptz[]), CAST(:stamps AS bigint[]))
                   AS u(broadcaster_id, started_at, ended_at, hour_messages)) AS d
    ), chatters AS (
        SELECT d.broadcaster_id, d.started_at, d.ended_at, h.chatter_id, 0 AS n
        FROM due d JOIN chatter_hours h ON h.broadcaster_id = d.broadcaster_id
            AND h.hour >= d.wf AND h.hour < d.wt
        UNION ALL
        SELECT d.broadcaster_id, d.started_at, d.ended_at, m.chatter_id, 1
        FROM due d JOIN chat_messages m ON m.broadcaster_id = d.broadcaster_id
            AND m.sent_at >= d.started_at AND m.sent_at < least(d.wf, d.ended_at)
            AND NOT m.is_copy
        UNION ALL
        SELECT d.broadcaster_id, d.started_at, d.ended_at, m.chatter_id, 1
        FROM due d JOIN chat_messages m ON m.broadcaster_id = d.broadcaster_id
            AND m.sent_at >= d.wt AND m.sent_at < d.ended_at AND NOT m.is_copy
    )
    INSERT INTO span_chat (broadcaster_id, started_at, ended_at, hour_messages, chat_messages,
                           unique_chatters)
    SELECT d.broadcaster_id, d.started_at, d.ended_at, d.hour_messages,
           (SELECT coalesce(sum(h.chat_messages), 0) FROM channel_hours h
            WHERE h.broadcaster_id = d.broadcaster_id AND h.hour >= d.wf AND h.hour < d.wt)
           + coalesce(c.edge_messages, 0),
           coalesce(c.chatters, 0)
    FROM due d
    LEFT JOIN (SELECT broadcaster_id, started_at, ended_at, sum(n) AS edge_messages,
                      count(DISTINCT chatter_id) AS chatters
               FROM chatters GROUP BY 1, 2, 3) c USING (broadcaster_id, started_at, ended_at)
    ON CONFLICT (broadcaster_id, started_at, ended_at) DO UPDATE
        SET hour_messages = excluded.hour_messages, chat_messages = excluded.chat_messages,
            unique_chatters = excluded.unique_chatters
""")

_STEPS: dict[Level, str] = {"hour": "1 hour", "day": "1 day", "month": "1 month"}


@dataclass(frozen=True, slots=True)
class Todo:
    broadcaster_id: str
    level: Level
    start: datetime
    end: datetime


async def _todo(session: AsyncSession, ended_after: datetime, until: datetime) -> list[Todo]:
    found = []
    for level in LEVELS:
        params = {
            "level": level,
            "step": _STEPS[level],
            "scan_from": chatter_sets.period_start(ended_after, level),
            "ended_after": ended_after,
            "until": until,
        }
        rows = (await session.execute(_TODO, params)).all()
        found += [Todo(r.broadcaster_id, level, r.period_start, r.period_end) for r in rows]
    return found


async def _build(session: AsyncSession, todo: list[Todo]) -> int:
    """Build the sets of ``todo`` from their channels' hour rows, all levels from one read."""
    bs = sorted({t.broadcaster_id for t in todo})
    params = {"bs": bs, "since": min(t.start for t in todo), "until": max(t.end for t in todo)}
    await session.execute(_ADD_KEYS, params)
    hours: dict[str, list[tuple[datetime, list[int]]]] = defaultdict(list)
    for r in (await session.execute(_HOUR_KEYS, params)).all():
        hours[r.broadcaster_id].append((r.hour, r.keys))
    starts: dict[str, list[datetime]] = {}
    for b, rows in hours.items():
        rows.sort(key=lambda row: row[0])
        starts[b] = [hour for hour, _ in rows]
    saved: dict[str, list[Any]] = {"bs": [], "starts": [], "ends": [], "counts": [], "blobs": []}
    for t in todo:
        keys, count = BitMap(), 0
        at = starts.get(t.broadcaster_id, [])
        for _, ks in hours[t.broadcaster_id][bisect_left(at, t.start) : bisect_left(at, t.end)]:
            keys.update(ks)
            count += len(ks)
        for name, value in zip(
            saved,
            (t.broadcaster_id, t.start, t.end, count, chatter_sets.encode(keys)),
            strict=True,
        ):
            saved[name].append(value)
    await session.execute(_SAVE, saved)
    return len(todo)


async def roll_up(session: AsyncSession, *, ended_after: datetime, until: datetime) -> int:
    """Write the sets of periods ending in ``(ended_after, until]`` that lack a current
    one; returns how many. ``until`` should be a whole hour no later than now. Works in
    month-long chunks so a backfill of years holds one month of chatter-hours at a time."""
    await session.execute(text("SET LOCAL timezone = 'UTC'"))
    todo = await _todo(session, ended_after, until)
    chunks: dict[datetime, list[Todo]] = defaultdict(list)
    for t in todo:
        chunks[chatter_sets.period_start(t.start, "month")].append(t)
    written = 0
    for month in sorted(chunks):
        written += await _build(session, chunks[month])
    return written + await roll_up_spans(session, ended_after=ended_after, until=until)


async def roll_up_spans(session: AsyncSession, *, ended_after: datetime, until: datetime) -> int:
    """Count the chat totals of sessions that ended in ``(ended_after, until]`` and lack
    current ones, so the sessions page reads one row per session instead of its edge
    messages and chatter sets. A session still open, or whose end moved, has no current
    row and is read from the sets and raw rows."""
    rows = (await session.execute(_SPANS_TODO, {"ended_after": ended_after, "until": until})).all()
    for i in range(0, len(rows), SPAN_BATCH):
        batch = rows[i : i + SPAN_BATCH]
        await session.execute(
            _SAVE_SPANS,
            {
                "bs": [r.broadcaster_id for r in batch],
                "starts": [r.started_at for r in batch],
                "ends": [r.ended_at for r in batch],
                "stamps": [r.hour_messages for r in batch],
            },
        )
    return len(rows)


async def roll_up_chatters(ctx: dict[str, Any]) -> int:
    until = chatter_sets.period_start(datetime.now(UTC), "hour")
    async with state(ctx).sessions.begin() as session:
        written = await roll_up(session, ended_after=until - LOOKBACK, until=until)
    log.info("chatters.rolled_up", sets=written)
    return written


def rollup_cron() -> CronJob:
    # A few minutes past each hour: the hour just ended gets its set, and a read of it
    # goes from ~1,500 chatter-hour rows (the busiest channel) to one bitmap.
    return cron(
        roll_up_chatters,
        name=f"cron:{ROLLUP_JOB}",
        minute={2, 17, 32, 47},
        second={0},
        unique=True,
        run_at_startup=False,
        timeout=600,
        max_tries=1,
        keep_result=0,
    )
