"""``streamfold simulate`` against a run that uses the local Twitch.

What a real Twitch would know about the simulated channels is made true in the local
one: their streamers (and the chat bot) sign in through the consent page, their streams
are live in Helix while the simulated events say so, and reconciliation runs right
away rather than at its next period, so viewer figures appear within seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from urllib.parse import parse_qsl, urlsplit

import httpx
from sqlalchemy import text

from schema.db import create_engine, create_sessionmaker
from schema.settings import Settings
from streamfold.jobs import describe_result, run_reconcile
from streamfold.twitch_local_run import DEMO_BOT

_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_CONNECTED = text(
    "SELECT broadcaster_id FROM channels WHERE connected AND broadcaster_id = ANY(:b)"
)
_BOT = text("SELECT 1 FROM twitch_users u JOIN oauth_tokens t ON t.user_id = u.id WHERE u.is_bot")
_OPEN = text("SELECT count(*) FROM stream_sessions WHERE id = ANY(:ids) AND ended_at IS NULL")


def local_twitch_url(settings: Settings) -> str | None:
    """The local Twitch's base URL, if this run's Twitch is one on this machine."""
    parts = urlsplit(settings.twitch_auth_base)
    if parts.hostname not in _LOOPBACK or not settings.twitch_client_id:
        return None
    return f"{parts.scheme}://{parts.netloc}"


async def sign_in(receiver: str, twitch: str, role: str, user_id: str) -> str:
    """One sign-in through the receiver and the local consent page, as a browser does it."""
    async with httpx.AsyncClient(timeout=30) as http:
        login = await http.get(f"{receiver}/auth/twitch/login", params={"role": role})
        if login.status_code != 302:
            raise RuntimeError(f"sign-in as {role} refused: {login.status_code}")
        fields = dict(parse_qsl(urlsplit(login.headers["location"]).query))
        fields |= {"user_id": user_id, "decision": "authorize"}
        consent = await http.post(f"{twitch}/oauth2/authorize", data=fields)
        back = await http.get(consent.headers["location"])
        return f"{role} {user_id}: {back.status_code}"


async def connect_demo(settings: Settings, receiver: str, channels: Sequence[str]) -> list[str]:
    """Sign in the bot and every simulated streamer not yet connected."""
    twitch = local_twitch_url(settings)
    assert twitch is not None
    engine = create_engine(settings.database_url or "", pool_size=1)
    try:
        async with create_sessionmaker(engine)() as session:
            connected = set((await session.execute(_CONNECTED, {"b": list(channels)})).scalars())
            has_bot = (await session.execute(_BOT)).first() is not None
    finally:
        await engine.dispose()
    done = []
    if not has_bot:
        done.append(await sign_in(receiver, twitch, "bot", DEMO_BOT[0]))
    for broadcaster in channels:
        if broadcaster not in connected:
            done.append(await sign_in(receiver, twitch, "streamer", broadcaster))
    return done


async def mark_streams(settings: Settings, streams: list[dict[str, object]]) -> None:
    twitch = local_twitch_url(settings)
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.post(f"{twitch}/_local/streams", json={"streams": streams})
        answer.raise_for_status()


async def wait_open(settings: Settings, stream_ids: list[str], wait_s: float = 30.0) -> bool:
    """Until the workers have opened every simulated session (reconciliation must find
    them open, or it would open them itself)."""
    engine = create_engine(settings.database_url or "", pool_size=1)
    deadline = asyncio.get_running_loop().time() + wait_s
    try:
        while True:
            async with create_sessionmaker(engine)() as session:
                if await session.scalar(_OPEN, {"ids": stream_ids}) == len(stream_ids):
                    return True
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(0.3)
    finally:
        await engine.dispose()


async def reconcile_now(settings: Settings) -> str:
    return "reconciliation " + describe_result(await run_reconcile(settings))
