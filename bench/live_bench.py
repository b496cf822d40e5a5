"""Live status: 1,000 tracked channels go live within one minute.

Signed ``stream.online`` webhooks go, on a fixed schedule (an open loop, as Twitch sends
them), through the receiver under uvicorn; a ``streamfold worker`` process folds them and
its live publisher batches them (``LIVE_BATCH_SECONDS``, default 1) onto Redis. This
process listens where the consumers are: on ``streams.online`` (as a Discord bot would)
and on ``/api/live/events`` as one signed-in user who follows every channel. A channel's
lag is when its pub/sub message (or SSE event) arrived minus when its webhook's 2xx
arrived, both on this process's monotonic clock. The Twitch stand-in (Get Channels, asked
for the titles) runs in this process. Each repetition uses 1,000 fresh channels, all
followed by the user and one guild.

Baseline, in the same run: the idle lag, one webhook at a time into an idle pipeline
(each waits for the previous one's SSE event): the floor load adds to, which is mostly
the batch window. A bare Redis PUBLISH -> subscriber round trip is reported for scale.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec
from redis.asyncio import Redis
from sqlalchemy import text
from starlette.responses import Response

from bench.services import SECRET, Environment, cpu_seconds, process, uvicorn, worker_args
from bench.stats import Row, percentile
from schema import live
from schema.db import create_engine, create_sessionmaker
from streamfold.eventsub_sender import signed, stream_online_body
from streamfold.serving import serve

FERNET_KEY = "PMTMaeXo8xDgzfqx186p997eDuCdevBsfhkN0mC-_Lw="
SESSION_SECRET = "bench-session-secret-0123456789"
FOLLOWER = "990001"
GUILD = "424242424242"
TARGET_S = 2.0
_TRACK = text("""
    INSERT INTO channels (broadcaster_id, login, display_name)
    SELECT b, 'live_' || b, 'Live ' || b FROM unnest(CAST(:ids AS text[])) b
    ON CONFLICT (broadcaster_id) DO NOTHING;
""")
# How long the burst's changes waited in the outbox (committed -> published): the batch
# window's share of the lag; the rest is receiving, queueing, folding and delivery.
_OUTBOX_WAIT = text("""
    SELECT percentile_cont(0.5) WITHIN GROUP (
        ORDER BY extract(epoch FROM published_at - changed_at))
    FROM live_outbox WHERE broadcaster_id = ANY(CAST(:ids AS text[]))
""")
_FOLLOW = text("""
    INSERT INTO follows (broadcaster_id, follower_kind, follower_id)
    SELECT b, k, CASE k WHEN 'user' THEN :user ELSE :guild END
    FROM unnest(CAST(:ids AS text[])) b, unnest(ARRAY['user', 'guild']) k
    ON CONFLICT DO NOTHING
""")


def lags(acked: dict[str, float], seen: dict[str, float], end: float) -> list[float]:
    """Per channel: first seen minus its 2xx; never seen counts as seen at ``end`` (an
    honest upper bound)."""
    return [seen.get(channel, end) - at for channel, at in acked.items()]


def sse_events(lines: Iterable[str]) -> list[tuple[str, dict[str, Any]]]:
    """``(event, data)`` of the complete events in ``lines`` (comments skipped)."""
    events: list[tuple[str, dict[str, Any]]] = []
    fields: dict[str, str] = {}
    for line in lines:
        if line == "":
            if "event" in fields and "data" in fields:
                events.append((fields["event"], msgspec.json.decode(fields["data"])))
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            fields[name] = value
    return events


@dataclass
class Arrivals:
    pubsub: dict[str, float] = field(default_factory=dict)
    sse: dict[str, float] = field(default_factory=dict)
    messages: int = 0

    def saw(self, channels: Iterable[str]) -> bool:
        return all(c in self.pubsub and c in self.sse for c in channels)


async def _listen_pubsub(redis: Redis, channel: str, arrivals: Arrivals) -> None:
    async with redis.pubsub() as pubsub:
        await pubsub.subscribe(channel)
        async for message in pubsub.listen():
            if message["type"] != "message":
                continue
            now = time.monotonic()
            arrivals.messages += 1
            for stream in msgspec.json.decode(message["data"])["Streams"]:
                arrivals.pubsub.setdefault(str(stream["ChannelId"]), now)


async def _listen_sse(client: httpx.AsyncClient, cookie: str, arrivals: Arrivals) -> None:
    headers = {"Cookie": cookie}
    async with client.stream("GET", "/api/live/events", headers=headers) as response:
        response.raise_for_status()
        pending: list[str] = []
        async for line in response.aiter_lines():
            pending.append(line)
            if line != "":
                continue
            now = time.monotonic()
            for event, data in sse_events(pending):
                if event == "online":
                    arrivals.sse.setdefault(str(data["broadcaster_id"]), now)
            pending = []


async def _send(client: httpx.AsyncClient, channel: str, acked: dict[str, float]) -> None:
    now = datetime.now(UTC)
    body = stream_online_body(channel, f"s-{channel}", now, login=f"live_{channel}")
    message = signed(SECRET.encode(), body, "stream.online", sent_at=now)
    response = await client.post(
        "/eventsub/callback", content=message.body, headers=message.headers()
    )
    if 200 <= response.status_code < 300:
        acked[channel] = time.monotonic()


async def _wait(condition: Any, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.02)
    return bool(condition())


@dataclass
class Rig:
    env: Environment
    web: httpx.AsyncClient
    sessions: Any
    arrivals: Arrivals
    web_pid: int
    worker_pid: int


async def _track(rig: Rig, channels: list[str], standin: Any) -> None:
    for channel in channels:
        standin.add_user(channel, f"live_{channel}", f"Live {channel}")
        standin.titles[channel] = f"stream of {channel}"
    async with rig.sessions.begin() as session:
        await session.execute(_TRACK, {"ids": channels})
        await session.execute(_FOLLOW, {"ids": channels, "user": FOLLOWER, "guild": GUILD})


async def _burst(rig: Rig, channels: list[str], seconds: float) -> tuple[list[float], ...]:
    """All ``channels`` go live evenly over ``seconds``; (pub/sub lags, SSE lags)."""
    acked: dict[str, float] = {}
    start = time.monotonic()
    sends = []
    for i, channel in enumerate(channels):
        await asyncio.sleep(max(0.0, start + i * seconds / len(channels) - time.monotonic()))
        sends.append(asyncio.create_task(_send(rig.web, channel, acked)))
    await asyncio.gather(*sends)
    await _wait(lambda: rig.arrivals.saw(acked), within=30)
    end = time.monotonic()
    return lags(acked, rig.arrivals.pubsub, end), lags(acked, rig.arrivals.sse, end)


async def _idle(rig: Rig, channels: list[str]) -> tuple[list[float], list[float]]:
    """One webhook at a time into an idle pipeline."""
    pubsub: list[float] = []
    sse: list[float] = []
    for channel in channels:
        got_pubsub, got_sse = await _burst(rig, [channel], 0.0)
        pubsub += got_pubsub
        sse += got_sse
    return pubsub, sse


async def _publish_round_trip(redis_url: str, channel: str, count: int) -> list[float]:
    """A bare PUBLISH -> subscriber round trip, one message at a time."""
    redis = Redis.from_url(redis_url)
    times: list[float] = []
    try:
        async with redis.pubsub() as pubsub:
            await pubsub.subscribe(channel)
            await pubsub.get_message(timeout=1)  # the subscribe confirmation
            for _ in range(count):
                began = time.monotonic()
                await redis.publish(channel, b"{}")
                while (await pubsub.get_message(timeout=1)) is None:
                    pass
                times.append(time.monotonic() - began)
    finally:
        await redis.aclose()
    return times


async def _cookie(env: Environment, sessions: Any) -> str:
    from receiver.identity import start_login_session

    settings = env.settings(session_secret=SESSION_SECRET, token_encryption_keys=FERNET_KEY)
    response = Response()
    async with sessions.begin() as session:
        await session.execute(
            text("""INSERT INTO twitch_users (id, login, display_name)
                    VALUES (:id, 'live_fan', 'Live Fan') ON CONFLICT (id) DO NOTHING"""),
            {"id": FOLLOWER},
        )
        await start_login_session(session, settings, FOLLOWER, response)
    return response.headers["set-cookie"].split(";", 1)[0]


@contextlib.asynccontextmanager
async def _rig(env: Environment, twitch_url: str) -> AsyncIterator[Rig]:
    prefix = f"{env.queue_name}:"  # others' runs share this Redis; pub/sub ignores the db
    names = live.Names.of(env.settings(live_channel_prefix=prefix))
    process_env = env.process_env(
        TWITCH_CLIENT_ID="bench-client-id",
        TWITCH_CLIENT_SECRET="bench-client-secret",
        TWITCH_API_BASE=f"{twitch_url}/helix",
        TWITCH_AUTH_BASE=f"{twitch_url}/oauth2",
        TOKEN_ENCRYPTION_KEYS=FERNET_KEY,
        SESSION_SECRET=SESSION_SECRET,
        PUBLIC_BASE_URL="http://127.0.0.1:9",
        EVENTSUB_ENSURE_AT_STARTUP="false",
        LIVE_CHANNEL_PREFIX=prefix,
        RECONCILE_INTERVAL_SECONDS="86400",  # no reconciliation in the middle
        WORKER_METRICS_PORT="0",
    )
    engine = create_engine(env.database_url, pool_size=2)
    sessions = create_sessionmaker(engine)
    redis = Redis.from_url(env.redis_url)
    tasks: list[asyncio.Task[None]] = []

    async def subscribers(channel: str) -> int:
        counts = await redis.pubsub_numsub(channel)
        return int(counts[0][1]) if counts else 0

    async with contextlib.AsyncExitStack() as stack:
        try:
            web = uvicorn("receiver.app:from_environment", process_env, "live-web")
            port, web_pid = await asyncio.to_thread(stack.enter_context, web)
            worker = stack.enter_context(process(worker_args(), process_env, "live-worker"))
            deadline = time.monotonic() + 60
            while await subscribers(names.follow) < 1:  # its listener and publisher are up
                if time.monotonic() > deadline or worker.poll() is not None:
                    raise RuntimeError("the worker did not start; see bench/results/logs")
                await asyncio.sleep(0.1)
            client = await stack.enter_async_context(
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30)
            )
            arrivals = Arrivals()
            cookie = await _cookie(env, sessions)
            tasks.append(asyncio.create_task(_listen_pubsub(redis, names.online, arrivals)))
            tasks.append(asyncio.create_task(_listen_sse(client, cookie, arrivals)))
            deadline = time.monotonic() + 30
            while await subscribers(names.online) < 2:  # ours and the web process's hub
                if time.monotonic() > deadline or any(t.done() for t in tasks):
                    raise RuntimeError("the listeners did not start")
                await asyncio.sleep(0.05)
            yield Rig(env, client, sessions, arrivals, web_pid, worker.pid)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            async with sessions.begin() as session:  # later sections track nothing of ours
                await session.execute(
                    text("DELETE FROM follows WHERE follower_id IN (:u, :g)"),
                    {"u": FOLLOWER, "g": GUILD},
                )
            await redis.aclose()
            await engine.dispose()


async def _section(env: Environment, count: int, seconds: float, repetitions: int) -> list[Row]:
    from streamfold.twitch_local import TwitchStandin

    standin = TwitchStandin(client_id="bench-client-id", client_secret="bench-client-secret")
    base = 7_000_000
    idle_n = 3 if count < 1000 else 5
    results: dict[str, list[float]] = {k: [] for k in ("p50", "p99", "s50", "s99", "i", "j", "o")}
    unseen = 0
    messages = 0
    web_cpu: list[float] = []
    worker_cpu: list[float] = []
    async with serve(standin.app, lifespan="off") as twitch_url, _rig(env, twitch_url) as rig:
        warm = [str(base + 1_000_000 + i) for i in range(3)]
        await _track(rig, warm, standin)
        await _idle(rig, warm)  # warm-up: connections, app token, the hub's subscription
        for rep in range(repetitions):
            first = base + rep * 10_000
            idle = [str(first + count + i) for i in range(idle_n)]
            burst = [str(first + i) for i in range(count)]
            await _track(rig, idle + burst, standin)
            idle_pubsub, idle_sse = await _idle(rig, idle)
            results["i"].append(percentile(idle_pubsub, 50))
            results["j"].append(percentile(idle_sse, 50))
            before = cpu_seconds(rig.web_pid), cpu_seconds(rig.worker_pid), rig.arrivals.messages
            pubsub, sse = await _burst(rig, burst, seconds)
            web_cpu.append((cpu_seconds(rig.web_pid) - before[0]) / seconds)
            worker_cpu.append((cpu_seconds(rig.worker_pid) - before[1]) / seconds)
            messages += rig.arrivals.messages - before[2]
            unseen += sum(
                1 for c in burst if not (c in rig.arrivals.pubsub and c in rig.arrivals.sse)
            )
            results["p50"].append(percentile(pubsub, 50))
            results["p99"].append(percentile(pubsub, 99))
            results["s50"].append(percentile(sse, 50))
            results["s99"].append(percentile(sse, 99))
            async with rig.sessions() as session:
                wait = await session.scalar(_OUTBOX_WAIT, {"ids": burst})
            results["o"].append(float(wait or 0.0))
    round_trip = await _publish_round_trip(env.redis_url, f"{env.queue_name}:bench-echo", 200)
    idle_pubsub_floor = sorted(results["i"])[len(results["i"]) // 2]
    idle_sse_floor = sorted(results["j"])[len(results["j"]) // 2]
    load = f"{count:,} channels live in {seconds:.0f} s"
    note = (
        f"1 web + 1 worker, LIVE_BATCH_SECONDS 1; {messages / repetitions:.0f} messages per "
        f"run; never seen: {unseen}; CPU (share of one core, median): web "
        f"{sorted(web_cpu)[len(web_cpu) // 2]:.2f}, worker "
        f"{sorted(worker_cpu)[len(worker_cpu) // 2]:.2f}"
    )
    rows = [
        Row("live", f"2xx -> streams.online p50 ({load})", "s", results["p50"],
            idle_pubsub_floor, "idle p50", f"< {TARGET_S:.0f} s", note=note),
        Row("live", "2xx -> streams.online p99", "s", results["p99"], idle_pubsub_floor,
            "idle p50"),
        Row("live", f"2xx -> SSE event p50 ({load})", "s", results["s50"], idle_sse_floor,
            "idle p50", f"< {TARGET_S:.0f} s"),
        Row("live", "2xx -> SSE event p99", "s", results["s99"], idle_sse_floor, "idle p50"),
        Row("live", "of which committed -> published p50 (outbox)", "s", results["o"],
            note="the batch window's share: the rest is receive, queue, fold, deliver"),
        Row("live", "idle lag p50, streams.online (baseline)", "s", results["i"]),
        Row("live", "idle lag p50, SSE (baseline)", "s", results["j"]),
        Row("live", "Redis PUBLISH -> subscriber p50 (for scale)", "ms",
            [percentile(round_trip, 50) * 1000]),
    ]  # fmt: skip
    for row in (rows[0], rows[2]):
        row.met = (row.median or 99) < TARGET_S and unseen == 0
    return rows


def run(env: Environment, *, quick: bool, repetitions: int) -> list[Row]:
    count, seconds = (100, 6.0) if quick else (1_000, 60.0)
    return asyncio.run(_section(env, count, seconds, repetitions))
