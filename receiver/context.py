"""What a request handler may use, made once in the app's lifespan."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from receiver.body import BodyDeadlines
from receiver.health import Probes
from receiver.queue import NotificationQueue
from schema.settings import Settings
from schema.twitch import TwitchClient


@dataclass(slots=True)
class Context:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    redis: ArqRedis
    queue: NotificationQueue
    clock: Callable[[], datetime]
    twitch: TwitchClient | None = None
    body_deadlines: BodyDeadlines = field(default_factory=BodyDeadlines)
    probes: Probes = field(default_factory=Probes)
