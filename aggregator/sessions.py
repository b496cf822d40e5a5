"""A channel's stream sessions: opened, closed by an offline, ended by one rule.

The fold (``store.py``) and reconciliation (``repair_store.py``) both write sessions
here, each under the channel's transaction-scoped advisory lock, so one writer at a time
changes a channel's sessions and the end rule always reads its neighbours settled. No
session end is ever written directly: writers record facts (a start, an offline, a
reconciliation estimate) and ``recompute_session_ends`` re-derives the ends from them
with ``session_ends``, which depends only on the set of facts, never on their order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from aggregator.live_changes import live_states, record_changes
from schema.events import StreamOffline, StreamOnline

_LOCK_CHANNEL = text("SELECT pg_advisory_xact_lock(hashtext('sessions:' || :b))")

# A stream id opens its session once. If reconciliation opened it first, the webhook's
# start time is the better one and replaces the estimate.
_OPEN_FROM_EVENTSUB = text("""
    INSERT INTO stream_sessions (id, broadcaster_id, started_at, started_by)
    VALUES (:id, :broadcaster_id, :started_at, 'eventsub')
    ON CONFLICT (id) DO UPDATE
        SET started_at = excluded.started_at, started_by = 'eventsub', updated_at = now()
        WHERE stream_sessions.started_by = 'reconcile'
""")

# The webhook's start is better than Helix's: a stream.online that already opened this
# stream id (or opens it later, see ``_OPEN_FROM_EVENTSUB``) keeps its own times.
_OPEN_FROM_RECONCILE = text("""
    INSERT INTO stream_sessions (id, broadcaster_id, started_at, started_by, title, game_name)
    VALUES (:id, :broadcaster_id, :started_at, 'reconcile', :title, :game_name)
    ON CONFLICT (id) DO NOTHING
""")

_ESTIMATE = text("""
    UPDATE stream_sessions SET reconcile_ended_at = :ended_at, updated_at = now()
    WHERE id = :id AND reconcile_ended_at IS DISTINCT FROM :ended_at
""")

_RECORD_OFFLINE = text("""
    INSERT INTO stream_offlines (message_id, broadcaster_id, at)
    VALUES (:message_id, :broadcaster_id, :at) ON CONFLICT DO NOTHING
""")

_AFFECTED = text("""
    SELECT id, started_at, started_by, reconcile_ended_at, ended_at, ended_by
    FROM stream_sessions
    WHERE broadcaster_id = :b AND started_at >= coalesce(
        (SELECT max(started_at) FROM stream_sessions
         WHERE broadcaster_id = :b AND started_at < :since), '-infinity')
""")

_OFFLINES_AFTER = text("SELECT at FROM stream_offlines WHERE broadcaster_id = :b AND at > :t")

_SET_END = text("""UPDATE stream_sessions SET ended_at = :end, ended_by = :by,
                   updated_at = now() WHERE id = :id""")


# -- the end rule (pure) ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionFacts:
    id: str
    started_at: datetime
    started_by: str
    reconcile_ended_at: datetime | None


@dataclass(frozen=True, slots=True)
class SessionEnd:
    ended_at: datetime | None
    ended_by: str | None


def session_ends(
    sessions: Sequence[SessionFacts], offlines: Sequence[datetime]
) -> dict[str, SessionEnd]:
    """Where each of one channel's sessions ends, from the facts alone.

    The rule depends only on the set of facts, never on the order they arrived in, so
    reordered and duplicated deliveries fold to the same sessions:

    * a session ends at the first ``stream.offline`` after its start, unless the next
      session started before that offline (then the offline belongs to a later stream);
    * otherwise at the next session's start ("a new stream closes the open one"), or at
      reconciliation's estimate if that is earlier;
    * otherwise it is still open.
    """
    ordered = sorted(sessions, key=lambda s: (s.started_at, s.id))
    offline_times = sorted(offlines)
    ends: dict[str, SessionEnd] = {}
    for index, session in enumerate(ordered):
        following = ordered[index + 1] if index + 1 < len(ordered) else None
        offline = next((t for t in offline_times if t > session.started_at), None)
        if offline is not None and (following is None or offline <= following.started_at):
            ends[session.id] = SessionEnd(offline, "eventsub")
            continue
        candidates: list[tuple[datetime, str]] = []
        if following is not None:
            candidates.append((following.started_at, following.started_by))
        if session.reconcile_ended_at is not None:
            candidates.append((session.reconcile_ended_at, "reconcile"))
        if candidates:
            end, by = min(candidates)
            ends[session.id] = SessionEnd(max(end, session.started_at), by)
        else:
            ends[session.id] = SessionEnd(None, None)
    return ends


# -- writes, under the channel's lock -------------------------------------------------------


async def lock_channels(session: AsyncSession, broadcaster_ids: Iterable[str]) -> None:
    """Take the channels' session locks until the transaction ends, in sorted order so
    the fold and reconciliation never wait for each other in a circle."""
    for broadcaster_id in sorted(broadcaster_ids):
        await session.execute(_LOCK_CHANNEL, {"b": broadcaster_id})


async def fold_stream_events(
    session: AsyncSession, onlines: Sequence[StreamOnline], offlines: Sequence[StreamOffline]
) -> None:
    """EventSub's facts: each online opens its stream's session, each offline is kept;
    then the ends of every session those facts can touch are re-derived, and each channel
    whose live state moved gets its outbox row (``live_changes.py``)."""
    earliest: dict[str, datetime] = {}
    for online in onlines:
        b = online.broadcaster_id
        earliest[b] = min(earliest.get(b, online.started_at), online.started_at)
    for offline in offlines:
        b = offline.broadcaster_id
        earliest[b] = min(earliest.get(b, offline.event_time), offline.event_time)
    if not earliest:
        return
    await lock_channels(session, earliest)
    before = await live_states(session, earliest)
    for online in onlines:
        await session.execute(
            _OPEN_FROM_EVENTSUB,
            {
                "id": online.stream_id,
                "broadcaster_id": online.broadcaster_id,
                "started_at": online.started_at,
            },
        )
    for offline in offlines:
        await session.execute(
            _RECORD_OFFLINE,
            {
                "message_id": offline.message_id,
                "broadcaster_id": offline.broadcaster_id,
                "at": offline.event_time,
            },
        )
    for broadcaster_id, since in sorted(earliest.items()):
        await recompute_session_ends(session, broadcaster_id, since)
    await record_changes(session, before, earliest, source="eventsub")


async def open_from_reconcile(
    session: AsyncSession,
    *,
    stream_id: str,
    broadcaster_id: str,
    started_at: datetime,
    title: str | None,
    game_name: str | None,
) -> None:
    """A stream Helix lists and no session holds; the caller holds the channel's lock."""
    await session.execute(
        _OPEN_FROM_RECONCILE,
        {
            "id": stream_id,
            "broadcaster_id": broadcaster_id,
            "started_at": started_at,
            "title": title,
            "game_name": game_name,
        },
    )


async def set_estimate(session: AsyncSession, session_id: str, ended_at: datetime | None) -> None:
    """Reconciliation's estimate of a session's end (None: live again); the caller holds
    the channel's lock and re-derives the ends afterwards."""
    await session.execute(_ESTIMATE, {"id": session_id, "ended_at": ended_at})


async def recompute_session_ends(
    session: AsyncSession, broadcaster_id: str, since: datetime
) -> None:
    """Re-derive the ends of the sessions a fact at ``since`` can affect: the one that was
    running at ``since`` and every later one. The caller holds the channel's lock."""
    rows = (await session.execute(_AFFECTED, {"b": broadcaster_id, "since": since})).all()
    if not rows:
        return
    first_start = min(row.started_at for row in rows)
    offlines = (
        (await session.execute(_OFFLINES_AFTER, {"b": broadcaster_id, "t": first_start}))
        .scalars()
        .all()
    )
    facts = [SessionFacts(r.id, r.started_at, r.started_by, r.reconcile_ended_at) for r in rows]
    ends = session_ends(facts, list(offlines))
    for row in rows:
        end = ends[row.id]
        if (end.ended_at, end.ended_by) != (row.ended_at, row.ended_by):
            await session.execute(_SET_END, {"end": end.ended_at, "by": end.ended_by, "id": row.id})
