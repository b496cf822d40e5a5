"""Real PostgreSQL and Redis for every test.

Services: ``TEST_DATABASE_URL``/``TEST_REDIS_URL`` (or ``DATABASE_URL``/``REDIS_URL``)
when set; else the machine's PostgreSQL and Redis on 127.0.0.1; else embedded ones under
``.streamfold/test``. A template database is migrated once with ``alembic upgrade head``;
each test gets its own copy and its own arq queue name, removed afterwards.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from arq.connections import ArqRedis
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from aggregator.worker import create_worker
from receiver.app import create_app
from schema.db import create_engine, create_sessionmaker
from schema.jobs import failed_batches_key
from schema.settings import Settings
from streamfold import embedded
from streamfold.embedded import free_port as free_port  # re-exported for the tests
from streamfold.migrate import upgrade_head
from streamfold.serving import serve as serve  # re-exported for the tests

ROOT = Path(__file__).resolve().parent.parent
SECRET = "streamfold-test-secret-0123456789"
FERNET_KEY = "PMTMaeXo8xDgzfqx186p997eDuCdevBsfhkN0mC-_Lw="


def _libpq(url: str) -> str:
    return embedded.libpq_url(url)


@pytest.fixture(scope="session")
def admin_url() -> str:
    configured = os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL")
    return embedded.postgres_url(configured, ROOT / ".streamfold" / "test")


@pytest.fixture(scope="session")
def redis_url() -> str:
    configured = os.environ.get("TEST_REDIS_URL") or os.environ.get("REDIS_URL")
    return embedded.redis_url(configured, ROOT / ".streamfold" / "test")


@pytest.fixture(scope="session")
def template_db(admin_url: str) -> Iterator[str]:
    name = f"streamfold_tpl_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(_libpq(admin_url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    upgrade_head(make_url(admin_url).set(database=name).render_as_string(hide_password=False))
    yield name
    with psycopg.connect(_libpq(admin_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url(admin_url: str, template_db: str) -> Iterator[str]:
    name = f"streamfold_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_libpq(admin_url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(_libpq(admin_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def queue_name() -> str:
    return f"streamfold-test:{uuid.uuid4().hex[:12]}:queue"


@pytest.fixture
def settings(database_url: str, redis_url: str, queue_name: str) -> Settings:
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        eventsub_secret=SECRET,
        token_encryption_keys=FERNET_KEY,
        session_secret="session-secret-for-tests-only",
        twitch_client_id="test-client-id",
        twitch_client_secret="test-client-secret",
        queue_name=queue_name,
        # Pub/sub channels ignore the Redis database number: keep each test's own.
        live_channel_prefix=f"{queue_name}:",
        log_format="console",
        # Twitch is unreachable from tests; tests that want it point at the stand-in.
        eventsub_ensure_at_startup=False,
    )


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[ArqRedis]:
    client = ArqRedis.from_url(settings.redis_url or "")
    yield client
    # Remove this test's queue and any jobs left on it, so ids never leak between tests.
    job_ids = await client.zrange(settings.queue_name, 0, -1)
    keys = [f"arq:job:{j.decode()}" for j in job_ids]
    keys += [
        settings.queue_name,
        failed_batches_key(settings.queue_name),
        f"{settings.queue_name}:health-check",
    ]
    await client.delete(*keys)
    await client.aclose()


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings.database_url or "")
    yield engine
    await engine.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(engine)


class Clock:
    """An injectable wall clock for the receiver's replay window."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def eventually(
    condition: Callable[[], Any], within: float = 30.0, interval: float = 0.02
) -> None:
    """Wait until ``condition()`` (sync or async) is true; fail after ``within`` seconds."""
    async with asyncio.timeout(within):
        while True:
            result = condition()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return
            await asyncio.sleep(interval)


@pytest.fixture
async def receiver(
    settings: Settings, clock: Clock, redis: ArqRedis
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the receiver served by uvicorn."""
    async with (
        serve(create_app(settings, clock=clock)) as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=10) as client,
    ):
        yield client


@pytest.fixture
def drain(settings: Settings, redis: ArqRedis) -> Callable[[], Any]:
    """Run a real arq worker in burst mode until the test's queue is empty."""

    async def run(**overrides: Any) -> None:
        worker = create_worker(settings, burst=True, handle_signals=False, **overrides)
        try:
            await worker.main()
        finally:
            await worker.close()

    return run
