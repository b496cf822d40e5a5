"""What a worker's jobs may use, made once per worker in ``on_startup``.

arq hands every job its ``ctx`` dict; jobs read this module's ``WorkerContext`` from it
through ``state(ctx)`` and nothing else, so what a job may touch is typed in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from aggregator.pipeline import Folder
from schema.db import create_engine, create_sessionmaker
from schema.settings import Settings
from schema.twitch import TwitchClient

_KEY = "state"


@dataclass(slots=True)
class WorkerContext:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    # The worker's own arq pool: enqueues follow-up jobs and parks failed batches.
    redis: ArqRedis
    # One per process (one connection pool, one app token): the fold worker and the
    # periodic worker of ``streamfold worker`` share it.
    twitch: TwitchClient
    owns_twitch: bool = True
    folder: Folder = field(init=False)
    # The fold worker's long-running companions: the follow listener, the live publisher.
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.folder = Folder(
            self.sessions, horizon=timedelta(seconds=self.settings.dedupe_horizon_seconds)
        )

    @classmethod
    def open(
        cls, settings: Settings, redis: ArqRedis, twitch: TwitchClient | None = None
    ) -> WorkerContext:
        """A database pool of its own; ``twitch`` when the process already has one."""
        engine = create_engine(settings.database_url or "", pool_size=settings.database_pool_size)
        return cls(
            settings=settings,
            engine=engine,
            sessions=create_sessionmaker(engine),
            redis=redis,
            twitch=twitch or TwitchClient(settings, redis),
            owns_twitch=twitch is None,
        )

    def attach(self, ctx: dict[str, Any]) -> dict[str, Any]:
        ctx[_KEY] = self
        return ctx

    def start_live(self) -> None:
        """Listen for outside groups' follows and publish the live-status outbox."""
        from aggregator.follow_listener import FollowListener
        from aggregator.live_publisher import LivePublisher

        for runner in (
            FollowListener(self.settings, self.sessions, self.twitch),
            LivePublisher(self.settings, self.sessions, self.twitch),
        ):
            self.tasks.append(asyncio.create_task(runner.run()))

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(BaseException):
                await task
        if self.owns_twitch:
            await self.twitch.aclose()
        await self.engine.dispose()


def state(ctx: Mapping[str, Any]) -> WorkerContext:
    """The worker's context, as ``on_startup`` made it."""
    found = ctx[_KEY]
    if not isinstance(found, WorkerContext):
        raise TypeError("the worker was not started by aggregator.worker.startup")
    return found


def job_try(ctx: Mapping[str, Any]) -> int:
    """arq's try number of the running job (1 for the first)."""
    return int(ctx.get("job_try", 1))


def job_id(ctx: Mapping[str, Any]) -> str | None:
    value = ctx.get("job_id")
    return None if value is None else str(value)
