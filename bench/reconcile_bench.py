"""Reconciliation of many connected channels against the Helix stand-in.

The stand-in (``streamfold/twitch_local.py``) enforces Twitch's 800 points per minute and
answers 429 with ``Ratelimit-Reset`` beyond it; it runs under uvicorn in this process,
as in the reconciliation tests, and each repetition gets a fresh one (a fresh bucket).
Every channel has its two stream subscriptions already (a steady-state run), one in ten
is live. The baseline is the Helix part alone: the same Get Streams and subscription
listing through the same client, with no database work.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from bench.services import Environment
from bench.stats import Row
from receiver.queue import connect_redis
from schema.db import create_engine, create_sessionmaker
from streamfold.serving import serve

FERNET_KEY = "PMTMaeXo8xDgzfqx186p997eDuCdevBsfhkN0mC-_Lw="
# Connected as the OAuth callback leaves a channel, in one statement for all of them.
_CONNECT = text("""
    INSERT INTO channels (broadcaster_id, login, connected, connected_at)
    SELECT b, 'channel_' || b, true, now() FROM unnest(CAST(:ids AS text[])) b
    ON CONFLICT (broadcaster_id) DO UPDATE SET connected = true""")


async def _one(env: Environment, channels: list[str], *, baseline: bool) -> dict[str, Any]:
    from aggregator.reconcile import reconcile_once
    from schema.twitch import TwitchClient
    from streamfold.twitch_local import TwitchStandin, point_at

    standin = TwitchStandin()
    engine = create_engine(env.database_url, pool_size=2)
    redis = connect_redis(env.redis_url)
    try:
        async with serve(standin.app, lifespan="off") as url:
            settings = point_at(
                env.settings(
                    twitch_client_id="test-client-id",
                    twitch_client_secret="test-client-secret",
                    token_encryption_keys=FERNET_KEY,
                    session_secret="bench-session-secret",
                ),
                url,
            ).model_copy(update={"public_base_url": "http://127.0.0.1:9"})
            sessions = create_sessionmaker(engine)
            async with sessions.begin() as session:
                # Only this benchmark's channels are connected (earlier sections add others).
                await session.execute(text("UPDATE channels SET connected = false"))
                await session.execute(_CONNECT, {"ids": channels})
            for broadcaster_id in channels:
                standin.add_user(broadcaster_id, f"channel_{broadcaster_id}")
            standin.seed_subscriptions(settings.callback_url, channels)
            now = datetime.now(UTC).replace(microsecond=0)
            for n in range(0, len(channels), 10):
                standin.go_live(
                    channels[n],
                    stream_id=f"stream-{channels[n]}",
                    started_at=now - timedelta(minutes=20),
                )
            began = time.perf_counter()
            async with TwitchClient(settings, redis) as twitch:
                if baseline:
                    await twitch.get_streams(channels)
                    await twitch.list_subscriptions()
                    outcome, error = "success", None
                else:
                    result = await reconcile_once(
                        settings, engine, sessions, twitch, clock=lambda: now
                    )
                    outcome, error = result.outcome, result.error
            elapsed = time.perf_counter() - began
            helix = sum(1 for _, path, _ in standin.requests if path.startswith("/helix/"))
            await standin.settled()
            return {
                "seconds": elapsed,
                "helix_calls": helix,
                "refused_429": standin.refused_by_bucket,
                "outcome": outcome,
                "error": error,
            }
    finally:
        await redis.aclose()
        await engine.dispose()


def run(env: Environment, *, quick: bool, repetitions: int) -> list[Row]:
    try:
        for module in ("aggregator.reconcile", "streamfold.twitch_local"):
            importlib.import_module(module)
    except ImportError as exc:
        return [Row("reconcile", "reconciliation", "s", note=f"not available: {exc}")]
    count = 1_000 if quick else 10_000
    channels = [str(200_000 + n) for n in range(count)]
    asyncio.run(_one(env, channels, baseline=False))  # warm-up
    runs = []
    base = []
    for _ in range(repetitions):
        runs.append(asyncio.run(_one(env, channels, baseline=False)))
        base.append(asyncio.run(_one(env, channels, baseline=True)))
    failed = [r for r in runs if r["outcome"] != "success"]
    calls = sorted({r["helix_calls"] for r in runs})
    refused = sum(r["refused_429"] for r in runs)
    row = Row(
        "reconcile",
        f"run time, {count:,} channels (800 points/min)",
        "s",
        [r["seconds"] for r in runs],
        sorted(b["seconds"] for b in base)[len(base) // 2],
        "Helix calls only",
        "success, no 429 left",
        note=(
            f"Helix calls per run: {calls}; 429s answered by the stand-in: {refused}; "
            f"failed runs: {len(failed)}" + (f" ({failed[0]['error']})" if failed else "")
        ),
    )
    row.met = not failed
    return [row, Row("reconcile", "Helix calls per run", "calls", [r["helix_calls"] for r in runs])]
