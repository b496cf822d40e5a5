"""Each web request has an id: on its response and on every log line it causes, and the
webhook's lines also name the message and its subscription type."""

from __future__ import annotations

import re

import httpx
import structlog
from structlog.testing import capture_logs

from streamfold.eventsub_sender import signed
from tests.conftest import SECRET, Clock

GENERATED = re.compile(r"[0-9a-f]{32}")


async def test_a_response_carries_a_fresh_request_id(receiver: httpx.AsyncClient) -> None:
    first = await receiver.get("/healthz")
    second = await receiver.get("/healthz")
    assert GENERATED.fullmatch(first.headers["x-request-id"])
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


async def test_an_incoming_request_id_is_echoed(receiver: httpx.AsyncClient) -> None:
    response = await receiver.get("/healthz", headers={"X-Request-Id": "edge-7f3a.1:b"})
    assert response.headers.get_list("x-request-id") == ["edge-7f3a.1:b"]


async def test_an_unsafe_or_overlong_request_id_is_replaced(receiver: httpx.AsyncClient) -> None:
    for bad in ("a" * 129, "two words", 'quote"d', ""):
        response = await receiver.get("/healthz", headers={"X-Request-Id": bad})
        assert GENERATED.fullmatch(response.headers["x-request-id"]), bad


async def test_webhook_log_lines_carry_request_message_and_subscription_type(
    receiver: httpx.AsyncClient, clock: Clock
) -> None:
    message = signed(
        SECRET.encode(),
        b'{"subscription":{"type":"channel.follow","status":"enabled"},"event":{}}',
        "channel.follow",
        sent_at=clock.now,
    )
    headers = {**message.headers(), "X-Request-Id": "req-follow-1"}
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as lines:
        response = await receiver.post("/eventsub/callback", content=message.body, headers=headers)
    assert response.status_code == 204
    assert response.headers["x-request-id"] == "req-follow-1"
    [ignored] = [line for line in lines if line["event"] == "eventsub.ignored_type"]
    assert ignored["request_id"] == "req-follow-1"
    assert ignored["message_id"] == message.message_id
    assert ignored["subscription_type"] == "channel.follow"
    # Nothing stays bound once the request is answered.
    assert "request_id" not in structlog.contextvars.get_contextvars()


async def test_a_refused_webhook_is_logged_with_its_request_and_message(
    receiver: httpx.AsyncClient, clock: Clock
) -> None:
    message = signed(b"not-our-secret", b'{"subscription":{}}', "channel.follow", sent_at=clock.now)
    headers = {**message.headers(), "X-Request-Id": "req-forged-1"}
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as lines:
        response = await receiver.post("/eventsub/callback", content=message.body, headers=headers)
    assert response.status_code == 403
    assert response.headers["x-request-id"] == "req-forged-1"
    [refused] = [line for line in lines if line["event"] == "eventsub.refused"]
    assert (refused["request_id"], refused["message_id"]) == ("req-forged-1", message.message_id)
