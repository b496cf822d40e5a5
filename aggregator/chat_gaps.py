"""Chat gaps from subscription state: while a connected channel has no enabled
``channel.chat.message`` subscription (revoked, failed, pending, missing), its chat may be
short, and the hours and sessions it overlaps read ``chat_complete: false``.

Helix cannot give lost chat back, so a gap is only ever marked, never repaired. The
state comes from ``eventsub_subscriptions``, which the receiver updates on challenges and
revocations and the subscription sync updates from Twitch's list. A gap starts at the
revocation when we know it, else when a run first noticed; it ends at the time the
subscription's row last changed to enabled (the challenge answer), which a run reads
before the subscription sync touches the rows. ``repairs.plan_chat_gaps`` decides; this
module reads and writes with plain set-based statements (two reads, two writes), which
stay fast with tens of thousands of channels whatever the planner's statistics say.
The receiver's own refusals are marked by the receiver (``receiver/refusals.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from aggregator.repairs import (
    CHAT_GAP_PREFIX,
    ChatSubscriptionState,
    GapHistory,
    plan_chat_gaps,
)
from schema.events import CHAT_MESSAGE

# A blocked channel's revoked chat subscription is deleted by the next sync and not
# re-created; the revocation noted on the channel still names the gap and its start.
_STATES = text("""
    SELECT c.broadcaster_id,
           coalesce(bool_or(s.status = 'enabled'), false) AS enabled,
           max(s.updated_at) FILTER (WHERE s.status = 'enabled') AS enabled_at,
           coalesce(max(s.revoked_at),
                    CASE WHEN c.chat_blocked THEN c.chat_revoked_at END) AS revoked_at,
           coalesce((array_agg(s.status ORDER BY s.updated_at DESC)
                         FILTER (WHERE s.status <> 'enabled'))[1],
                    CASE WHEN c.chat_blocked THEN c.chat_revocation END) AS status
    FROM channels c
    LEFT JOIN eventsub_subscriptions s ON s.broadcaster_id = c.broadcaster_id AND s.type = :type
    WHERE c.connected
    GROUP BY c.broadcaster_id
""")

_HISTORY = text("""
    SELECT broadcaster_id,
           array_agg(id ORDER BY id) FILTER (WHERE ended_at IS NULL) AS open_ids,
           array_agg(started_at ORDER BY id) FILTER (WHERE ended_at IS NULL) AS open_starts,
           max(ended_at) AS last_ended_at
    FROM chat_gaps
    WHERE broadcaster_id IS NOT NULL AND starts_with(reason, :prefix)
    GROUP BY broadcaster_id
""")

_OPEN = text("""
    INSERT INTO chat_gaps (broadcaster_id, started_at, reason)
    SELECT * FROM unnest(CAST(:b AS text[]), CAST(:s AS timestamptz[]), CAST(:r AS text[]))
""")

_CLOSE = text("""
    UPDATE chat_gaps AS g SET ended_at = x.e
    FROM unnest(CAST(:ids AS bigint[]), CAST(:e AS timestamptz[])) AS x(id, e)
    WHERE g.id = x.id AND g.ended_at IS NULL
""")


@dataclass(frozen=True, slots=True)
class GapCounts:
    chat_gaps_opened: int
    chat_gaps_closed: int


async def mark_chat_gaps(session: AsyncSession, now: datetime) -> GapCounts:
    states = [
        ChatSubscriptionState(r.broadcaster_id, r.enabled, r.enabled_at, r.revoked_at, r.status)
        for r in await session.execute(_STATES, {"type": CHAT_MESSAGE})
    ]
    history = {
        r.broadcaster_id: GapHistory(
            tuple(zip(r.open_ids or (), r.open_starts or (), strict=True)), r.last_ended_at
        )
        for r in await session.execute(_HISTORY, {"prefix": CHAT_GAP_PREFIX})
    }
    opens, closes = plan_chat_gaps(states, history, now)
    if opens:
        await session.execute(
            _OPEN,
            {
                "b": [o.broadcaster_id for o in opens],
                "s": [o.started_at for o in opens],
                "r": [o.reason for o in opens],
            },
        )
    if closes:
        await session.execute(
            _CLOSE, {"ids": [c.gap_id for c in closes], "e": [c.ended_at for c in closes]}
        )
    return GapCounts(chat_gaps_opened=len(opens), chat_gaps_closed=len(closes))
