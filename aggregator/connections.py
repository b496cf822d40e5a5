"""Keeping users' Twitch authorizations alive, and ending them (PROTOCOL.md 5.5, 5.7, 5.9).

- ``upkeep_tokens`` (cron): refresh user tokens before they expire and validate each
  at least hourly, as Twitch requires of apps that keep users signed in. A refresh that
  fails as invalid disconnects the user. Each run writes a ``job_runs`` row.
- ``disconnect_user`` (job): after a revoked authorization, delete the user's
  subscriptions at Twitch, purge tokens, end their sessions and API tokens, end the bot
  role. Retried while Twitch is down.
- ``check_user_tokens`` (job): a chat subscription lost its authorization; find whose.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from arq import Retry
from arq.cron import CronJob, cron
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from aggregator.job_runs import finish_run, start_run
from schema.channels import (
    CHECK_USER_TOKENS_JOB,
    DISCONNECT_USER_JOB,
    disconnect_channel,
    end_user_sessions,
    enqueue_disconnect,
    mark_disconnected,
    revoke_api_tokens,
)
from schema.events import AUTHORIZATION_REVOKE, Delivery
from schema.logs import get_logger
from schema.settings import Settings
from schema.subscriptions import CHAT, forget
from schema.tokens import (
    TokenCipher,
    TokenRole,
    load_tokens,
    mark_validated,
    purge_tokens,
    store_tokens,
    token_roles,
)
from schema.twitch import (
    InvalidAccessToken,
    InvalidRefreshToken,
    TwitchClient,
    TwitchError,
    TwitchUnavailable,
)

log = get_logger("aggregator.connections")

UPKEEP_JOB = "token_upkeep"
# Twitch user tokens live about four hours; refreshing in the last 20 minutes leaves two
# more runs (every 5 minutes) to retry a transient failure before the token dies.
REFRESH_AHEAD = timedelta(minutes=20)
VALIDATE_EVERY = timedelta(hours=1)
DISCONNECT_MAX_TRIES = 20


class _RevokedUser(msgspec.Struct, frozen=True):
    user_id: str


class _RevokeBody(msgspec.Struct, frozen=True):
    event: _RevokedUser


_revoke_decoder = msgspec.json.Decoder(_RevokeBody)


async def enqueue_revocations(ctx: dict[str, Any], deliveries: Sequence[Delivery]) -> None:
    """After the fold committed a ``user.authorization.revoke`` (channel disconnected,
    tokens deleted), the Twitch side follows as a job of its own."""
    settings: Settings = ctx["settings"]
    for delivery in deliveries:
        if delivery.subscription_type != AUTHORIZATION_REVOKE:
            continue
        try:
            user_id = _revoke_decoder.decode(delivery.body).event.user_id
        except msgspec.DecodeError:
            continue  # dead-lettered by the fold
        await enqueue_disconnect(ctx["redis"], settings.queue_name, user_id, "revoked")


async def disconnect_user(ctx: dict[str, Any], user_id: str, reason: str) -> str:
    settings: Settings = ctx["settings"]
    sessions: async_sessionmaker[AsyncSession] = ctx["sessions"]
    async with TwitchClient(settings, ctx["redis"]) as twitch, sessions.begin() as session:
        outcome = await _disconnect(session, twitch, user_id)
    log.info("user.disconnected", user_id=user_id, reason=reason, outcome=outcome)
    if outcome == "pending":
        raise Retry(defer=min(300, 10 * int(ctx.get("job_try", 1))))
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


async def check_user_tokens(ctx: dict[str, Any], user_ids: list[str]) -> dict[str, str]:
    settings: Settings = ctx["settings"]
    outcomes: dict[str, str] = {}
    async with TwitchClient(settings, ctx["redis"]) as twitch:
        for user_id in user_ids:
            async with ctx["sessions"]() as session:
                roles = await token_roles(session, user_id)
            outcomes[user_id] = "no_tokens"
            for role in roles:
                outcomes[user_id] = await _check_one(
                    ctx, twitch, user_id, role, force_validate=True
                )
                if outcomes[user_id] == "disconnected":
                    break
    return outcomes


async def _check_one(
    ctx: dict[str, Any],
    twitch: TwitchClient,
    user_id: str,
    role: TokenRole,
    *,
    force_validate: bool = False,
) -> str:
    """Refresh if close to expiry, validate if due; a dead authorization disconnects."""
    settings: Settings = ctx["settings"]
    sessions: async_sessionmaker[AsyncSession] = ctx["sessions"]
    cipher = TokenCipher.from_settings(settings)
    now = datetime.now(UTC)
    async with sessions.begin() as session:
        stored = await load_tokens(session, cipher, user_id, role)
        if stored is None:
            return "no_tokens"
        try:
            if stored.expires_at - now <= REFRESH_AHEAD:
                tokens = await twitch.refresh(stored.refresh_token)
                await store_tokens(session, cipher, user_id, tokens, role=role, now=now)
                return "refreshed"
            due = stored.validated_at is None or now - stored.validated_at >= VALIDATE_EVERY
            if not (due or force_validate):
                return "fresh"
            try:
                await twitch.validate(stored.access_token)
            except InvalidAccessToken:
                tokens = await twitch.refresh(stored.refresh_token)
                await store_tokens(
                    session, cipher, user_id, tokens, role=role, now=now, validated=True
                )
                return "refreshed"
            await mark_validated(session, user_id, role, now)
            return "validated"
        except InvalidRefreshToken:
            log.info("token.refresh_invalid", user_id=user_id)  # falls through: disconnect
        except TwitchUnavailable:
            return "transient"
    # Product rule: a refresh that fails as invalid disconnects (PROTOCOL.md 5.5).
    async with sessions.begin() as session:
        await purge_tokens(session, user_id)
    await enqueue_disconnect(ctx["redis"], settings.queue_name, user_id, "invalid_refresh_token")
    return "disconnected"


async def upkeep_tokens(ctx: dict[str, Any]) -> dict[str, int]:
    settings: Settings = ctx["settings"]
    sessions: async_sessionmaker[AsyncSession] = ctx["sessions"]
    async with sessions.begin() as session:
        run_id = await start_run(session, UPKEEP_JOB, datetime.now(UTC))
    counts: dict[str, int] = {}
    error: str | None = None
    try:
        async with sessions() as session:
            held = (
                await session.execute(
                    text("SELECT user_id, role FROM oauth_tokens ORDER BY user_id, role DESC")
                )
            ).all()
        async with TwitchClient(settings, ctx["redis"]) as twitch:
            for user_id, role in held:
                outcome = await _check_one(ctx, twitch, user_id, role)
                counts[outcome] = counts.get(outcome, 0) + 1
    except Exception as exc:
        error = f"{type(exc).__name__}: {getattr(exc, 'detail', '') or str(exc)}"[:500]
    counts["tokens"] = sum(counts.values())
    async with sessions.begin() as session:
        await finish_run(
            session,
            run_id,
            outcome="failed" if error else "success",
            finished_at=datetime.now(UTC),
            counts=counts,
            error=error,
        )
    log.info("tokens.upkeep", **counts)
    return counts


def upkeep_cron() -> CronJob:
    # Every 5 minutes, one run per tick across all workers (arq's unique cron id).
    return cron(
        upkeep_tokens,
        name=f"cron:{UPKEEP_JOB}",
        minute=set(range(0, 60, 5)),
        second={30},
        unique=True,
        run_at_startup=False,
        timeout=240,
        max_tries=1,
        keep_result=0,
    )


def connection_functions() -> list[Any]:
    from arq.worker import func

    return [
        func(
            disconnect_user, name=DISCONNECT_USER_JOB, max_tries=DISCONNECT_MAX_TRIES, keep_result=0
        ),
        func(check_user_tokens, name=CHECK_USER_TOKENS_JOB, max_tries=5, keep_result=0),
    ]
