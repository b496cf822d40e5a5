"""uvicorn's httptools protocol with a bound on each request head, in size and in time.

httptools has no limit of its own: uvicorn with it accepted 20 MiB of header lines and a
16 MiB header, and a head trickled a byte at a time held its connection as long as the
client liked. h11 bounds the size (``--h11-max-incomplete-event-size``) but not the time,
and costs more CPU per request on the webhook path. So the head is bounded here, where
the bytes arrive, before any ASGI code runs: more than ``MAX_HEAD_BYTES`` before the end
of the headers is a 431, and a head not complete ``HEAD_TIMEOUT_SECONDS`` after its first
byte (or after the connection opened) is a 408; either closes the connection.

The Procfile's web selects it with ``--http receiver.http_limits:BoundedHttpTools``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# Request line and headers together. Twitch's are about 1 KiB, a browser's with our
# cookies under 2 KiB; nginx's default allows 4 x 8 KiB header lines.
MAX_HEAD_BYTES = 32 * 1024
# As long as a body may take (receiver/body.py): a head is far smaller.
HEAD_TIMEOUT_SECONDS = 10.0

# After refusing, input is read and dropped this long before the socket closes: closing
# with unread input makes the kernel send a reset, and the client would lose the answer.
LINGER_SECONDS = 2.0

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}
_CODES = {408: "request_timeout", 431: "headers_too_large"}


class BoundedHttpTools(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # a new connection owes us a head
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # lingering until the close: dropped unparsed
        super().data_received(data)
        if not self._in_head or self.transport.is_closing():
            return
        # Counted after parsing: a chunk that completes the head (with body bytes after
        # it) is not counted at all; one that starts a pipelined head after an earlier
        # body is counted whole, which errs on the side of refusing.
        self._head_bytes += len(data)
        if self._head_bytes > MAX_HEAD_BYTES:
            self._refuse(431, f"request line and headers exceed {MAX_HEAD_BYTES} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def _arm(self) -> None:
        self._in_head = True
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(HEAD_TIMEOUT_SECONDS, self._head_too_slow)

    def _disarm(self) -> None:
        self._in_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            self._refuse(408, f"request head not received within {HEAD_TIMEOUT_SECONDS:g} s")

    def _refuse(self, status: int, detail: str) -> None:
        self._disarm()
        self._refused = True
        if self.cycle is not None and not self.cycle.response_complete:
            # An earlier pipelined response is still being written: no room for ours.
            self.transport.close()
            return
        body = json.dumps({"error": _CODES[status], "detail": detail}).encode()
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (status, _REASONS[status], len(body), body)
        )
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)
