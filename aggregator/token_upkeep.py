"""Keeping users' Twitch authorizations alive (PROTOCOL.md 5.5, 5.9).

- ``upkeep_tokens`` (cron): refresh user tokens before they expire and validate each
  at least hourly, as Twitch requires of apps that keep users signed in. A refresh that
  fails as invalid disconnects the user. Each run writes a ``job_runs`` row.
- ``check_user_tokens`` (job): a chat subscription lost its authorization; find whose.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from arq.cron import CronJob, cron
from sqlalchemy import text

from aggregator.context import WorkerContext, state
from aggregator.job_runs import finish_run, start_run
from aggregator.metrics import count_run
from schema.logs import get_logger
from schema.twitch import InvalidAccessToken, InvalidRefreshToken, TwitchUnavailable
from schema.twitch.channels import enqueue_disconnect
from schema.twitch.tokens import (
    TokenCipher,
    TokenRole,
    load_tokens,
    mark_validated,
    purge_tokens,
    store_tokens,
    token_roles,
)

log = get_logger("aggregator.token_upkeep")

UPKEEP_JOB = "token_upkeep"
# Twitch user tokens live about four hours; refreshing in the last 20 minutes leaves two
# more runs (every 5 minutes) to retry a transient failure before the token dies.
REFRESH_AHEAD = timedelta(minutes=20)
VALIDATE_EVERY = timedelta(hours=1)


async def check_user_tokens(ctx: dict[str, Any], user_ids: list[str]) -> dict[str, str]:
    work = state(ctx)
    outcomes: dict[str, str] = {}
    for user_id in user_ids:
        async with work.sessions() as session:
            roles = await token_roles(session, user_id)
        outcomes[user_id] = "no_tokens"
        for role in roles:
            outcomes[user_id] = await _check_one(work, user_id, role, force_validate=True)
            if outcomes[user_id] == "disconnected":
                break
    return outcomes


async def _check_one(
    work: WorkerContext, user_id: str, role: TokenRole, *, force_validate: bool = False
) -> str:
    """Refresh if close to expiry, validate if due; a dead authorization disconnects."""
    settings, sessions, twitch = work.settings, work.sessions, work.twitch
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
    await enqueue_disconnect(work.redis, settings.queue_name, user_id, "invalid_refresh_token")
    return "disconnected"


async def upkeep_tokens(ctx: dict[str, Any]) -> dict[str, int]:
    work = state(ctx)
    sessions = work.sessions
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
        for user_id, role in held:
            outcome = await _check_one(work, user_id, role)
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
    count_run(UPKEEP_JOB, "failed" if error else "success")
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
