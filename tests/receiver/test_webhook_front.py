"""The webhook is served in front of Starlette's middleware (receiver/webhook.py): over
real HTTP it must still do what that middleware does for every other route. Its
request id, its timing by route and status, JSON for every refusal and failure, and
the router's answers for other methods and spellings of its path."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import datetime

import httpx
import pytest
import structlog
from starlette.applications import Starlette
from structlog.testing import capture_logs

from receiver.app import create_app
from schema.metrics import REGISTRY
from schema.settings import Settings
from streamfold.eventsub_sender import Message, chat_message_body, signed
from tests.conftest import SECRET, Clock, eventually, serve

DURATIONS = "streamfold_http_request_duration_seconds_count"
CALLBACK = "/eventsub/callback"


def timed(status: str) -> float:
    return REGISTRY.get_sample_value(DURATIONS, {"route": CALLBACK, "status": status}) or 0.0


def chat(clock: Clock, chat_id: str = "front-chat-1") -> Message:
    body = chat_message_body("1337", "42", chat_id)
    return signed(SECRET.encode(), body, "channel.chat.message", sent_at=clock.now)


@pytest.fixture
async def web(settings: Settings, clock: Clock) -> AsyncIterator[tuple[str, Starlette]]:
    app = create_app(settings, clock=clock)
    async with serve(app) as base:
        yield base, app


async def test_refusals_are_json_carry_one_request_id_and_are_timed_by_status(
    receiver: httpx.AsyncClient, clock: Clock
) -> None:
    message = chat(clock)
    before = timed("403")
    forged = await receiver.post(CALLBACK, content=message.body + b" ", headers=message.headers())
    assert forged.status_code == 403
    assert forged.headers["content-type"] == "application/json"
    assert forged.json()["error"] == "invalid_signature"
    assert len(forged.headers.get_list("x-request-id")) == 1
    assert timed("403") == before + 1
    missing = await receiver.post(CALLBACK, content=b"{}", headers={"X-Request-Id": "r-1"})
    assert missing.status_code == 400
    assert missing.json()["error"] == "malformed_headers"
    assert missing.headers.get_list("x-request-id") == ["r-1"]


async def test_a_failure_on_the_webhook_is_a_logged_json_500_and_the_next_request_is_served(
    settings: Settings, clock: Clock
) -> None:
    broken = True

    def flaky_clock() -> datetime:
        if broken:
            raise RuntimeError("clock unavailable")
        return clock.now

    message = chat(clock)
    before = timed("500")
    async with (
        serve(create_app(settings, clock=flaky_clock)) as base,
        httpx.AsyncClient(base_url=base, timeout=10) as client,
    ):
        headers = {**message.headers(), "X-Request-Id": "req-broken-1"}
        with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as lines:
            failed = await client.post(CALLBACK, content=message.body, headers=headers)
        assert failed.status_code == 500
        assert failed.json() == {
            "error": "internal_error",
            "detail": "unexpected error; it has been logged",
        }
        assert failed.headers["x-request-id"] == "req-broken-1"
        [logged] = [line for line in lines if line["event"] == "request.failed"]
        assert logged["request_id"] == "req-broken-1"
        assert logged["path"] == CALLBACK
        assert timed("500") == before + 1
        broken = False
        retried = await client.post(CALLBACK, content=message.body, headers=message.headers())
        assert retried.status_code == 204
        assert "content-type" not in retried.headers
        assert retried.content == b""


async def test_other_methods_and_spellings_of_the_path_go_through_the_router(
    receiver: httpx.AsyncClient,
) -> None:
    for method in ("GET", "PUT", "DELETE"):
        response = await receiver.request(method, CALLBACK)
        assert response.status_code == 405, method
        assert response.json()["error"] == "method_not_allowed"
        assert response.headers["allow"] == "POST"
        assert response.headers["x-request-id"]
    for path in (CALLBACK + "/", "/eventsub/callbackx", "/EVENTSUB/callback"):
        response = await receiver.post(path, content=b"{}")
        assert response.status_code == 404, path
        assert response.json()["error"] == "not_found"


async def test_a_body_in_many_chunks_is_verified_whole(
    receiver: httpx.AsyncClient, clock: Clock
) -> None:
    message = chat(clock, "front-chunked-1")
    body = message.body

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 100):
            yield body[start : start + 100]
            await asyncio.sleep(0)

    headers = {k: v for k, v in message.headers().items() if k.lower() != "content-length"}
    response = await receiver.post(CALLBACK, content=chunks(), headers=headers)
    assert response.status_code == 204


async def test_a_client_that_leaves_mid_webhook_body_is_not_logged_as_an_error(
    web: tuple[str, Starlette], clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    base, app = web
    message = chat(clock, "front-gone-1")
    head = "".join(f"{k}: {v}\r\n" for k, v in message.headers().items())
    host, port = base.removeprefix("http://").split(":")
    with capture_logs() as logged, caplog.at_level(logging.ERROR):
        _, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            f"POST {CALLBACK} HTTP/1.1\r\nHost: x\r\n{head}"
            f"Content-Length: {len(message.body)}\r\n\r\n".encode()
            + message.body[:10]
        )
        await writer.drain()
        await eventually(lambda: app.state.ctx.body_deadlines.reading() == 1, within=10)
        writer.close()
        await eventually(lambda: app.state.ctx.body_deadlines.reading() == 0, within=10)
    assert [e for e in logged if e["log_level"] in ("error", "critical")] == []
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
