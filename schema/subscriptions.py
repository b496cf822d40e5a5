"""Our record of EventSub subscriptions, as Twitch reports them to us."""

from __future__ import annotations

import msgspec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from schema.events import WireSubscription

_UPSERT = text("""
    INSERT INTO eventsub_subscriptions
        (id, type, version, condition, broadcaster_id, status, revoked_at)
    VALUES (:id, :type, :version, CAST(:condition AS jsonb), :broadcaster_id, :status,
            CASE WHEN :revoked THEN now() END)
    ON CONFLICT (id) DO UPDATE
        SET status = excluded.status, updated_at = now(),
            revoked_at = coalesce(excluded.revoked_at, eventsub_subscriptions.revoked_at)
""")


async def upsert_subscription(
    session: AsyncSession, subscription: WireSubscription, *, status: str, revoked: bool = False
) -> None:
    await session.execute(
        _UPSERT,
        {
            "id": subscription.id[:64],
            "type": subscription.type[:100],
            "version": subscription.version[:16],
            "condition": msgspec.json.encode(subscription.condition).decode(),
            "broadcaster_id": subscription.condition.get("broadcaster_user_id"),
            "status": status[:64],
            "revoked": revoked,
        },
    )


async def record_verified(session: AsyncSession, subscription: WireSubscription) -> None:
    """We answered its challenge: Twitch now enables it."""
    await upsert_subscription(session, subscription, status="enabled")


async def record_revocation(session: AsyncSession, subscription: WireSubscription) -> None:
    """Twitch revoked it; ``subscription.status`` holds the reason."""
    await upsert_subscription(session, subscription, status=subscription.status, revoked=True)
