"""Request heads are bounded in size and time by uvicorn as the product runs it
(``streamfold.serving.serve``, the Procfile's settings), over raw sockets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from receiver import http_limits
from tests.conftest import serve


async def _echo(request: Request) -> Response:
    body = await request.body()
    return PlainTextResponse(f"{len(request.headers)} headers, {len(body)} bytes")


@pytest.fixture
async def base() -> AsyncIterator[tuple[str, int]]:
    app = Starlette(routes=[Route("/", _echo, methods=["GET", "POST"])])
    async with serve(app, lifespan="off") as url:
        host, port = url.removeprefix("http://").split(":")
        yield host, int(port)


async def _status(reader: asyncio.StreamReader) -> int:
    async with asyncio.timeout(15):
        line = await reader.readline()
    return int(line.split()[1])


async def _send_until_answered(
    address: tuple[str, int], start: bytes, filler: bytes, total: int
) -> tuple[int, int]:
    """Send ``start`` then ``filler`` until ``total`` bytes or the server's answer;
    return (status, bytes sent by then)."""
    reader, writer = await asyncio.open_connection(*address)
    answer = asyncio.create_task(_status(reader))
    sent = 0
    try:
        writer.write(start)
        sent += len(start)
        while sent < total and not answer.done():
            writer.write(filler)
            await writer.drain()
            sent += len(filler)
    except ConnectionError:
        pass
    status = await answer
    writer.close()
    return status, sent


async def test_twenty_mebibytes_of_header_lines_are_refused_with_431(
    base: tuple[str, int],
) -> None:
    line = b"X-Filler: " + b"a" * 90 + b"\r\n"
    status, sent = await _send_until_answered(
        base, b"GET / HTTP/1.1\r\nHost: x\r\n", line * 100, 20 * 1024 * 1024
    )
    assert status == 431
    assert sent < 20 * 1024 * 1024  # answered while the client was still sending


async def test_a_sixteen_mebibyte_header_is_refused_with_431(base: tuple[str, int]) -> None:
    status, sent = await _send_until_answered(
        base, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ", b"a" * 65536, 16 * 1024 * 1024
    )
    assert status == 431
    assert sent < 16 * 1024 * 1024


async def test_a_trickled_head_is_cut_off_with_408(
    base: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http_limits, "HEAD_TIMEOUT_SECONDS", 0.5)
    reader, writer = await asyncio.open_connection(*base)
    began = time.monotonic()
    head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000

    async def trickle() -> None:
        for byte in head:  # one byte every 50 ms: the client's pace, not a wait of ours
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.05)

    trickling = asyncio.create_task(trickle())
    try:
        assert await _status(reader) == 408
    finally:
        trickling.cancel()
        writer.close()
    assert time.monotonic() - began < 5


async def test_a_connection_that_never_sends_a_head_is_closed(
    base: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http_limits, "HEAD_TIMEOUT_SECONDS", 0.5)
    reader, writer = await asyncio.open_connection(*base)
    assert await _status(reader) == 408
    async with asyncio.timeout(5):
        assert await reader.read() is not None
    assert reader.at_eof()
    writer.close()


async def test_ordinary_requests_and_keep_alive_are_untouched(
    base: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http_limits, "HEAD_TIMEOUT_SECONDS", 0.5)
    reader, writer = await asyncio.open_connection(*base)
    cookies = "".join(f"X-H{i}: {'c' * 200}\r\n" for i in range(100))  # 20 KiB of headers
    body = b"b" * 60_000  # a body in the same packets as its head is not head
    writer.write(
        f"POST / HTTP/1.1\r\nHost: x\r\n{cookies}Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    await writer.drain()
    assert await _status(reader) == 200
    async with asyncio.timeout(5):
        await reader.readuntil(b"60000 bytes")
    # Idle between requests is the keep-alive's business (30 s), not the head bound.
    await asyncio.sleep(1.0)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    assert await _status(reader) == 200
    writer.close()
