"""Writes a batch of deliveries to PostgreSQL in the caller's transaction.

The ledger insert and every counter change happen in one transaction, so a delivery is
folded at most once however often it is redelivered or its job re-runs, and a job that
finishes has its effects committed. Chat is folded set-based, one statement per batch:
per-message round trips would cap a worker near 2,000 messages/s (LIMITS.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from hashlib import sha256

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from aggregator.fold import FoldPlan, SessionFacts, plan, session_ends
from schema.channels import revoke_api_tokens
from schema.events import Delivery, Unfoldable, decode, parse_instant

_LEDGER = text("""
    INSERT INTO folded_messages (message_id, subscription_type)
    SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:types AS text[])) ORDER BY 1
    ON CONFLICT (message_id) DO NOTHING
    RETURNING message_id
""")

# One statement per batch: new chat messages (deduplicated on Twitch's chat message id)
# feed the per-chatter hours, whose newly inserted rows count as new unique chatters, and
# the channel-hour totals; each target row is touched once (GROUP BY) in key order.
_FOLD_CHAT = text("""
    WITH input AS (
        SELECT * FROM unnest(CAST(:message_ids AS text[]), CAST(:broadcaster_ids AS text[]),
                             CAST(:chatter_ids AS text[]), CAST(:sent_ats AS timestamptz[]))
            AS t(message_id, broadcaster_id, chatter_id, sent_at)
    ), new AS (
        INSERT INTO chat_messages (message_id, broadcaster_id, chatter_id, sent_at)
        SELECT message_id, broadcaster_id, chatter_id, sent_at FROM input ORDER BY message_id
        ON CONFLICT (message_id) DO NOTHING
        RETURNING broadcaster_id, chatter_id, sent_at
    ), per_chatter AS (
        SELECT broadcaster_id, date_trunc('hour', sent_at, 'UTC') AS hour, chatter_id,
               count(*) AS n
        FROM new GROUP BY 1, 2, 3
    ), chatters AS (
        INSERT INTO chatter_hours (broadcaster_id, hour, chatter_id, messages)
        SELECT broadcaster_id, hour, chatter_id, n FROM per_chatter ORDER BY 1, 2, 3
        ON CONFLICT (broadcaster_id, hour, chatter_id)
            DO UPDATE SET messages = chatter_hours.messages + excluded.messages
        RETURNING broadcaster_id, hour, (xmax = 0) AS is_new
    ), totals AS (
        SELECT p.broadcaster_id, p.hour, p.n, coalesce(c.new_chatters, 0) AS new_chatters
        FROM (SELECT broadcaster_id, hour, sum(n) AS n FROM per_chatter GROUP BY 1, 2) AS p
        LEFT JOIN (SELECT broadcaster_id, hour, count(*) FILTER (WHERE is_new) AS new_chatters
                   FROM chatters GROUP BY 1, 2) AS c USING (broadcaster_id, hour)
    )
    INSERT INTO channel_hours (broadcaster_id, hour, chat_messages, unique_chatters)
    SELECT broadcaster_id, hour, n, new_chatters FROM totals ORDER BY 1, 2
    ON CONFLICT (broadcaster_id, hour) DO UPDATE
        SET chat_messages = channel_hours.chat_messages + excluded.chat_messages,
            unique_chatters = channel_hours.unique_chatters + excluded.unique_chatters
""")

# Chat carries no reason to touch a known channel's row: DO NOTHING takes no row lock,
# where DO UPDATE ... WHERE false still locks (and dirties) every conflicting row, which
# serialised workers folding the same channels.
_ADD_CHANNELS = text("""
    INSERT INTO channels (broadcaster_id)
    SELECT id FROM unnest(CAST(:ids AS text[])) AS t(id)
    WHERE NOT EXISTS (SELECT 1 FROM channels c WHERE c.broadcaster_id = t.id)
    ORDER BY 1
    ON CONFLICT (broadcaster_id) DO NOTHING
""")

_ENSURE_CHANNELS = text("""
    INSERT INTO channels (broadcaster_id, login, display_name)
    SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:logins AS text[]), CAST(:names AS text[]))
    ORDER BY 1
    ON CONFLICT (broadcaster_id) DO UPDATE
        SET login = coalesce(excluded.login, channels.login),
            display_name = coalesce(excluded.display_name, channels.display_name)
        WHERE excluded.login IS NOT NULL
""")

# A stream id opens its session once. If reconciliation opened it first, the webhook's
# start time is the better one and replaces the estimate.
_OPEN_SESSION = text("""
    INSERT INTO stream_sessions (id, broadcaster_id, started_at, started_by)
    VALUES (:id, :broadcaster_id, :started_at, 'eventsub')
    ON CONFLICT (id) DO UPDATE
        SET started_at = excluded.started_at, started_by = 'eventsub', updated_at = now()
        WHERE stream_sessions.started_by = 'reconcile'
""")

_RECORD_OFFLINE = text("""
    INSERT INTO stream_offlines (message_id, broadcaster_id, at)
    VALUES (:message_id, :broadcaster_id, :at) ON CONFLICT DO NOTHING
""")

_DEAD_LETTER = text("""
    INSERT INTO dead_letters
        (message_id, subscription_type, reason, body_sha256, body_bytes, received_at)
    VALUES (:message_id, :subscription_type, :reason, :body_sha256, :body_bytes, :received_at)
""")


@dataclass(frozen=True, slots=True)
class FoldStats:
    deliveries: int
    duplicates: int
    chat_messages: int
    stream_events: int
    dead_letters: int


async def fold_deliveries(session: AsyncSession, deliveries: Sequence[Delivery]) -> FoldStats:
    """Fold ``deliveries`` into the caller's transaction (the caller commits)."""
    unique = {d.message_id: d for d in reversed(deliveries)}  # first delivery of an id wins
    fresh = await claim_ids(session, list(unique.values()))
    bodies = {d.message_id: d.body for d in fresh}
    folded = plan((decode(d) for d in fresh), bodies=bodies)
    received = {d.message_id: d.timestamp for d in fresh}
    await _fold_chat(session, folded)
    await _fold_streams(session, folded)
    await _disconnect_revoked(session, folded)
    await record_dead_letters(session, folded.dead, received)
    return FoldStats(
        deliveries=len(deliveries),
        duplicates=len(deliveries) - len(fresh),
        chat_messages=len(folded.chat),
        stream_events=len(folded.onlines) + len(folded.offlines),
        dead_letters=len(folded.dead),
    )


async def claim_ids(session: AsyncSession, deliveries: list[Delivery]) -> list[Delivery]:
    """Ledger the message ids; only those not folded before come back."""
    if not deliveries:
        return []
    result = await session.execute(
        _LEDGER,
        {
            "ids": [d.message_id for d in deliveries],
            "types": [d.subscription_type for d in deliveries],
        },
    )
    new = set(result.scalars())
    return [d for d in deliveries if d.message_id in new]


async def _fold_chat(session: AsyncSession, folded: FoldPlan) -> None:
    if not folded.chat:
        return
    broadcasters = sorted({row.broadcaster_id for row in folded.chat})
    await session.execute(_ADD_CHANNELS, {"ids": broadcasters})
    await session.execute(
        _FOLD_CHAT,
        {
            "message_ids": [r.chat_message_id for r in folded.chat],
            "broadcaster_ids": [r.broadcaster_id for r in folded.chat],
            "chatter_ids": [r.chatter_id for r in folded.chat],
            "sent_ats": [r.sent_at for r in folded.chat],
        },
    )


async def _fold_streams(session: AsyncSession, folded: FoldPlan) -> None:
    if not folded.onlines and not folded.offlines:
        return
    earliest: dict[str, datetime] = {}
    for online in folded.onlines:
        b = online.broadcaster_id
        earliest[b] = min(earliest.get(b, online.started_at), online.started_at)
    for offline in folded.offlines:
        b = offline.broadcaster_id
        earliest[b] = min(earliest.get(b, offline.event_time), offline.event_time)
    for online in sorted(folded.onlines, key=lambda o: o.broadcaster_id):
        await session.execute(
            _ENSURE_CHANNELS,
            {
                "ids": [online.broadcaster_id],
                "logins": [online.login],
                "names": [online.display_name],
            },
        )
    for broadcaster_id in sorted(earliest):
        # One writer per channel's sessions at a time: the end rule reads neighbours.
        await session.execute(
            text("SELECT pg_advisory_xact_lock(hashtext('sessions:' || :b))"),
            {"b": broadcaster_id},
        )
    for online in folded.onlines:
        await session.execute(
            _OPEN_SESSION,
            {
                "id": online.stream_id,
                "broadcaster_id": online.broadcaster_id,
                "started_at": online.started_at,
            },
        )
    for offline in folded.offlines:
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


async def recompute_session_ends(
    session: AsyncSession, broadcaster_id: str, since: datetime
) -> None:
    """Re-derive the ends of the sessions a fact at ``since`` can affect: the one that was
    running at ``since`` and every later one."""
    rows = (
        await session.execute(
            text("""
                SELECT id, started_at, started_by, reconcile_ended_at, ended_at, ended_by
                FROM stream_sessions
                WHERE broadcaster_id = :b AND started_at >= coalesce(
                    (SELECT max(started_at) FROM stream_sessions
                     WHERE broadcaster_id = :b AND started_at < :since), '-infinity')
            """),
            {"b": broadcaster_id, "since": since},
        )
    ).all()
    if not rows:
        return
    first_start = min(row.started_at for row in rows)
    offlines = (
        (
            await session.execute(
                text("SELECT at FROM stream_offlines WHERE broadcaster_id = :b AND at > :t"),
                {"b": broadcaster_id, "t": first_start},
            )
        )
        .scalars()
        .all()
    )
    facts = [SessionFacts(r.id, r.started_at, r.started_by, r.reconcile_ended_at) for r in rows]
    ends = session_ends(facts, list(offlines))
    for row in rows:
        end = ends[row.id]
        if (end.ended_at, end.ended_by) != (row.ended_at, row.ended_by):
            await session.execute(
                text("""UPDATE stream_sessions SET ended_at = :end, ended_by = :by,
                        updated_at = now() WHERE id = :id"""),
                {"end": end.ended_at, "by": end.ended_by, "id": row.id},
            )


async def _disconnect_revoked(session: AsyncSession, folded: FoldPlan) -> None:
    """A user who revoked our authorization: their channel stops, their Twitch tokens go
    and their API tokens stop working now, before the disconnect job runs."""
    for revoke in folded.revokes:
        await session.execute(
            text("""UPDATE channels SET connected = false, disconnected_at = :at
                    WHERE broadcaster_id = :id AND connected"""),
            {"id": revoke.user_id, "at": revoke.event_time},
        )
        await session.execute(
            text("DELETE FROM oauth_tokens WHERE user_id = :id"), {"id": revoke.user_id}
        )
        await revoke_api_tokens(session, revoke.user_id)


async def record_dead_letters(
    session: AsyncSession, dead: Sequence[Unfoldable], received: dict[str, str]
) -> None:
    for letter in dead:
        timestamp = received.get(letter.message_id)
        try:
            received_at = parse_instant(timestamp) if timestamp else None
        except ValueError:
            received_at = None
        await session.execute(
            _DEAD_LETTER,
            {
                "message_id": letter.message_id[:128],
                "subscription_type": letter.subscription_type[:100],
                "reason": letter.reason[:2000],
                "body_sha256": sha256(letter.body).hexdigest(),
                "body_bytes": len(letter.body),
                "received_at": received_at,
            },
        )
