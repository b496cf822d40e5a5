"""Reading a webhook's headers, and any request's raw body bounded in size and in time.

uvicorn has no body-read timeout of its own (RELIABILITY.md test 15), so a client that
sends headers and then trickles or withholds the body must be cut off here. Every route
that takes a body reads it with ``read_bounded`` before it touches the database, so a
slow client holds a socket, never a pooled connection. A timer per
request (``asyncio.timeout``) cost about a sixth of the receiver's per-request CPU in a
profile; one sweeper per process that cancels the few readers past their deadline costs
a dict insert and delete per request instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.types import Receive

from schema.errors import BadRequest, MalformedHeaders, PayloadTooLarge, RequestTimeout

# Real notifications are 1-2 KiB; Standard Webhooks recommends staying under 20 KiB.
MAX_BODY_BYTES = 64 * 1024
BODY_READ_TIMEOUT_SECONDS = 10.0
MAX_MESSAGE_ID_LENGTH = 128
_PREFIX = b"twitch-eventsub-"


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs twice as much
class Headers:
    message_id: str
    timestamp: str
    signature: str
    message_type: str
    subscription_type: str | None
    retry: str | None
    content_length: str | None


def read_headers(raw: Iterable[tuple[bytes, bytes]]) -> Headers:
    """Twitch's headers, each at most once, in one pass over the raw header list of the
    ASGI scope (ASGI servers give names lower-cased)."""
    found: dict[bytes, str] = {}
    content_length: str | None = None
    for name, value in raw:
        if name.startswith(_PREFIX):
            if name in found:
                raise MalformedHeaders(f"header {name.decode('latin-1')} given more than once")
            found[name] = value.decode("latin-1")
        elif name == b"content-length":
            content_length = value.decode("latin-1")

    message_id = _required(found, b"message-id")
    if (
        not 0 < len(message_id) <= MAX_MESSAGE_ID_LENGTH
        or not message_id.isascii()
        or not message_id.isprintable()
    ):
        raise MalformedHeaders(
            "Twitch-Eventsub-Message-Id must be 1-128 printable ASCII characters"
        )
    return Headers(
        message_id=message_id,
        timestamp=_required(found, b"message-timestamp"),
        signature=_required(found, b"message-signature"),
        message_type=_required(found, b"message-type"),
        subscription_type=found.get(b"twitch-eventsub-subscription-type"),
        retry=found.get(b"twitch-eventsub-message-retry"),
        content_length=content_length,
    )


def _required(found: dict[bytes, str], suffix: bytes) -> str:
    value = found.get(_PREFIX + suffix)
    if value is None:
        raise MalformedHeaders(f"missing header Twitch-Eventsub-{suffix.decode().title()}")
    return value


class BodyDeadlines:
    """Cancels body reads that run past ``seconds``; one sweeper task per process."""

    def __init__(self, seconds: float = BODY_READ_TIMEOUT_SECONDS) -> None:
        self.seconds = seconds
        self._reading: dict[asyncio.Task[object], float] = {}
        self._expired: set[asyncio.Task[object]] = set()
        self._sweeper: asyncio.Task[None] | None = None

    def start(self, task: asyncio.Task[object]) -> None:
        """``task`` begins a read; it must call ``finish`` however the read ends. (Two
        calls instead of a context manager: this runs on every webhook request.)"""
        loop = asyncio.get_running_loop()
        self._reading[task] = loop.time() + self.seconds
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = loop.create_task(self._sweep())

    def finish(self, task: asyncio.Task[object]) -> None:
        self._reading.pop(task, None)
        self._expired.discard(task)

    def reading(self) -> int:
        """How many body reads are in progress."""
        return len(self._reading)

    def expired(self, task: asyncio.Task[object]) -> bool:
        return task in self._expired

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while self._reading:
            await asyncio.sleep(min(1.0, self.seconds / 4))
            now = loop.time()
            for task, deadline in list(self._reading.items()):
                if deadline < now and task not in self._expired:
                    # The reader is suspended in receive(), its only await while guarded.
                    self._expired.add(task)
                    task.cancel()


async def read_body(receive: Receive, headers: Headers, deadlines: BodyDeadlines) -> bytes:
    """A webhook's body, straight from the ASGI ``receive``: at most ``MAX_BODY_BYTES``
    within the deadline."""
    return await _read(receive, deadlines, MAX_BODY_BYTES, headers.content_length)


async def read_bounded(
    request: Request, deadlines: BodyDeadlines, limit: int, declared: str | None
) -> bytes:
    """A request's raw body, refused with 413 past ``limit`` bytes (declared or
    streamed), 408 past the deadline, and 400 when the client goes away mid-body (its
    problem, not an error of ours). Read from the request's ASGI ``receive``: the
    ``Request``'s own ``body()`` and ``stream()`` have nothing left to read after it."""
    return await _read(request.receive, deadlines, limit, declared)


async def _read(
    receive: Receive, deadlines: BodyDeadlines, limit: int, declared: str | None
) -> bytes:
    if declared is not None:
        if not declared.isascii() or not declared.isdigit():
            raise BadRequest("Content-Length is not a number")
        if len(declared) > 18 or int(declared) > limit:
            raise PayloadTooLarge(f"body larger than {limit} bytes")
    task = asyncio.current_task()
    assert task is not None
    parts: list[bytes] = []
    size = 0
    deadlines.start(task)
    try:
        # As Starlette's Request.stream() reads it, without an async generator.
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "http.request":
                chunk: bytes = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"body larger than {limit} bytes")
                parts.append(chunk)
                if not message.get("more_body", False):
                    break
            elif kind == "http.disconnect":
                raise BadRequest("client disconnected while sending the body")
    except asyncio.CancelledError:
        if not deadlines.expired(task):
            raise
        task.uncancel()
        raise RequestTimeout("body not received in time") from None
    finally:
        deadlines.finish(task)
    return parts[0] if len(parts) == 1 else b"".join(parts)
