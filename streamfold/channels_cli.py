"""Operator commands for Twitch connections: ``rotate-token-keys``, ``channels``,
``follows`` and ``subscriptions sync``. Each opens its own engine (and Twitch client) and
closes it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC

from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schema.db import create_engine, create_sessionmaker
from schema.settings import Settings
from schema.twitch import TwitchClient
from schema.twitch.client import budget_key
from schema.twitch.subscriptions import SyncReport, sync_subscriptions
from schema.twitch.tokens import TokenCipher, connected_bot_id, rotate_token_keys


@asynccontextmanager
async def _sessions(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(settings.database_url or "", pool_size=1)
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


async def rotate_keys(settings: Settings) -> int:
    """Re-encrypt every stored token with the first of TOKEN_ENCRYPTION_KEYS."""
    async with _sessions(settings) as sessions, sessions.begin() as session:
        return await rotate_token_keys(session, TokenCipher.from_settings(settings))


_CHANNELS = text("""
    SELECT c.broadcaster_id, c.login, c.connected, c.chat_blocked, c.chat_revocation,
           c.chat_revoked_at,
           coalesce(string_agg(s.type || '=' || s.status, ', ' ORDER BY s.type), '') AS subs
    FROM channels c
    LEFT JOIN eventsub_subscriptions s ON s.broadcaster_id = c.broadcaster_id
    GROUP BY c.broadcaster_id
    ORDER BY c.connected DESC, c.login NULLS LAST, c.broadcaster_id
""")


async def describe_channels(settings: Settings) -> str:
    """Channels and the state of their subscriptions as we last recorded it."""
    async with _sessions(settings) as sessions, sessions() as session:
        rows = (await session.execute(_CHANNELS)).all()
        bot = await connected_bot_id(session, settings.bot_user_id)
        app_wide = (
            await session.execute(
                text("SELECT type, status FROM eventsub_subscriptions WHERE broadcaster_id IS NULL")
            )
        ).all()
    lines = [f"{'channel':<24} {'id':<12} {'state':<13} subscriptions"]
    blocked = 0
    for row in rows:
        state = "connected" if row.connected else "disconnected"
        subs = row.subs or "-"
        if row.chat_blocked:
            blocked += 1
            at = row.chat_revoked_at
            since = at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") if at else "?"
            subs += f"; chat BLOCKED: {row.chat_revocation} since {since}"
        lines.append(f"{row.login or '?':<24} {row.broadcaster_id:<12} {state:<13} {subs}")
    if not rows:
        lines.append("(no channels)")
    if blocked:
        lines.append(
            f"{blocked} channel(s) wait for a person before chat is subscribed again (unban"
            " or re-mod the bot); then the streamer connects again, or run"
            " `streamfold subscriptions sync --retry-blocked`"
        )
    lines.append("")
    lines.append(f"bot account: {bot or 'none connected (chat is not subscribed)'}")
    lines.append(
        "app-wide: " + (", ".join(f"{r.type}={r.status}" for r in app_wide) or "none recorded")
    )
    return "\n".join(lines)


async def sync(settings: Settings, *, retry_blocked: bool = False) -> SyncReport:
    redis = Redis.from_url(settings.redis_url) if settings.redis_url else None
    try:
        async with (
            _sessions(settings) as sessions,
            TwitchClient(settings, redis) as twitch,
            sessions.begin() as session,
        ):
            return await sync_subscriptions(session, twitch, settings, retry_blocked=retry_blocked)
    finally:
        if redis is not None:
            await redis.aclose()


_FOLLOWS = text("""
    SELECT c.broadcaster_id, c.login, c.connected,
           count(f.follower_id) FILTER (WHERE f.follower_kind = 'user') AS users,
           count(f.follower_id) FILTER (WHERE f.follower_kind = 'guild') AS guilds,
           coalesce(string_agg(f.follower_kind || ':' || f.follower_id, ', '
                               ORDER BY f.follower_kind, f.follower_id), '') AS followers,
           (SELECT coalesce(string_agg(s.type || '=' || s.status, ', ' ORDER BY s.type), '')
            FROM eventsub_subscriptions s
            WHERE s.broadcaster_id = c.broadcaster_id
              AND s.type IN ('stream.online', 'stream.offline')) AS subs
    FROM channels c
    LEFT JOIN follows f ON f.broadcaster_id = c.broadcaster_id
    GROUP BY c.broadcaster_id
    HAVING c.connected OR count(f.follower_id) > 0
    ORDER BY count(f.follower_id) DESC, c.login NULLS LAST, c.broadcaster_id
""")


async def describe_follows(settings: Settings) -> str:
    """Tracked channels (connected or followed), who follows them, their online/offline
    subscriptions as last recorded, and the app's subscription budget at Twitch."""
    async with _sessions(settings) as sessions, sessions() as session:
        rows = (await session.execute(_FOLLOWS)).all()
    lines = [f"{'channel':<24} {'id':<12} {'tracked as':<20} subscriptions / followers"]
    for row in rows:
        why = "connected" if row.connected else "followed"
        count = f"{why} ({row.users}u/{row.guilds}g)"
        subs = row.subs or "no online/offline subscription recorded"
        lines.append(f"{row.login or '?':<24} {row.broadcaster_id:<12} {count:<20} {subs}")
        if row.followers:
            lines.append(f"{'':<58}followers: {row.followers}")
    if not rows:
        lines.append("(no tracked channels)")
    lines += [
        "",
        f"tracked channels: {len(rows)}",
        f"subscription budget: {await _budget(settings)}",
    ]
    return "\n".join(lines)


async def _budget(settings: Settings) -> str:
    if not settings.redis_url:
        return "unknown (no REDIS_URL)"
    redis = Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        budget = await redis.hgetall(budget_key(settings))
    finally:
        await redis.aclose()
    if not budget.get("max_total_cost"):
        return "not seen yet (recorded on the next subscription create or list)"
    return f"total_cost {budget.get('total_cost')} of max_total_cost {budget['max_total_cost']}"
