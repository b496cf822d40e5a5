"""Reads the facts reconciliation needs and writes its repairs, in the caller's transaction.

Session writes go through ``sessions.py`` under the same per-channel advisory lock as
the fold, after re-reading the channel's sessions under it, so a webhook folded between
our first read and our write is seen before we decide. Ends are then re-derived by
``sessions.recompute_session_ends``, never written here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from aggregator.live_changes import live_states, record_changes
from aggregator.repairs import ChannelRepairs, KnownSession, LiveStream, Sample, plan_channel
from aggregator.sessions import (
    lock_channels,
    open_from_reconcile,
    recompute_session_ends,
    set_estimate,
)

# Tracked channels: connected, or followed (sessions and viewer figures for those too).
_TRACKED = text("""
    SELECT broadcaster_id FROM channels c
    WHERE connected OR EXISTS (SELECT 1 FROM follows f WHERE f.broadcaster_id = c.broadcaster_id)
    ORDER BY broadcaster_id
""")

# Open sessions of the channels, and the sessions of the streams Helix lists, each with
# its newest sample (a backward index scan from now to the session's start).
_KNOWN_SESSIONS = text("""
    SELECT s.id, s.broadcaster_id, s.started_at, s.ended_at, s.ended_by, s.reconcile_ended_at,
           (SELECT v.sampled_at FROM viewer_samples v
            WHERE v.broadcaster_id = s.broadcaster_id AND v.sampled_at >= s.started_at
              AND v.stream_id = s.id
            ORDER BY v.sampled_at DESC LIMIT 1) AS last_sample_at
    FROM stream_sessions s
    WHERE s.broadcaster_id = ANY(CAST(:channels AS text[]))
      AND (s.ended_at IS NULL OR s.id = ANY(CAST(:stream_ids AS text[])))
""")

# Also the collector's, for the channels of Twitch's top list that are not tracked.
SAMPLES_INSERT = """
    INSERT INTO viewer_samples
        (broadcaster_id, sampled_at, stream_id, viewer_count, interval_seconds, title, game_name,
         game_id, language, thumbnail_url, started_at)
    SELECT b, :sampled_at, s, v, i, t, g, gi, l, th, st
    FROM unnest(CAST(:b AS text[]), CAST(:s AS text[]), CAST(:v AS int[]), CAST(:i AS int[]),
                CAST(:t AS text[]), CAST(:g AS text[]), CAST(:gi AS text[]), CAST(:l AS text[]),
                CAST(:th AS text[]), CAST(:st AS timestamptz[]))
         AS x(b, s, v, i, t, g, gi, l, th, st)
    ORDER BY b
    ON CONFLICT (broadcaster_id, sampled_at) DO NOTHING
    RETURNING 1
"""
_SAMPLES = text(SAMPLES_INSERT)

# A session's title and category are the latest Helix reported.
# Titles of channels this run did not lock: a row a fold is writing right now is skipped
# (the next run catches up) instead of waited for, which could deadlock against the
# fold's per-channel locks taken in the other order.
_TITLES = text("""
    WITH x AS (
        SELECT * FROM unnest(CAST(:s AS text[]), CAST(:t AS text[]), CAST(:g AS text[]))
            AS x(s, t, g)
    ), free AS (
        SELECT l.id FROM stream_sessions AS l JOIN x ON l.id = x.s
        WHERE l.title IS DISTINCT FROM x.t OR l.game_name IS DISTINCT FROM x.g
        ORDER BY l.id
        FOR UPDATE OF l SKIP LOCKED
    )
    UPDATE stream_sessions AS s SET title = x.t, game_name = x.g, updated_at = now()
    FROM x WHERE s.id = x.s AND s.id IN (SELECT id FROM free)
""")


@dataclass(slots=True)
class RepairCounts:
    channels_checked: int = 0
    live: int = 0
    sessions_opened: int = 0
    sessions_closed: int = 0
    sessions_replaced: int = 0
    sessions_reopened: int = 0
    samples_stored: int = 0
    live_changes: int = 0
    changed_channels: list[str] = field(default_factory=list)

    def add(self, repairs: ChannelRepairs) -> None:
        self.sessions_opened += repairs.open is not None
        self.sessions_closed += repairs.closed
        self.sessions_replaced += repairs.replaced
        self.sessions_reopened += repairs.reopened


async def tracked_channels(session: AsyncSession) -> list[str]:
    return list((await session.execute(_TRACKED)).scalars())


async def known_sessions(
    session: AsyncSession, channels: Sequence[str], stream_ids: Iterable[str]
) -> dict[str, list[KnownSession]]:
    rows = await session.execute(
        _KNOWN_SESSIONS, {"channels": list(channels), "stream_ids": list(stream_ids)}
    )
    known: dict[str, list[KnownSession]] = {b: [] for b in channels}
    for r in rows:
        known[r.broadcaster_id].append(
            KnownSession(
                r.id, r.started_at, r.ended_at, r.ended_by, r.reconcile_ended_at, r.last_sample_at
            )
        )
    return known


async def repair_channels(
    session: AsyncSession,
    channels: Sequence[str],
    live: dict[str, LiveStream],
    *,
    now: datetime,
    grace: timedelta,
    interval: timedelta,
) -> RepairCounts:
    """Repair one chunk of channels (at most a Helix page, so the transaction and its
    advisory locks stay small) and store their viewer samples taken at ``now``."""
    counts = RepairCounts(channels_checked=len(channels), live=len(live))

    def plans(known: dict[str, list[KnownSession]]) -> dict[str, ChannelRepairs]:
        return {
            b: plan_channel(live.get(b), known[b], now=now, grace=grace, interval=interval)
            for b in known
        }

    planned = plans(await known_sessions(session, channels, (s.stream_id for s in live.values())))
    changing = sorted(b for b, p in planned.items() if p.writes_sessions)
    if changing:
        await lock_channels(session, changing)
        before = await live_states(session, changing)
        stream_ids = [live[b].stream_id for b in changing if b in live]
        planned.update(plans(await known_sessions(session, changing, stream_ids)))
        for broadcaster_id in changing:
            repairs = planned[broadcaster_id]
            if repairs.writes_sessions:
                await _apply(session, broadcaster_id, repairs)
                counts.add(repairs)
                counts.changed_channels.append(broadcaster_id)
        counts.live_changes = await record_changes(session, before, changing, source="reconcile")
    samples = [p.sample for p in planned.values() if p.sample is not None]
    counts.samples_stored = await _store_samples(session, samples, now)
    return counts


async def _apply(session: AsyncSession, broadcaster_id: str, repairs: ChannelRepairs) -> None:
    starts: list[datetime] = []
    if repairs.open is not None:
        stream = repairs.open
        await open_from_reconcile(
            session,
            stream_id=stream.stream_id,
            broadcaster_id=broadcaster_id,
            started_at=stream.started_at,
            title=stream.title,
            game_name=stream.game_name,
        )
        starts.append(stream.started_at)
    for estimate in repairs.estimates:
        await set_estimate(session, estimate.session_id, estimate.ended_at)
    if repairs.estimates:
        rows = await session.execute(
            text(
                "SELECT min(started_at) FROM stream_sessions WHERE id = ANY(CAST(:ids AS text[]))"
            ),
            {"ids": [e.session_id for e in repairs.estimates]},
        )
        first = rows.scalar_one_or_none()
        if first is not None:
            starts.append(first)
    await recompute_session_ends(session, broadcaster_id, min(starts))


def sample_rows(ordered: Sequence[Sample], now: datetime) -> dict[str, object]:
    """``SAMPLES_INSERT``'s parameters: one array per column."""
    return {
        "sampled_at": now,
        "b": [s.broadcaster_id for s in ordered],
        "s": [s.stream_id for s in ordered],
        "v": [s.viewer_count for s in ordered],
        "i": [s.interval_seconds for s in ordered],
        "t": [s.title for s in ordered],
        "g": [s.game_name for s in ordered],
        "gi": [s.game_id for s in ordered],
        "l": [s.language for s in ordered],
        "th": [s.thumbnail_url for s in ordered],
        "st": [s.started_at for s in ordered],
    }


async def _store_samples(session: AsyncSession, samples: Sequence[Sample], now: datetime) -> int:
    if not samples:
        return 0
    ordered = sorted(samples, key=lambda s: s.broadcaster_id)
    stored = await session.execute(_SAMPLES, sample_rows(ordered, now))
    count = len(stored.all())
    await session.execute(
        _TITLES,
        {
            "s": [s.stream_id for s in ordered],
            "t": [s.title for s in ordered],
            "g": [s.game_name for s in ordered],
        },
    )
    return count
