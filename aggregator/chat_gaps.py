"""Chat gaps from subscription state: while a connected channel has no enabled
``channel.chat.message`` subscription (revoked, failed, pending, missing), its chat may be
short, and the hours and sessions it overlaps read ``chat_complete: false``.

Helix cannot give lost chat back, so a gap is only ever marked, never repaired. The
state comes from ``eventsub_subscriptions``, which the receiver updates on challenges and
revocations and the subscription sync updates from Twitch's list. A gap starts at the
revocation when we know it, else when we first noticed, and ends when a run sees the
subscription enabled again, at the time its row last changed to enabled (the challenge
answer), which a run reads before the subscription sync touches the rows.
The receiver's own refusals are marked by the receiver (``receiver/refusals.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from schema.events import CHAT_MESSAGE

REASON_PREFIX = "chat_subscription_"

_CHAT_STATE = """
    WITH state AS (
        SELECT c.broadcaster_id,
               coalesce(bool_or(s.status = 'enabled'), false) AS enabled,
               max(s.revoked_at) AS revoked_at,
               max(s.updated_at) FILTER (WHERE s.status = 'enabled') AS enabled_at,
               (array_agg(s.status ORDER BY s.updated_at DESC)
                    FILTER (WHERE s.status <> 'enabled'))[1] AS status
        FROM channels c
        LEFT JOIN eventsub_subscriptions s
               ON s.broadcaster_id = c.broadcaster_id AND s.type = :type
        WHERE c.connected
        GROUP BY c.broadcaster_id
    )
"""

# Both statements share the constant state CTE; nothing user-supplied is concatenated.
_CLOSE = text(
    _CHAT_STATE  # noqa: S608
    + """
    UPDATE chat_gaps AS g SET ended_at = greatest(g.started_at, least(state.enabled_at, :now))
    FROM state
    WHERE g.broadcaster_id = state.broadcaster_id AND state.enabled
      AND g.ended_at IS NULL AND starts_with(g.reason, :prefix)
    RETURNING g.id
"""
)

# A revocation older than the channel's last gap was already covered by it.
_OPEN = text(
    _CHAT_STATE  # noqa: S608
    + """
    INSERT INTO chat_gaps (broadcaster_id, started_at, ended_at, reason)
    SELECT state.broadcaster_id,
           CASE WHEN state.revoked_at > coalesce(last.ended_at, '-infinity')
                THEN least(state.revoked_at, :now) ELSE :now END,
           NULL,
           left(:prefix || coalesce(state.status, 'missing'), 64)
    FROM state
    LEFT JOIN LATERAL (
        SELECT max(g.ended_at) AS ended_at FROM chat_gaps g
        WHERE g.broadcaster_id = state.broadcaster_id AND starts_with(g.reason, :prefix)
    ) AS last ON true
    WHERE NOT state.enabled
      AND NOT EXISTS (
          SELECT 1 FROM chat_gaps g
          WHERE g.broadcaster_id = state.broadcaster_id AND g.ended_at IS NULL
            AND starts_with(g.reason, :prefix))
    ORDER BY state.broadcaster_id
    RETURNING id
"""
)


@dataclass(frozen=True, slots=True)
class GapCounts:
    chat_gaps_opened: int
    chat_gaps_closed: int


async def mark_chat_gaps(session: AsyncSession, now: datetime) -> GapCounts:
    params = {"type": CHAT_MESSAGE, "now": now, "prefix": REASON_PREFIX}
    closed = len((await session.execute(_CLOSE, params)).all())
    opened = len((await session.execute(_OPEN, params)).all())
    return GapCounts(chat_gaps_opened=opened, chat_gaps_closed=closed)
