"""Ending a user's authorization at Twitch after it ended here (PROTOCOL.md 5.7, 5.9).

- ``enqueue_disconnects``: the follow-up of the revocations a fold plan carried. The
  fold already disconnected the channel and deleted the tokens in its own transaction;
  the Twitch side is a job of its own, sent after that commit.
- ``disconnect_user`` (job): delete the user's subscriptions at Twitch, purge tokens,
  end their sessions and API tokens, end the bot role. Retried while Twitch is down.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from arq import Retry
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from aggregator.context import WorkerContext, job_try, state
from schema.events import AuthorizationRevoke
from schema.logs import get_logger
from schema.twitch import TwitchClient, TwitchError
from schema.twitch.channels import (
    disconnect_channel,
    end_user_sessions,
    enqueue_disconnect,
    mark_disconnected,
    revoke_api_tokens,
)
from schema.twitch.subscription_records import forget
from schema.twitch.subscriptions import CHAT
from schema.twitch.tokens import purge_tokens

log = get_logger("aggregator.disconnects")

DISCONNECT_MAX_TRIES = 20


async def enqueue_disconnects(work: WorkerContext, revoked: Sequence[AuthorizationRevoke]) -> None:
    """After the fold committed a ``user.authorization.revoke`` (channel disconnected,
    tokens deleted), the Twitch side follows as a job of its own."""
    for revoke in revoked:
        await enqueue_disconnect(work.redis, work.settings.queue_name, revoke.user_id, "revoked")


async def disconnect_user(ctx: dict[str, Any], user_id: str, reason: str) -> str:
    work = state(ctx)
    async with work.sessions.begin() as session:
        outcome = await _disconnect(session, work.twitch, user_id)
    log.info("user.disconnected", user_id=user_id, reason=reason, outcome=outcome)
    if outcome == "pending":
        raise Retry(defer=min(300, 10 * job_try(ctx)))
    return outcome


async def _disconnect(session: AsyncSession, twitch: TwitchClient, user_id: str) -> str:
    """Whatever the user was to us (streamer, bot, viewer), stop it."""
    row = (
        await session.execute(
            text("""SELECT u.is_bot,
                           EXISTS (SELECT 1 FROM channels c WHERE c.broadcaster_id = u.id)
                               AS has_channel,
                           EXISTS (SELECT 1 FROM eventsub_subscriptions s
                                   WHERE s.broadcaster_id = u.id
                                      OR s.condition ->> 'user_id' = u.id) AS has_subs
                    FROM twitch_users u WHERE u.id = :id"""),
            {"id": user_id},
        )
    ).first()
    await end_user_sessions(session, user_id)
    await revoke_api_tokens(session, user_id)
    if row is None:
        return "unknown"
    pending = False
    if row.has_channel and row.has_subs:
        result = await disconnect_channel(session, twitch, user_id, purge=False)
        pending = result.subscriptions_pending
    elif row.has_channel:
        # Nothing at Twitch to delete (none recorded): no need to call it.
        await mark_disconnected(session, user_id)
    await purge_tokens(session, user_id)
    if row.is_bot:
        # Chat stops for every channel read through this bot until it signs in again.
        if await _delete_bot_chat(session, twitch, user_id):
            await _end_bot_role(session, user_id)
        else:
            pending = True
        await purge_tokens(session, user_id)
    return "pending" if pending else "done"


async def _end_bot_role(session: AsyncSession, user_id: str) -> None:
    """The flag stays until the bot's chat subscriptions are gone at Twitch, so a retried
    disconnect still knows to delete them; the role itself ended with the tokens."""
    await session.execute(
        text("UPDATE twitch_users SET is_bot = false, updated_at = now() WHERE id = :id"),
        {"id": user_id},
    )


async def _delete_bot_chat(session: AsyncSession, twitch: TwitchClient, bot_id: str) -> bool:
    try:
        listed = await twitch.list_subscriptions(user_id=bot_id)
        chat = [s for s in listed if s.type == CHAT and s.condition.get("user_id") == bot_id]
        for sub in chat:
            await twitch.delete_subscription(sub.id)
    except TwitchError:
        return False
    await forget(session, [s.id for s in chat])
    return True
