"""A load generator for the receiver: raw HTTP/1.1 over kept-alive connections.

Runs in its own process (``python -m bench.loadgen CONFIG_JSON``) so its CPU is not the
server's. Every request is built and signed before the clock starts; sending one is a
single ``write`` and reading the answer a scan for the end of the headers, so the
figures measure the server, not an HTTP client library (httpx costs more per request
than the receiver does). Prints one JSON object with the results.

Modes: ``closed`` keeps ``concurrency`` requests in flight for ``seconds``; ``rate``
sends ``rate`` requests per second on a fixed schedule (an open loop, as Twitch does)
and records when each 2xx arrived, for the end-to-end lag.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from receiver.signature import sign
from streamfold.eventsub_sender import chat_message_body, rfc3339

CHAT = "channel.chat.message"


@dataclass(frozen=True)
class Request:
    message_id: str
    raw: bytes


_TEMPLATE = chat_message_body("{B}", "{C}", "{M}")


def chat_body(index: int, channels: int, chatters: int) -> bytes:
    """The ``index``-th chat message of a stream spread evenly over ``channels``
    channels (ids from 100000), from a random one of ``chatters`` chatters."""
    broadcaster = str(100_000 + index % channels).encode()
    chatter = str(5_000_000 + random.randrange(chatters)).encode()
    chat_id = str(uuid.uuid4()).encode()
    return _TEMPLATE.replace(b"{B}", broadcaster).replace(b"{C}", chatter).replace(b"{M}", chat_id)


def build(secret: bytes, count: int, channels: int, chatters: int, port: int) -> list[Request]:
    """``count`` signed chat notifications spread over ``channels`` channels."""
    timestamp = rfc3339(datetime.now(UTC))
    requests = []
    for i in range(count):
        body = chat_body(i, channels, chatters)
        message_id = str(uuid.uuid4())
        head = (
            f"POST /eventsub/callback HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"Twitch-Eventsub-Message-Id: {message_id}\r\n"
            "Twitch-Eventsub-Message-Retry: 0\r\n"
            "Twitch-Eventsub-Message-Type: notification\r\n"
            f"Twitch-Eventsub-Message-Signature: {sign(secret, message_id, timestamp, body)}\r\n"
            f"Twitch-Eventsub-Message-Timestamp: {timestamp}\r\n"
            f"Twitch-Eventsub-Subscription-Type: {CHAT}\r\n"
            "Twitch-Eventsub-Subscription-Version: 1\r\n\r\n"
        )
        requests.append(Request(message_id, head.encode() + body))
    return requests


class Connection(asyncio.Protocol):
    """One kept-alive connection with at most one request in flight."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.waiter: asyncio.Future[int] | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.waiter is None:
            return
        head = bytes(self.buffer[:end]).lower()
        length = 0
        at = head.find(b"content-length:")
        if at >= 0:
            stop = head.find(b"\r\n", at)
            length = int(head[at + 15 : stop if stop >= 0 else None])
        if len(self.buffer) < end + 4 + length:
            return
        status = int(head[9:12])
        del self.buffer[: end + 4 + length]
        waiter, self.waiter = self.waiter, None
        waiter.set_result(status)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed"))

    async def send(self, raw: bytes) -> int:
        self.waiter = asyncio.get_running_loop().create_future()
        assert self.transport is not None
        self.transport.write(raw)
        return await self.waiter


async def run(config: dict[str, object]) -> dict[str, object]:
    secret = str(config["secret"]).encode()
    port = int(config["port"])  # type: ignore[call-overload]
    seconds = float(config["seconds"])  # type: ignore[arg-type]
    concurrency = int(config.get("concurrency", 64))  # type: ignore[call-overload]
    rate = float(config.get("rate", 0))  # type: ignore[arg-type]
    count = int(config["count"])  # type: ignore[call-overload]
    requests = build(
        secret,
        count,
        int(config.get("channels", 100)),  # type: ignore[call-overload]
        int(config.get("chatters", 5000)),  # type: ignore[call-overload]
        port,
    )
    loop = asyncio.get_running_loop()
    conns = [
        (await loop.create_connection(Connection, "127.0.0.1", port))[1] for _ in range(concurrency)
    ]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    acks: list[tuple[str, float]] = []
    next_index = 0
    start = time.perf_counter()
    deadline = start + seconds

    async def drive(conn: Connection) -> None:
        nonlocal next_index
        while next_index < len(requests):
            index = next_index
            next_index += 1
            if rate:
                due = start + index / rate
                if due >= deadline:
                    return
                if due > time.perf_counter():
                    await asyncio.sleep(due - time.perf_counter())
            elif time.perf_counter() >= deadline:
                return
            request = requests[index]
            sent = time.perf_counter()
            status = await conn.send(request.raw)
            done = time.perf_counter()
            latencies.append(done - sent)
            statuses[status] = statuses.get(status, 0) + 1
            if rate and 200 <= status < 300:
                acks.append((request.message_id, time.time()))

    await asyncio.gather(*(drive(c) for c in conns))
    elapsed = time.perf_counter() - start
    for conn in conns:
        if conn.transport is not None:
            conn.transport.close()
    accepted = sum(n for s, n in statuses.items() if 200 <= s < 300)
    result: dict[str, object] = {
        "requests": len(latencies),
        "accepted": accepted,
        "statuses": {str(k): v for k, v in statuses.items()},
        "seconds": elapsed,
        "exhausted": next_index >= len(requests),
        "latencies": sorted(latencies),
    }
    if rate:
        result["acks"] = acks
    return result


def main() -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        pass
    config = json.loads(sys.argv[1])
    result = asyncio.run(run(config))
    with open(str(config["out"]), "w") as out:
        json.dump(result, out)


if __name__ == "__main__":
    main()
