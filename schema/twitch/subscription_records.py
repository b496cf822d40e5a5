"""Our records of EventSub subscriptions: what Twitch told us (challenge answered,
revoked, listed) and which challenges we expect because we are creating them.
``schema/twitch/subscriptions.py`` decides what we want; this module only writes it down.
"""

from __future__ import annotations

import hashlib

import msgspec
from psycopg.errors import LockNotAvailable
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from schema.events import CHAT_MESSAGE, Subscription

# Twitch sends the challenge right after accepting the create call, possibly before our
# create call has returned the id (PROTOCOL.md 3.2): the expectation must be recorded
# first, and outlive a slow challenge (pyTwitchAPI#111 saw them 30 s late).
EXPECTATION_TTL_SECONDS = 600

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
    session: AsyncSession, subscription: Subscription, *, status: str, revoked: bool = False
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


async def record_verified(session: AsyncSession, subscription: Subscription) -> None:
    """We answered its challenge: Twitch now enables it."""
    await upsert_subscription(session, subscription, status="enabled")


# Chat revocations that re-creating cannot undo: the bot was banned from the channel's chat,
# or lost the moderator status the subscription relied on (PROTOCOL.md 2). Twitch refuses
# every new subscription until a person acts, so the sync stops asking. Any other reason,
# including ones Twitch adds later, is re-created like ``notification_failures_exceeded``.
CHAT_BLOCKED_REASONS = frozenset({"chat_user_banned", "moderator_removed"})

_NOTE_CHAT_REVOCATION = text("""
    UPDATE channels SET chat_revocation = :reason, chat_revoked_at = now(),
                        chat_blocked = :blocked
    WHERE broadcaster_id = :b
""")

_REVOKE = text("""
    UPDATE eventsub_subscriptions
       SET status = :status, revoked_at = now(), updated_at = now()
     WHERE id = :id
    RETURNING 1
""")


async def record_revocation(session: AsyncSession, subscription: Subscription) -> bool:
    """Twitch revoked it; ``subscription.status`` holds the reason. A chat revocation is
    also noted on its channel, where it outlives the subscription's own row. Only a
    subscription we know of is recorded (False otherwise): a revocation of someone else's
    is no record of ours, and storing it would make a row for every id Twitch's tools
    invent."""
    revoked = await session.execute(
        _REVOKE, {"id": subscription.id[:64], "status": subscription.status[:64]}
    )
    if revoked.first() is None:
        return False
    broadcaster_id = subscription.condition.get("broadcaster_user_id")
    if subscription.type == CHAT_MESSAGE and broadcaster_id is not None:
        await session.execute(
            _NOTE_CHAT_REVOCATION,
            {
                "b": broadcaster_id,
                "reason": subscription.status[:64],
                "blocked": subscription.status in CHAT_BLOCKED_REASONS,
            },
        )
    return True


def _expectation_key(namespace: str, sub_type: str, condition: dict[str, str]) -> str:
    """Per deployment (``namespace`` is its queue name): another deployment's pending
    create on the same Redis must not make this one answer a challenge."""
    canonical = msgspec.json.encode([sub_type, sorted(condition.items())])
    return f"{namespace}:eventsub:expected:{hashlib.sha256(canonical).hexdigest()[:32]}"


async def expect(
    redis: Redis | None, namespace: str, sub_type: str, condition: dict[str, str]
) -> None:
    """Record, before the create call, that a challenge for this may come."""
    if redis is not None:
        key = _expectation_key(namespace, sub_type, condition)
        await redis.set(key, b"1", ex=EXPECTATION_TTL_SECONDS)


async def is_expected(
    session: AsyncSession, redis: Redis | None, namespace: str, subscription: Subscription
) -> bool:
    """Did we ask for this subscription? A pending create of the same type and condition,
    or an id we recorded and that was not revoked."""
    if redis is not None:
        key = _expectation_key(namespace, subscription.type, subscription.condition)
        if await redis.exists(key):
            return True
    known = await session.execute(
        text("SELECT 1 FROM eventsub_subscriptions WHERE id = :id AND revoked_at IS NULL"),
        {"id": subscription.id[:64]},
    )
    return known.first() is not None


_RECORD_CREATED = text("""
    INSERT INTO eventsub_subscriptions (id, type, version, condition, broadcaster_id, status)
    VALUES (:id, :type, :version, CAST(:condition AS jsonb), :broadcaster_id, :status)
    ON CONFLICT (id) DO UPDATE
        -- the challenge may already have marked it enabled: never step back to pending
        SET status = CASE WHEN eventsub_subscriptions.status = 'enabled'
                               AND excluded.status = 'webhook_callback_verification_pending'
                          THEN 'enabled' ELSE excluded.status END,
            updated_at = now()
""")


async def record_listed(session: AsyncSession, subscription: Subscription) -> None:
    await session.execute(
        _RECORD_CREATED,
        {
            "id": subscription.id,
            "type": subscription.type,
            "version": subscription.version,
            "condition": msgspec.json.encode(subscription.condition).decode(),
            "broadcaster_id": subscription.condition.get("broadcaster_user_id"),
            "status": subscription.status,
        },
    )


_RECORD_MANY = text("""
    INSERT INTO eventsub_subscriptions AS s
        (id, type, version, condition, broadcaster_id, status)
    SELECT id, type, version, CAST(condition AS jsonb), broadcaster_id, status
    FROM unnest(CAST(:ids AS text[]), CAST(:types AS text[]), CAST(:versions AS text[]),
                CAST(:conditions AS text[]), CAST(:broadcasters AS text[]),
                CAST(:statuses AS text[]))
         AS t(id, type, version, condition, broadcaster_id, status)
    ON CONFLICT (id) DO UPDATE
        SET status = excluded.status, updated_at = now()
        WHERE s.status IS DISTINCT FROM excluded.status
""")


async def record_many(session: AsyncSession, subscriptions: list[Subscription]) -> None:
    """Record Twitch's view of many subscriptions in one statement: a sync of 10,000
    channels keeps 20,000 of them, too many for a round trip each."""
    if not subscriptions:
        return
    await session.execute(
        _RECORD_MANY,
        {
            "ids": [s.id for s in subscriptions],
            "types": [s.type for s in subscriptions],
            "versions": [s.version for s in subscriptions],
            "conditions": [msgspec.json.encode(s.condition).decode() for s in subscriptions],
            "broadcasters": [s.condition.get("broadcaster_user_id") for s in subscriptions],
            "statuses": [s.status for s in subscriptions],
        },
    )


async def forget(session: AsyncSession, subscription_ids: list[str]) -> None:
    if subscription_ids:
        await session.execute(
            text("DELETE FROM eventsub_subscriptions WHERE id = ANY(:ids)"),
            {"ids": subscription_ids},
        )


# Twitch gives up on a challenge after a few seconds. A sync creating many subscriptions
# holds its transaction (and the rows it recorded) until the end, so the challenge must
# not wait for that row lock: answer anyway, the sync's own record and the next sync's
# listing carry the status.
CHALLENGE_LOCK_TIMEOUT = "2s"


async def record_verified_unless_busy(session: AsyncSession, subscription: Subscription) -> bool:
    """``record_verified``, giving up after a short wait for the row; False if it did."""
    await session.execute(text(f"SET LOCAL lock_timeout = '{CHALLENGE_LOCK_TIMEOUT}'"))
    try:
        async with session.begin_nested():
            await record_verified(session, subscription)
    except DBAPIError as exc:
        if isinstance(exc.orig, LockNotAvailable):
            return False
        raise
    return True
