"""``streamfold`` processes of the tests' own: their environment, starting one, waiting
until it answers, stopping it.

Two environments: ``service_env`` names only what a process needs to reach this test's
PostgreSQL, Redis and queue (Twitch stays unconfigured, as on a machine that never
connected a channel); ``settings_env`` hands over every setting of the test's, so a
process talks to the Twitch stand-in the test points at.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import httpx
from pydantic import SecretStr

from schema.settings import Settings
from tests.conftest import ROOT, SECRET


def service_env(settings: Settings, **more: str) -> dict[str, str]:
    """This environment plus the test's database, Redis and queue; ``more`` overrides."""
    return {
        **os.environ,
        "DATABASE_URL": settings.database_url or "",
        "REDIS_URL": settings.redis_url or "",
        "QUEUE_NAME": settings.queue_name,
        "EVENTSUB_SECRET": SECRET,
        "EVENTSUB_ENSURE_AT_STARTUP": "false",
        "WORKER_METRICS_PORT": "0",
        "LOG_FORMAT": "console",
        **more,
    }


def settings_env(settings: Settings, **more: str) -> dict[str, str]:
    """The environment that makes a process build ``settings``; ``more`` overrides."""
    values = dict(os.environ)
    for name, value in settings.model_dump().items():
        if value is None:
            values.pop(name.upper(), None)
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        values[name.upper()] = str(value).lower() if isinstance(value, bool) else str(value)
    return values | {"WORKER_METRICS_PORT": "0"} | more


async def start(env: dict[str, str], *args: str) -> asyncio.subprocess.Process:
    """``python -m streamfold *args`` in ``env``, its output discarded."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "streamfold", *args, env=env, cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


async def answers(url: str) -> bool:
    """Whether ``url`` answers 200 now."""
    try:
        async with httpx.AsyncClient(timeout=1) as client:
            return (await client.get(url)).status_code == 200
    except httpx.HTTPError:
        return False


async def stop(process: asyncio.subprocess.Process) -> None:
    """SIGTERM, and wait for it to exit."""
    if process.returncode is None:
        process.terminate()
        await process.wait()
