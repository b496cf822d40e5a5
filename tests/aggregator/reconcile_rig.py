"""A Twitch stand-in under uvicorn, real PostgreSQL and Redis, and reconciliation runs at
chosen instants: what the reconciliation tests share."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from arq.connections import ArqRedis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from aggregator.reconcile import RunResult, reconcile_once
from schema.settings import Settings
from schema.twitch import TwitchClient
from streamfold.twitch_local import CHAT_USER_SCOPES, Grant, TwitchStandin

BOT_ID = "900"
NOWHERE = "http://127.0.0.1:9"  # challenges sent here fail: subscriptions stay unverified


def base_time() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


async def wait_until(condition: Callable[[], bool | Awaitable[bool]], within: float = 30) -> None:
    """Poll ``condition`` (another task's or process's state) until true; fail after
    ``within`` seconds."""
    async with asyncio.timeout(within):
        while True:
            result = condition()
            if not isinstance(result, bool):
                result = await result
            if result:
                return
            await asyncio.sleep(0.02)


@dataclass
class Rig:
    standin: TwitchStandin
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    redis: ArqRedis

    async def run(self, at: datetime | None = None) -> RunResult:
        clock = (lambda: at) if at is not None else (lambda: datetime.now(UTC))
        async with TwitchClient(self.settings, self.redis) as twitch:
            return await reconcile_once(
                self.settings, self.engine, self.sessions, twitch, clock=clock
            )

    async def connect(self, ids: Sequence[str]) -> None:
        for broadcaster_id in ids:
            self.standin.add_user(broadcaster_id, f"channel_{broadcaster_id}")
        async with self.sessions.begin() as session:
            await session.execute(
                text("""INSERT INTO channels (broadcaster_id, login, connected, connected_at)
                        SELECT b, 'channel_' || b, true, now() FROM unnest(CAST(:ids AS text[])) b
                        ON CONFLICT (broadcaster_id) DO UPDATE SET connected = true"""),
                {"ids": list(ids)},
            )

    async def connect_bot(self, channels: Sequence[str]) -> None:
        """A bot account with tokens, and the grants Twitch wants before a chat
        subscription may be created (the OAuth flow itself is tested elsewhere)."""
        self.standin.add_user(BOT_ID, "streamfold_bot")
        forever = time.time() + 86_400
        self.standin.grants[BOT_ID] = Grant(BOT_ID, sorted(CHAT_USER_SCOPES), "a", "r", forever)
        for channel in channels:
            self.standin.grants[channel] = Grant(channel, ["channel:bot"], "a", "r", forever)
        async with self.sessions.begin() as session:
            await session.execute(
                text("""INSERT INTO twitch_users (id, login, display_name, is_bot)
                        VALUES (:id, 'streamfold_bot', 'Bot', true)"""),
                {"id": BOT_ID},
            )
            await session.execute(
                text("""INSERT INTO oauth_tokens (user_id, role, access_token, refresh_token,
                                                  expires_at)
                        VALUES (:id, 'bot', 'x', 'x', now() + interval '1 day')"""),
                {"id": BOT_ID},
            )

    def seed_subscriptions(self, channels: Sequence[str]) -> None:
        self.standin.seed_subscriptions(self.settings.callback_url, channels)

    def go_live(
        self,
        broadcaster_id: str,
        stream_id: str,
        started_at: datetime,
        *,
        viewers: int = 10,
        title: str = "stand-in stream",
    ) -> None:
        self.standin.go_live(
            broadcaster_id, stream_id=stream_id, viewers=viewers, started_at=started_at, title=title
        )

    def go_offline(self, broadcaster_id: str) -> None:
        self.standin.live.pop(broadcaster_id, None)

    def calls(self, path: str) -> int:
        return sum(1 for _, p, _ in self.standin.requests if p == path)

    async def rows(self, sql: str, **params: Any) -> list[Any]:
        async with self.sessions() as session:
            return list((await session.execute(text(sql), params)).all())

    async def sessions_of(self, broadcaster_id: str) -> list[Any]:
        return await self.rows(
            """SELECT id, started_at, started_by, ended_at, ended_by, title, game_name
               FROM stream_sessions WHERE broadcaster_id = :b ORDER BY started_at""",
            b=broadcaster_id,
        )

    async def job_runs(self) -> list[Any]:
        return await self.rows(
            "SELECT outcome, counts, error FROM job_runs WHERE job = 'reconcile' ORDER BY id"
        )
