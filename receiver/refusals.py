"""Refused deliveries become a chat gap, so nobody mistakes them for a quiet hour.

When the queue (Redis) cannot take a notification the receiver answers 503 and Twitch
retries, but Twitch's retries are not unbounded (PROTOCOL.md 1.6) and Helix cannot give
chat back. PostgreSQL is usually up when Redis is down, so the receiver writes a gap for
every channel (``broadcaster_id`` NULL) covering the refusals: at most one write per
minute per process, each extending the current gap a minute ahead.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schema.logs import get_logger

log = get_logger("receiver.refusals")

REASON = "receiver_refused"
WRITE_EVERY = timedelta(minutes=1)
# A refusal answers 503 at once; the gap write must never make Twitch wait long.
WRITE_TIMEOUT_SECONDS = 1.0

# Extend this process's recent gap if it still reaches back to the last write, else start
# a new one. Gaps of several processes may overlap; readers only ask "any gap here?".
_EXTEND_OR_OPEN = text("""
    WITH extended AS (
        UPDATE chat_gaps SET ended_at = greatest(ended_at, :until)
        WHERE id = (SELECT id FROM chat_gaps
                    WHERE broadcaster_id IS NULL AND reason = :reason
                      AND ended_at >= :since - :every AND started_at <= :since
                    ORDER BY ended_at DESC LIMIT 1)
        RETURNING id
    )
    INSERT INTO chat_gaps (broadcaster_id, started_at, ended_at, reason)
    SELECT NULL, :since, :until, :reason WHERE NOT EXISTS (SELECT 1 FROM extended)
""")

_last_write: weakref.WeakKeyDictionary[async_sessionmaker[AsyncSession], float] = (
    weakref.WeakKeyDictionary()
)


async def note_refusal(
    sessions: async_sessionmaker[AsyncSession], event_time: datetime, now: datetime
) -> None:
    """Record that a delivery with ``event_time`` was refused at ``now``; never raises."""
    tick = time.monotonic()
    last = _last_write.get(sessions)
    if last is not None and tick - last < WRITE_EVERY.total_seconds():
        return
    _last_write[sessions] = tick
    try:
        async with asyncio.timeout(WRITE_TIMEOUT_SECONDS), sessions.begin() as session:
            await session.execute(
                _EXTEND_OR_OPEN,
                {
                    "since": min(event_time, now),
                    "until": now + WRITE_EVERY,
                    "every": WRITE_EVERY,
                    "reason": REASON,
                },
            )
        log.warning("eventsub.refusal_gap_recorded")
    except Exception as exc:  # PostgreSQL may be down too; the 503 matters more.
        _last_write.pop(sessions, None)
        log.error("eventsub.refusal_gap_failed", error=type(exc).__name__)
