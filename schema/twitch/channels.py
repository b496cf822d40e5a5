"""Connecting and disconnecting a channel, whoever asks: the OAuth callback, a revoked
authorization, a refresh that failed as invalid, or the streamer (``DELETE
/api/channels/{id}``). The caller owns the transaction; Twitch calls happen inside it,
and Twitch being down never blocks a disconnect (the next sync deletes the leftovers).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from schema.logs import get_logger
from schema.tables import Base
from schema.twitch.client import TwitchClient
from schema.twitch.errors import TwitchError
from schema.twitch.subscription_records import forget
from schema.twitch.tokens import TokenCipher, load_tokens, purge_tokens

log = get_logger("schema.twitch.channels")

# Tables of per-channel aggregates that ``purge`` deletes: every table keyed by
# broadcaster_id except the channel itself, our subscription records (handled apart) and
# its followers (theirs, not the streamer's).
_KEEP = {"channels", "eventsub_subscriptions", "follows"}
AGGREGATE_TABLES = tuple(
    sorted(
        t.name
        for t in Base.metadata.sorted_tables
        if "broadcaster_id" in t.c and t.name not in _KEEP
    )
)


@dataclass(frozen=True, slots=True)
class Disconnection:
    """What disconnecting a channel did (the API answers its own `Disconnected` shape)."""

    broadcaster_id: str
    was_connected: bool
    subscriptions_deleted: int
    # True when Twitch could not be reached: the subscriptions are left for the next sync.
    subscriptions_pending: bool
    purged: bool


async def connect_channel(
    session: AsyncSession, broadcaster_id: str, login: str, display_name: str
) -> None:
    """Connected (again). Connecting is the streamer acting, so chat that waited for a
    person (``chat_blocked``: the bot banned there, say) is tried again."""
    await session.execute(
        text("""
            INSERT INTO channels (broadcaster_id, login, display_name, connected, connected_at)
            VALUES (:id, :login, :name, true, now())
            ON CONFLICT (broadcaster_id) DO UPDATE
                SET login = excluded.login, display_name = excluded.display_name,
                    connected = true, connected_at = now(), disconnected_at = NULL,
                    chat_blocked = false
        """),
        {"id": broadcaster_id, "login": login, "name": display_name},
    )


async def mark_disconnected(
    session: AsyncSession, broadcaster_id: str, *, at: datetime | None = None
) -> bool:
    """True if the channel was connected until now; ``at`` is when it stopped (a
    revocation's event time), else now."""
    updated = await session.execute(
        text("""UPDATE channels SET connected = false, disconnected_at = :at
                WHERE broadcaster_id = :id AND connected RETURNING 1"""),
        {"id": broadcaster_id, "at": at or datetime.now(UTC)},
    )
    return updated.first() is not None


async def revoke_api_tokens(session: AsyncSession, user_id: str) -> None:
    """A user's API tokens act for them only while their authorization lasts: a
    disconnected channel or a revoked authorization ends them, like their sessions."""
    await session.execute(
        text("UPDATE api_tokens SET revoked_at = now() WHERE user_id = :u AND revoked_at IS NULL"),
        {"u": user_id},
    )


async def end_user_sessions(session: AsyncSession, user_id: str) -> None:
    """Sign a user out everywhere. The same statement as ``receiver.identity.
    end_sessions_of``, which the worker may not import (STYLE.md: three rooms)."""
    await session.execute(
        text("UPDATE login_sessions SET ended_at = now() WHERE user_id = :u AND ended_at IS NULL"),
        {"u": user_id},
    )


async def disconnect_channel(
    session: AsyncSession,
    twitch: TwitchClient,
    broadcaster_id: str,
    *,
    purge: bool,
    revoke_at_twitch: bool = True,
) -> Disconnection:
    """The channel stops: marked disconnected, its subscriptions deleted at Twitch, its
    streamer tokens revoked and purged, its API tokens revoked; its aggregates deleted too
    only when ``purge``. Tokens the same account holds as the bot stay: the bot role ends
    only with the bot's authorization."""
    was_connected = await mark_disconnected(session, broadcaster_id)
    if revoke_at_twitch:
        await _revoke_tokens(session, twitch, broadcaster_id)
    await purge_tokens(session, broadcaster_id, "streamer")
    await revoke_api_tokens(session, broadcaster_id)
    followed = await session.scalar(
        text("SELECT 1 FROM follows WHERE broadcaster_id = :id LIMIT 1"), {"id": broadcaster_id}
    )
    # Still followed: the channel stays tracked, so its online/offline subscriptions stay.
    keep = frozenset({"stream.online", "stream.offline"}) if followed else frozenset()
    deleted, pending = await delete_channel_subscriptions(
        session, twitch, broadcaster_id, keep_types=keep
    )
    if purge:
        for table in AGGREGATE_TABLES:
            await session.execute(
                text(f"DELETE FROM {table} WHERE broadcaster_id = :id"),  # noqa: S608 - names from metadata
                {"id": broadcaster_id},
            )
    log.info(
        "channel.disconnected",
        broadcaster_id=broadcaster_id,
        was_connected=was_connected,
        subscriptions_deleted=deleted,
        subscriptions_pending=pending,
        purged=purge,
    )
    return Disconnection(broadcaster_id, was_connected, deleted, pending, purge)


async def delete_channel_subscriptions(
    session: AsyncSession,
    twitch: TwitchClient,
    broadcaster_id: str,
    *,
    keep_types: frozenset[str] = frozenset(),
) -> tuple[int, bool]:
    """Delete every subscription naming the channel (but those of ``keep_types``), at
    Twitch and in our records. Returns (deleted, pending): pending when Twitch could not
    be reached."""
    try:
        listed = await twitch.list_subscriptions(user_id=broadcaster_id)
        ours = [
            s
            for s in listed
            if s.condition.get("broadcaster_user_id") == broadcaster_id and s.type not in keep_types
        ]
        deleted = 0
        for sub in ours:
            deleted += int(await twitch.delete_subscription(sub.id))
    except TwitchError as exc:
        log.warning(
            "channel.subscriptions_not_deleted", broadcaster_id=broadcaster_id, error=exc.code
        )
        return 0, True
    await forget(session, [s.id for s in ours])
    await session.execute(
        text("""DELETE FROM eventsub_subscriptions
                WHERE broadcaster_id = :id AND NOT (type = ANY(:keep))"""),
        {"id": broadcaster_id, "keep": sorted(keep_types)},
    )
    return deleted, False


async def _revoke_tokens(session: AsyncSession, twitch: TwitchClient, user_id: str) -> None:
    """Tell Twitch to forget the token (PROTOCOL.md 5.8); best effort, it may be dead."""
    if not twitch.settings.fernet_keys:
        return
    try:
        cipher = TokenCipher(twitch.settings.fernet_keys)
        stored = await load_tokens(session, cipher, user_id, "streamer")
        if stored is not None:
            await twitch.revoke(stored.access_token)
    except TwitchError as exc:
        log.info("channel.token_not_revoked", user_id=user_id, error=exc.code)


# -- the queue contract for disconnects (the receiver and the fold enqueue, the worker runs)

DISCONNECT_USER_JOB = "disconnect_user"
CHECK_USER_TOKENS_JOB = "check_user_tokens"
# Revocation reasons that mean a user took our authorization away (PROTOCOL.md 2).
AUTH_LOST_REASONS = frozenset({"authorization_revoked", "user_removed"})


async def enqueue_disconnect(redis: Any, queue_name: str, user_id: str, reason: str) -> None:
    """Ask the worker to stop everything of ``user_id`` at Twitch; idempotent per user
    and reason while queued (arq's job id)."""
    await redis.enqueue_job(
        DISCONNECT_USER_JOB,
        user_id,
        reason,
        _job_id=f"disconnect:{user_id}:{reason}",
        _queue_name=queue_name,
    )


async def enqueue_token_check(redis: Any, queue_name: str, user_ids: list[str]) -> None:
    """A chat subscription was revoked for lost authorization, by the broadcaster or the
    bot: checking both users' tokens tells which one to disconnect."""
    await redis.enqueue_job(
        CHECK_USER_TOKENS_JOB,
        sorted(set(user_ids)),
        _job_id=f"check-tokens:{','.join(sorted(set(user_ids)))}",
        _queue_name=queue_name,
    )
