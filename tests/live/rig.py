"""Helpers for the live-status tests: a signed-in follower, a running fold worker (with
its follow listener and live publisher), a subscriber on the outgoing channels."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from redis.asyncio import Redis

from aggregator.worker import create_worker
from schema import live
from schema.settings import Settings
from tests.conftest import eventually, free_port
from tests.connected import Connected
from tests.processes import answers, settings_env, start, stop
from tests.receiver.people import add_user, sign_in


async def follower(env: Connected, user_id: str, login: str) -> dict[str, str]:
    await add_user(env.sessions, user_id, login, streamer=False)
    return await sign_in(env.sessions, env.settings, user_id)


async def subscription_types(env: Connected, broadcaster_id: str) -> list[str]:
    await env.standin.settled()
    return sorted(
        s["type"]
        for s in env.standin.live_subscriptions()
        if s["condition"].get("broadcaster_user_id") == broadcaster_id
    )


@contextlib.asynccontextmanager
async def running_worker(settings: Settings) -> AsyncIterator[None]:
    """A fold worker that keeps running (its listener and publisher with it)."""
    worker = create_worker(settings, handle_signals=False)
    before = await follow_listeners(settings)
    task = asyncio.create_task(worker.async_run())
    try:

        async def listening() -> bool:
            return await follow_listeners(settings) > before

        await eventually(listening, within=15)
        yield
    finally:
        await worker.close()
        task.cancel()
        with contextlib.suppress(BaseException):
            await task


async def follow_listeners(settings: Settings) -> int:
    """How many fold workers listen on ``stream.follow`` (each has its publisher too)."""
    probe = Redis.from_url(settings.redis_url or "")
    try:
        counts = await probe.pubsub_numsub(live.Names.of(settings).follow)
        return int(counts[0][1]) if counts else 0
    finally:
        await probe.aclose()


async def worker_process(settings: Settings, **env: str) -> asyncio.subprocess.Process:
    """``streamfold worker`` as its own process on ``settings`` (Twitch: the stand-in),
    once its follow listener is subscribed."""
    before = await follow_listeners(settings)
    process = await start(settings_env(settings, **env), "worker")
    await eventually(lambda: _listening_beyond(settings, before, process), within=60)
    return process


@contextlib.asynccontextmanager
async def web_process(settings: Settings) -> AsyncIterator[str]:
    """``streamfold web`` as its own process on ``settings``; its base URL once it
    answers ``/healthz``."""
    port = free_port()
    process = await start(settings_env(settings, PORT=str(port)), "web", "--host", "127.0.0.1")
    url = f"http://127.0.0.1:{port}"

    async def healthy() -> bool:
        assert process.returncode is None, f"the web process exited with {process.returncode}"
        return await answers(url + "/healthz")

    try:
        await eventually(healthy, within=60)
        yield url
    finally:
        await stop(process)


async def _listening_beyond(
    settings: Settings, before: int, process: asyncio.subprocess.Process
) -> bool:
    assert process.returncode is None, f"the worker exited with {process.returncode}"
    return await follow_listeners(settings) > before


class Subscriber:
    """Collects what is published on streams.online / streams.offline."""

    def __init__(self, settings: Settings) -> None:
        self.names = live.Names.of(settings)
        self.redis = Redis.from_url(settings.redis_url or "")
        self.messages: list[tuple[str, dict[str, Any], float]] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Subscriber:
        self.pubsub = self.redis.pubsub()
        await self.pubsub.subscribe(self.names.online, self.names.offline)
        self._task = asyncio.create_task(self._collect())
        return self

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        async for message in self.pubsub.listen():
            if message["type"] == "message":
                body = msgspec.json.decode(message["data"])
                self.messages.append((message["channel"].decode(), body, loop.time()))

    def about(self, broadcaster_id: str) -> list[tuple[str, dict[str, Any], float]]:
        return [
            m
            for m in self.messages
            if any(s["ChannelId"] == broadcaster_id for s in m[1]["Streams"])
        ]

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        await self.pubsub.aclose()
        await self.redis.aclose()
