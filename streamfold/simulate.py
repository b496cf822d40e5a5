"""``streamfold simulate``: a realistic, correctly signed EventSub stream to a receiver.

Several channels go live (their streams started a while ago), chat arrives with
duplicates, retries and a message delivered by two subscriptions, a forgery and a stale
replay are tried (and must be refused), then every channel goes offline. Chat is spread
over the last minutes because the receiver refuses anything older than ten minutes; if
an hour boundary falls in that span, the hourly rows show the split.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import text

from receiver.reads import queries
from schema.db import create_engine, create_sessionmaker
from schema.settings import Settings
from streamfold.eventsub_sender import (
    Message,
    chat_message_body,
    signed,
    stream_offline_body,
    stream_online_body,
)
from streamfold.show import render


@dataclass
class Expected:
    stream_id: str
    started_at: datetime
    ended_at: datetime | None = None
    chat_ids: set[str] = field(default_factory=set)
    chatters: set[str] = field(default_factory=set)
    per_hour: Counter[datetime] = field(default_factory=Counter)
    chatters_per_hour: dict[datetime, set[str]] = field(default_factory=lambda: defaultdict(set))


@dataclass
class Plan:
    deliveries: list[tuple[Message, int]]  # (message, expected status); repeated = retry
    expected: dict[str, Expected]
    refused: list[tuple[Message, int]]


def build_plan(
    secret: bytes,
    *,
    channels: int,
    messages: int,
    chatters: int,
    now: datetime,
    seed: int | None = None,
    not_before: dict[str, datetime] | None = None,
) -> Plan:
    """``not_before``: per channel, when its last known stream ended; a new stream cannot
    start before the previous one ended, so a re-run starts its streams after that."""
    run = int(now.timestamp())
    rng = random.Random(run if seed is None else seed)
    expected: dict[str, Expected] = {}
    deliveries: list[tuple[Message, int]] = []
    channel_ids = [str(1001 + i) for i in range(channels)]
    chat_start = now - timedelta(minutes=8, seconds=30)
    for i, broadcaster in enumerate(channel_ids):
        started = (now - timedelta(minutes=70 + 10 * i)).replace(microsecond=0)
        previous_end = (not_before or {}).get(broadcaster)
        if previous_end is not None and started <= previous_end:
            started = (previous_end + timedelta(seconds=1)).replace(microsecond=0)
        stream_id = f"{broadcaster}{run}"  # a new stream each run
        expected[broadcaster] = Expected(stream_id=stream_id, started_at=started)
        body = stream_online_body(broadcaster, stream_id, started)
        deliveries.append((signed(secret, body, "stream.online", sent_at=chat_start), 204))
    end = now - timedelta(seconds=5)
    for n in range(messages):
        broadcaster = rng.choice(channel_ids)
        chatter = f"{broadcaster}-viewer-{rng.randrange(chatters)}"
        chat_from = max(chat_start, expected[broadcaster].started_at + timedelta(seconds=1))
        at = chat_from + (end - timedelta(seconds=5) - chat_from) * (n / messages)
        chat_id = str(uuid.UUID(int=rng.getrandbits(128)))
        body = chat_message_body(
            broadcaster, chatter.split("-")[-1] + broadcaster, chat_id, text=f"message {n}"
        )
        message = signed(secret, body, "channel.chat.message", sent_at=at)
        deliveries.append((message, 204))
        if rng.random() < 0.05:  # Twitch was unsure it arrived: same message id again
            deliveries.append((message, 204))
        if rng.random() < 0.02:  # a second subscription delivers the same chat message
            deliveries.append((signed(secret, body, "channel.chat.message", sent_at=at), 204))
        e = expected[broadcaster]
        hour = at.replace(minute=0, second=0, microsecond=0)
        e.chat_ids.add(chat_id)
        e.chatters.add(chatter.split("-")[-1] + broadcaster)
        e.per_hour[hour] += 1
        e.chatters_per_hour[hour].add(chatter.split("-")[-1] + broadcaster)
    for broadcaster in channel_ids:
        message = signed(secret, stream_offline_body(broadcaster), "stream.offline", sent_at=end)
        deliveries.append((message, 204))
        expected[broadcaster].ended_at = message_time(message)
    forged = signed(
        b"not-the-real-secret",
        chat_message_body(channel_ids[0], "x", "forged"),
        "channel.chat.message",
        sent_at=now,
    )
    stale = signed(
        secret,
        chat_message_body(channel_ids[0], "x", "stale"),
        "channel.chat.message",
        sent_at=now - timedelta(minutes=11),
    )
    return Plan(deliveries, expected, [(forged, 403), (stale, 400)])


def message_time(message: Message) -> datetime:
    return (
        datetime.fromisoformat(message.timestamp)
        .astimezone(UTC)
        .replace(microsecond=datetime.fromisoformat(message.timestamp).microsecond)
    )


Step = Callable[[], Awaitable[None]]


async def send(
    url: str,
    plan: Plan,
    concurrency: int = 16,
    *,
    after_online: Step | None = None,
    before_offline: Step | None = None,
) -> Counter[int]:
    """``after_online``/``before_offline``: what else must happen while the streams are
    live (the local Twitch listing them in Helix, reconciliation sampling viewers)."""
    statuses: Counter[int] = Counter()
    limit = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=10) as client:

        async def post(message: Message, want: int, retry: int) -> None:
            async with limit:
                for attempt in range(5):
                    response = await client.post(
                        url, content=message.body, headers=message.headers(retry + attempt)
                    )
                    if response.status_code != 503:  # 503: queue busy, Twitch would retry
                        break
                    await asyncio.sleep(0.5 * (attempt + 1))
                statuses[response.status_code] += 1
                if response.status_code != want:
                    print(
                        f"  unexpected {response.status_code} for {message.message_id}: "
                        f"{response.text[:200]}"
                    )

        # Online first, then chat concurrently, then offline: the order a live stream has.
        seen: Counter[str] = Counter()
        online = [d for d in plan.deliveries if d[0].subscription_type == "stream.online"]
        offline = [d for d in plan.deliveries if d[0].subscription_type == "stream.offline"]
        chat = [d for d in plan.deliveries if d[0].subscription_type == "channel.chat.message"]
        for group in (online, chat, offline, plan.refused):
            if group is chat and after_online is not None:
                await after_online()
            if group is offline and before_offline is not None:
                await before_offline()
            tasks = []
            for message, want in group:
                tasks.append(post(message, want, seen[message.message_id]))
                seen[message.message_id] += 1
            await asyncio.gather(*tasks)
    return statuses


def describe(plan: Plan) -> str:
    lines = ["What the aggregates should show:"]
    for broadcaster, e in plan.expected.items():
        duration = int((e.ended_at - e.started_at).total_seconds()) if e.ended_at else None
        lines.append(
            f"  channel {broadcaster}: 1 session {e.started_at:%H:%M:%S}Z to "
            f"{e.ended_at:%H:%M:%S}Z ({duration} s), {len(e.chat_ids)} chat messages, "
            f"{len(e.chatters)} unique chatters"
        )
        for hour in sorted(e.per_hour):
            lines.append(
                f"    hour {hour:%Y-%m-%d %H}:00Z: {e.per_hour[hour]} messages, "
                f"{len(e.chatters_per_hour[hour])} chatters"
            )
    return "\n".join(lines)


async def wait_and_compare(settings: Settings, plan: Plan, wait_seconds: float = 60.0) -> int:
    """Wait for the workers to fold everything, then print ``show`` for each channel and
    say whether every figure matches what was sent."""
    engine = create_engine(settings.database_url or "", pool_size=1)
    sessions = create_sessionmaker(engine)
    now = datetime.now(UTC)
    since = min(e.started_at for e in plan.expected.values()) - timedelta(hours=1)
    deadline = asyncio.get_running_loop().time() + wait_seconds
    try:
        while True:
            problems = []
            async with sessions() as session:
                for broadcaster, e in plan.expected.items():
                    got = await queries.sessions(session, broadcaster, since, now, now=now)
                    want = [(e.started_at, e.ended_at, len(e.chat_ids), len(e.chatters))]
                    have = [
                        (s.started_at, s.ended_at, s.chat_messages, s.unique_chatters)
                        for s in got
                        if s.id == e.stream_id
                    ]
                    if have != want:
                        problems.append(f"channel {broadcaster}: expected {want}, have {have}")
            if not problems or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.5)
        async with sessions() as session:
            for broadcaster in plan.expected:
                print()
                print(
                    await render(
                        session, broadcaster, since, now + timedelta(hours=1), datetime.now(UTC)
                    )
                )
    finally:
        await engine.dispose()
    if problems:
        print("\nMISMATCH after waiting " + f"{wait_seconds:.0f} s:\n  " + "\n  ".join(problems))
        return 1
    print("\nEvery session, chat count and unique-chatter figure matches what was sent.")
    return 0


async def last_ends(settings: Settings, channels: int) -> dict[str, datetime]:
    """When each simulated channel's latest session ended (or started, if still open)."""
    engine = create_engine(settings.database_url or "", pool_size=1)
    try:
        async with create_sessionmaker(engine)() as session:
            rows = await session.execute(
                text(
                    "SELECT broadcaster_id, max(t) FROM ("
                    " SELECT broadcaster_id, coalesce(ended_at, started_at) AS t"
                    " FROM stream_sessions"
                    " UNION ALL SELECT broadcaster_id, at FROM stream_offlines) AS x "
                    "WHERE broadcaster_id = ANY(:ids) GROUP BY 1"
                ),
                {"ids": [str(1001 + i) for i in range(channels)]},
            )
            return {b: t for b, t in rows.all()}
    finally:
        await engine.dispose()
