"""Fixtures of the aggregator tests: ``rig``, reconciliation against the Twitch stand-in."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from schema.settings import Settings
from streamfold.twitch_local import TwitchStandin, forget_app_token, point_at
from tests.aggregator.reconcile_rig import NOWHERE, Rig
from tests.conftest import serve


@pytest.fixture
async def rig(
    settings: Settings,
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    redis: ArqRedis,
) -> AsyncIterator[Rig]:
    standin = TwitchStandin()
    async with serve(standin.app) as url:
        pointed = point_at(settings, url).model_copy(update={"public_base_url": NOWHERE})
        await forget_app_token(pointed)
        yield Rig(standin, pointed, engine, sessions, redis)
        await standin.settled()
