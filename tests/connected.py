"""A receiver, a worker and the Twitch stand-in wired together, for consent and
subscription lifecycle tests: the receiver knows its own public URL (Twitch's challenge
comes back to it) and both Twitch base URLs point at the stand-in."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from aggregator.worker import create_worker
from receiver.app import create_app
from schema.settings import Settings
from streamfold.twitch_local import StandinUser, TwitchStandin, forget_app_token, point_at
from tests.conftest import free_port, serve

BOT = ("9001", "streamfold_bot")
STREAMER = ("1337", "coolstreamer")


@dataclass
class Connected:
    settings: Settings
    standin: TwitchStandin
    browser: httpx.AsyncClient
    sessions: async_sessionmaker[AsyncSession]
    bot: StandinUser
    streamer: StandinUser

    async def login(self, role: str, user: StandinUser, **consent: Any) -> httpx.Response:
        self.standin.consent_as(user, **consent)
        return await self.browser.get("/auth/twitch/login", params={"role": role})

    async def drain(self) -> None:
        """A real arq worker in burst mode on the stand-in settings, until the queue
        (folds and the disconnect jobs they enqueue) is empty."""
        worker = create_worker(self.settings, burst=True, handle_signals=False)
        try:
            await worker.main()
        finally:
            await worker.close()

    async def scalar(self, sql: str, **params: Any) -> Any:
        async with self.sessions() as session:
            return await session.scalar(text(sql), params)

    async def rows(self, sql: str, **params: Any) -> list[Any]:
        async with self.sessions() as session:
            return list((await session.execute(text(sql), params)).all())


@contextlib.asynccontextmanager
async def connected(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    standin: TwitchStandin | None = None,
    *,
    ensure_at_startup: bool = False,
) -> AsyncIterator[Connected]:
    standin = standin or TwitchStandin(
        client_id=settings.twitch_client_id or "", client_secret="test-client-secret"
    )
    bot = standin.add_user(*BOT)
    streamer = standin.add_user(*STREAMER)
    port = free_port()
    async with serve(standin.app) as twitch_url:
        values = point_at(settings, twitch_url).model_dump()
        values |= {
            "public_base_url": f"http://127.0.0.1:{port}",
            "eventsub_ensure_at_startup": ensure_at_startup,
        }
        wired = Settings(**values)
        await forget_app_token(wired)
        async with (
            serve(create_app(wired), port=port) as app_url,
            httpx.AsyncClient(base_url=app_url, follow_redirects=True, timeout=15) as browser,
        ):
            yield Connected(wired, standin, browser, sessions, bot, streamer)
            await standin.settled()


@contextlib.asynccontextmanager
async def folding(env: Connected) -> AsyncIterator[None]:
    """Workers fold while the block runs (burst workers one after another, each until the
    queue is empty), and the queue is drained when it ends."""
    stop = asyncio.Event()

    async def keep_draining() -> None:
        while not stop.is_set():
            await env.drain()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.05)  # the next batch, or the end

    task = asyncio.create_task(keep_draining())
    try:
        yield
    finally:
        stop.set()
        await task
        await env.drain()
