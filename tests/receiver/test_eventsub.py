"""The webhook protocol through real HTTP (uvicorn), real Redis and real PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest
from arq.connections import ArqRedis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from receiver.app import create_app
from receiver.body import MAX_BODY_BYTES
from schema.settings import Settings
from streamfold.eventsub_sender import (
    challenge_body,
    chat_message_body,
    revocation_body,
    signed,
    stream_online_body,
)
from tests.conftest import SECRET, Clock, serve

SECRET_BYTES = SECRET.encode()


async def queued_jobs(redis: ArqRedis, settings: Settings) -> int:
    return int(await redis.zcard(settings.queue_name))


async def known_subscription(
    sessions: async_sessionmaker[AsyncSession], sub_id: str, sub_type: str
) -> None:
    """A subscription streamfold created and Twitch enabled."""
    condition = (
        '{"broadcaster_user_id": "1337", "user_id": "9"}'
        if sub_type == "channel.chat.message"
        else '{"broadcaster_user_id": "1337"}'
    )
    async with sessions.begin() as session:
        await session.execute(
            text(
                "INSERT INTO eventsub_subscriptions "
                "(id, type, version, condition, broadcaster_id, status) VALUES "
                "(:id, :type, '1', CAST(:condition AS jsonb), '1337', 'enabled')"
            ),
            {"id": sub_id, "type": sub_type, "condition": condition},
        )


def chat(clock: Clock, **kwargs: object) -> object:
    body = chat_message_body("1337", "42", "chat-1")
    return signed(SECRET_BYTES, body, "channel.chat.message", sent_at=clock.now, **kwargs)  # type: ignore[arg-type]


async def test_signed_notification_is_queued_and_answered_204(
    receiver: httpx.AsyncClient, clock: Clock, redis: ArqRedis, settings: Settings
) -> None:
    message = chat(clock)
    response = await receiver.post(
        "/eventsub/callback", content=message.body, headers=message.headers()
    )
    assert response.status_code == 204
    assert await queued_jobs(redis, settings) == 1


async def test_challenge_is_answered_with_the_exact_bytes_as_text_plain(
    receiver: httpx.AsyncClient, clock: Clock, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with sessions.begin() as session:  # created by us, awaiting its challenge
        await session.execute(
            text("""INSERT INTO eventsub_subscriptions (id, type, version, condition, status)
                    VALUES ('sub-1', 'stream.online', '1', '{"broadcaster_user_id": "1337"}',
                            'webhook_callback_verification_pending')""")
        )
    body = challenge_body(
        "pogchamp-kappa-360noscope-vohiyo",
        "stream.online",
        {"broadcaster_user_id": "1337"},
        sub_id="sub-1",
    )
    message = signed(
        SECRET_BYTES,
        body,
        "stream.online",
        sent_at=clock.now,
        message_type="webhook_callback_verification",
    )
    response = await receiver.post(
        "/eventsub/callback", content=message.body, headers=message.headers()
    )
    assert response.status_code == 200
    assert response.content == b"pogchamp-kappa-360noscope-vohiyo"
    assert response.headers["content-type"].split(";")[0] == "text/plain"
    assert response.headers["content-length"] == str(len(b"pogchamp-kappa-360noscope-vohiyo"))
    async with sessions() as session:
        status = await session.scalar(
            text("SELECT status FROM eventsub_subscriptions WHERE id = 'sub-1'")
        )
    assert status == "enabled"


async def test_challenge_with_a_bad_signature_is_refused(
    receiver: httpx.AsyncClient, clock: Clock
) -> None:
    body = challenge_body("abc", "stream.online", {"broadcaster_user_id": "1337"})
    message = signed(
        b"some-other-secret-value",
        body,
        "stream.online",
        sent_at=clock.now,
        message_type="webhook_callback_verification",
    )
    response = await receiver.post(
        "/eventsub/callback", content=message.body, headers=message.headers()
    )
    assert response.status_code == 403
    assert response.json()["error"] == "invalid_signature"


async def test_revocation_is_acknowledged_and_recorded(
    receiver: httpx.AsyncClient,
    clock: Clock,
    sessions: async_sessionmaker[AsyncSession],
    redis: ArqRedis,
    settings: Settings,
) -> None:
    await known_subscription(sessions, "sub-9", "channel.chat.message")
    body = revocation_body(
        "channel.chat.message",
        {"broadcaster_user_id": "1337", "user_id": "9"},
        "notification_failures_exceeded",
        sub_id="sub-9",
    )
    message = signed(
        SECRET_BYTES, body, "channel.chat.message", sent_at=clock.now, message_type="revocation"
    )
    response = await receiver.post(
        "/eventsub/callback", content=message.body, headers=message.headers()
    )
    assert response.status_code == 204
    async with sessions() as session:
        row = (
            await session.execute(
                text(
                    "SELECT status, revoked_at, broadcaster_id FROM eventsub_subscriptions "
                    "WHERE id = 'sub-9'"
                )
            )
        ).one()
    assert row.status == "notification_failures_exceeded"
    assert row.revoked_at is not None
    assert row.broadcaster_id == "1337"
    assert await queued_jobs(redis, settings) == 0


async def test_forgeries_are_refused_and_never_queued(
    receiver: httpx.AsyncClient, clock: Clock, redis: ArqRedis, settings: Settings
) -> None:
    message = chat(clock)
    good = message.headers()
    tampered = bytearray(message.body)
    tampered[50] ^= 1
    cases: list[tuple[bytes, dict[str, str], int]] = [
        (bytes(tampered), good, 403),
        (message.body, {**good, "Twitch-Eventsub-Message-Signature": "sha256=" + "0" * 64}, 403),
        (
            message.body,
            {**good, "Twitch-Eventsub-Message-Signature": message.signature.upper()},
            403,
        ),
        (message.body, {**good, "Twitch-Eventsub-Message-Id": "another-id"}, 403),
        (message.body, {**good, "Twitch-Eventsub-Message-Signature": ""}, 403),
    ]
    for header in (
        "Twitch-Eventsub-Message-Id",
        "Twitch-Eventsub-Message-Timestamp",
        "Twitch-Eventsub-Message-Signature",
        "Twitch-Eventsub-Message-Type",
    ):
        cases.append((message.body, {k: v for k, v in good.items() if k != header}, 400))
    cases.append((message.body, {**good, "Twitch-Eventsub-Message-Id": "x" * 129}, 400))
    cases.append((message.body, {**good, "Twitch-Eventsub-Message-Id": "café".encode()}, 400))  # type: ignore[dict-item]
    for body, headers, status in cases:
        response = await receiver.post("/eventsub/callback", content=body, headers=headers)
        assert response.status_code == status, (headers, response.text)
        assert set(response.json()) == {"error", "detail"}
    assert await queued_jobs(redis, settings) == 0
    # The receiver is still healthy afterwards.
    response = await receiver.post("/eventsub/callback", content=message.body, headers=good)
    assert response.status_code == 204


async def test_duplicated_header_is_refused(receiver: httpx.AsyncClient, clock: Clock) -> None:
    message = chat(clock)
    headers = [*message.headers().items(), ("Twitch-Eventsub-Message-Id", "second")]
    response = await receiver.post("/eventsub/callback", content=message.body, headers=headers)
    assert response.status_code == 400


async def test_stale_and_future_timestamps_are_refused(
    receiver: httpx.AsyncClient, clock: Clock, redis: ArqRedis, settings: Settings
) -> None:
    for sent_at in (
        clock.now - timedelta(minutes=10, seconds=1),
        clock.now + timedelta(minutes=2, seconds=1),
    ):
        message = signed(
            SECRET_BYTES, chat_message_body("1", "2", "3"), "channel.chat.message", sent_at=sent_at
        )
        response = await receiver.post(
            "/eventsub/callback", content=message.body, headers=message.headers()
        )
        assert response.status_code == 400
        assert response.json()["error"] == "stale_message"
    inside = signed(
        SECRET_BYTES,
        chat_message_body("1", "2", "3"),
        "channel.chat.message",
        sent_at=clock.now - timedelta(minutes=9, seconds=59),
    )
    response = await receiver.post(
        "/eventsub/callback", content=inside.body, headers=inside.headers()
    )
    assert response.status_code == 204
    assert await queued_jobs(redis, settings) == 1


async def test_oversized_bodies_get_413_declared_or_streamed(
    receiver: httpx.AsyncClient, clock: Clock
) -> None:
    message = chat(clock)
    big = b"x" * (MAX_BODY_BYTES + 1)
    response = await receiver.post("/eventsub/callback", content=big, headers=message.headers())
    assert response.status_code == 413

    async def chunks():  # no Content-Length: chunked transfer
        for _ in range(MAX_BODY_BYTES // 1024 + 2):
            yield b"y" * 1024

    response = await receiver.post(
        "/eventsub/callback", content=chunks(), headers=message.headers()
    )
    assert response.status_code == 413


async def test_unknown_subscription_type_is_acknowledged_and_not_queued(
    receiver: httpx.AsyncClient, clock: Clock, redis: ArqRedis, settings: Settings
) -> None:
    message = signed(
        SECRET_BYTES,
        b'{"subscription":{"type":"channel.follow","status":"enabled"},"event":{}}',
        "channel.follow",
        sent_at=clock.now,
    )
    response = await receiver.post(
        "/eventsub/callback", content=message.body, headers=message.headers()
    )
    assert response.status_code == 204
    assert await queued_jobs(redis, settings) == 0


async def test_redis_down_gives_503_and_nothing_accepted(settings: Settings, clock: Clock) -> None:
    # A port nobody listens on: the queue is unreachable.
    from tests.conftest import free_port

    down = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    async with serve(create_app(down, clock=clock)) as base, httpx.AsyncClient(base_url=base) as c:
        message = chat(clock)
        started = asyncio.get_running_loop().time()
        response = await c.post(
            "/eventsub/callback", content=message.body, headers=message.headers()
        )
        elapsed = asyncio.get_running_loop().time() - started
        assert response.status_code == 503
        assert response.json()["error"] == "queue_unavailable"
        assert elapsed < 3  # Twitch waits only a few seconds
        ready = await c.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["redis"] != "ok"


async def test_concurrent_requests_share_jobs_and_all_are_queued(
    receiver: httpx.AsyncClient, clock: Clock, redis: ArqRedis, settings: Settings
) -> None:
    messages = [
        signed(
            SECRET_BYTES,
            chat_message_body("1", "2", f"c{i}"),
            "channel.chat.message",
            sent_at=clock.now,
        )
        for i in range(200)
    ]
    responses = await asyncio.gather(
        *(
            receiver.post("/eventsub/callback", content=m.body, headers=m.headers())
            for m in messages
        )
    )
    assert {r.status_code for r in responses} == {204}
    from schema.jobs import decode_batch

    queued: list[str] = []
    for job_id in await redis.zrange(settings.queue_name, 0, -1):
        job = await redis._get_job_def(job_id, None)  # type: ignore[attr-defined]
        queued += [d.message_id for d in decode_batch(job.args[0])]
    assert sorted(queued) == sorted(m.message_id for m in messages)


@pytest.mark.parametrize("path", ["/healthz", "/nope"])
async def test_other_routes_answer_json(receiver: httpx.AsyncClient, path: str) -> None:
    response = await receiver.get(path)
    assert response.headers["content-type"] == "application/json"


async def test_wrong_method_is_json_405(receiver: httpx.AsyncClient) -> None:
    response = await receiver.get("/eventsub/callback")
    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"


async def test_stream_online_is_accepted(receiver: httpx.AsyncClient, clock: Clock) -> None:
    body = stream_online_body("1337", "9001", clock.now)
    message = signed(SECRET_BYTES, body, "stream.online", sent_at=clock.now)
    response = await receiver.post(
        "/eventsub/callback", content=message.body, headers=message.headers()
    )
    assert response.status_code == 204


async def test_revocation_that_needs_the_queue_gets_503_while_redis_is_down(
    settings: Settings, clock: Clock
) -> None:
    from tests.conftest import free_port

    down = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    body = revocation_body("stream.online", {"broadcaster_user_id": "77"}, "authorization_revoked")
    message = signed(
        SECRET_BYTES, body, "stream.online", sent_at=clock.now, message_type="revocation"
    )
    async with serve(create_app(down, clock=clock)) as base, httpx.AsyncClient(base_url=base) as c:
        response = await c.post(
            "/eventsub/callback", content=message.body, headers=message.headers()
        )
    assert response.status_code == 503  # Twitch retries; the retry finds Redis back
    assert set(response.json()) == {"error", "detail"}


async def test_a_body_that_never_finishes_is_cut_off_with_408(
    settings: Settings, clock: Clock
) -> None:
    from receiver.body import BodyDeadlines

    app = create_app(settings, clock=clock)
    async with serve(app) as base:
        app.state.ctx.body_deadlines = BodyDeadlines(0.5)
        message = chat(clock)
        host, port = base.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        head = "".join(f"{k}: {v}\r\n" for k, v in message.headers().items())
        writer.write(
            f"POST /eventsub/callback HTTP/1.1\r\nHost: x\r\nContent-Length: {len(message.body)}"
            f"\r\n{head}\r\n".encode()
            + message.body[:10]
        )
        await writer.drain()
        async with asyncio.timeout(5):
            status_line = await reader.readline()
        writer.close()
        assert status_line.split()[1] == b"408"
        # Other requests are unaffected.
        async with httpx.AsyncClient(base_url=base) as client:
            ok = await client.post(
                "/eventsub/callback", content=message.body, headers=message.headers()
            )
        assert ok.status_code == 204
