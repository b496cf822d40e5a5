"""Changes of a channel's live state, written to the outbox in the fold's transaction.

A channel's live state is its latest session (by start): online while that session is
open, offline once it ended. Writers of sessions (the fold, reconciliation) read the
states of the channels they lock before and after their writes, under the same channel
lock, and ``record_changes`` adds one ``live_outbox`` row per channel whose state moved:
online for a new open session (opened, or replacing another), offline when the open one
closed. A redelivered webhook changes no session, so it adds nothing; the publisher
(``live_publisher.py``) sends the rows after commit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


@dataclass(frozen=True, slots=True)
class LiveState:
    stream_id: str
    online: bool
    started_at: datetime
    title: str | None
    game_name: str | None


_LATEST = text("""
    SELECT DISTINCT ON (broadcaster_id) broadcaster_id, id, ended_at IS NULL AS online,
           started_at, title, game_name
    FROM stream_sessions WHERE broadcaster_id = ANY(CAST(:b AS text[]))
    ORDER BY broadcaster_id, started_at DESC, id DESC
""")

_OUTBOX = text("""
    INSERT INTO live_outbox (broadcaster_id, online, stream_id, started_at, title, game_name,
                             source)
    VALUES (:b, :online, :stream_id, :started_at, :title, :game_name, :source)
""")


async def live_states(session: AsyncSession, channels: Iterable[str]) -> dict[str, LiveState]:
    ids = sorted(set(channels))
    if not ids:
        return {}
    rows = await session.execute(_LATEST, {"b": ids})
    return {
        r.broadcaster_id: LiveState(r.id, r.online, r.started_at, r.title, r.game_name)
        for r in rows
    }


def moved(before: LiveState | None, after: LiveState | None) -> LiveState | None:
    """The state to announce, if the channel's live state changed (pure)."""
    if after is None:
        return None
    if after.online:
        same = before is not None and before.online and before.stream_id == after.stream_id
        return None if same else after
    return after if before is not None and before.online else None


async def record_changes(
    session: AsyncSession,
    before: dict[str, LiveState],
    channels: Iterable[str],
    *,
    source: str,
) -> int:
    """Outbox rows for the channels whose state moved since ``before``; how many."""
    after = await live_states(session, channels)
    written = 0
    for broadcaster_id in sorted(after):
        change = moved(before.get(broadcaster_id), after[broadcaster_id])
        if change is None:
            continue
        await session.execute(
            _OUTBOX,
            {
                "b": broadcaster_id,
                "online": change.online,
                "stream_id": change.stream_id,
                "started_at": change.started_at,
                "title": change.title,
                "game_name": change.game_name,
                "source": source,
            },
        )
        written += 1
    return written
