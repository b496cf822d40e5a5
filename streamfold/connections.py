"""Operator commands for Twitch connections: ``rotate-token-keys``, ``channels`` and
``subscriptions sync``. Each opens its own engine (and Twitch client) and closes it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schema.db import create_engine, create_sessionmaker
from schema.settings import Settings
from schema.subscriptions import SyncReport, sync_subscriptions
from schema.tokens import TokenCipher, connected_bot_id, rotate_token_keys
from schema.twitch import TwitchClient


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
    SELECT c.broadcaster_id, c.login, c.connected,
           coalesce(string_agg(s.type || '=' || s.status, ', ' ORDER BY s.type), '') AS subs
    FROM channels c
    LEFT JOIN eventsub_subscriptions s ON s.broadcaster_id = c.broadcaster_id
    GROUP BY c.broadcaster_id, c.login, c.connected
    ORDER BY c.connected DESC, c.login NULLS LAST, c.broadcaster_id
""")


async def describe_channels(settings: Settings) -> str:
    """Channels and the state of their subscriptions as we last recorded it."""
    async with _sessions(settings) as sessions, sessions() as session:
        rows = (await session.execute(_CHANNELS)).all()
        bot = await connected_bot_id(session)
        app_wide = (
            await session.execute(
                text("SELECT type, status FROM eventsub_subscriptions WHERE broadcaster_id IS NULL")
            )
        ).all()
    lines = [f"{'channel':<24} {'id':<12} {'state':<13} subscriptions"]
    for row in rows:
        state = "connected" if row.connected else "disconnected"
        lines.append(
            f"{row.login or '?':<24} {row.broadcaster_id:<12} {state:<13} {row.subs or '-'}"
        )
    if not rows:
        lines.append("(no channels)")
    lines.append("")
    lines.append(f"bot account: {bot or 'none connected (chat is not subscribed)'}")
    lines.append(
        "app-wide: " + (", ".join(f"{r.type}={r.status}" for r in app_wide) or "none recorded")
    )
    return "\n".join(lines)


async def sync(settings: Settings) -> SyncReport:
    redis = Redis.from_url(settings.redis_url) if settings.redis_url else None
    try:
        async with (
            _sessions(settings) as sessions,
            TwitchClient(settings, redis) as twitch,
            sessions.begin() as session,
        ):
            return await sync_subscriptions(session, twitch, settings)
    finally:
        if redis is not None:
            await redis.aclose()
