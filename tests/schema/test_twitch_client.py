"""The Twitch client against the stand-in under uvicorn, and against MockTransport for
the failures a real server cannot be made to produce on cue."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import pytest
from redis.asyncio import Redis

from schema.settings import Settings
from schema.twitch import (
    InvalidAccessToken,
    InvalidRefreshToken,
    TwitchClient,
    TwitchRejected,
    TwitchUnavailable,
)
from streamfold.twitch_local import TwitchStandin, challenge_echo_app, point_at
from tests.conftest import serve

CALLBACK = "http://127.0.0.1:9/eventsub/callback"  # nothing listens: verification fails
SUB_SECRET = "subscription-secret-0123"


@pytest.fixture
async def shared_redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    # App tokens cached by earlier stand-ins (a later one may reuse a port) must not leak in.
    stale = [k async for k in client.scan_iter(match="streamfold:twitch:app-token:*")]
    if stale:
        await client.delete(*stale)
    yield client
    await client.aclose()


def _settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "twitch_client_id": "test-client-id",
        "twitch_client_secret": "test-client-secret",
    }
    return Settings(**(values | overrides))


@contextlib.asynccontextmanager
async def _running(standin: TwitchStandin) -> AsyncIterator[Settings]:
    async with serve(standin.app) as url:
        yield point_at(_settings(), url)


async def test_users_and_streams_are_typed_and_streams_ask_for_100_per_page(
    shared_redis: Redis,
) -> None:
    standin = TwitchStandin()
    for n in range(150):
        standin.add_user(str(1000 + n), f"user{n}")
    for n in range(0, 150, 2):
        standin.go_live(str(1000 + n), viewers=n)
    async with _running(standin) as settings, TwitchClient(settings, shared_redis) as twitch:
        streams = await twitch.get_streams([str(1000 + n) for n in range(150)])
        users = await twitch.get_users(ids=["1000", "1001"], logins=["user5"])
    assert len(streams) == 75
    assert {s.user_id for s in streams} == {str(1000 + n) for n in range(0, 150, 2)}
    assert sorted(u.login for u in users) == ["user0", "user1", "user5"]
    # 150 ids: two calls, not eight pages of twenty.
    assert [r[1] for r in standin.requests].count("/helix/streams") == 2


async def test_subscriptions_are_listed_across_pages_created_and_409_adopted(
    shared_redis: Redis,
) -> None:
    standin = TwitchStandin(page_size=2)
    for n in range(5):
        standin.add_user(str(n), f"user{n}")
    async with (
        _running(standin) as settings,
        serve(challenge_echo_app()) as callback_base,
        TwitchClient(settings, shared_redis) as twitch,
    ):
        callback = f"{callback_base}/eventsub/callback"
        created = [
            await twitch.create_subscription(
                "stream.online",
                {"broadcaster_user_id": str(n)},
                callback=callback,
                secret=SUB_SECRET,
            )
            for n in range(5)
        ]
        await standin.settled()
        again = await twitch.create_subscription(
            "stream.online", {"broadcaster_user_id": "3"}, callback=callback, secret=SUB_SECRET
        )
        listed = await twitch.list_subscriptions()
        enabled = await twitch.list_subscriptions(status="enabled")
        assert await twitch.delete_subscription(created[0].subscription.id) is True
        assert await twitch.delete_subscription(created[0].subscription.id) is False
        await standin.settled()
    assert [c.adopted for c in created] == [False] * 5
    assert again.adopted is True
    assert again.subscription.id == created[3].subscription.id
    assert [s.id for s in listed] == [c.subscription.id for c in created]
    assert len(enabled) == 5
    assert created[0].subscription.status == "webhook_callback_verification_pending"
    assert created[0].subscription.transport.callback == callback


async def test_a_429_waits_until_the_reset_before_retrying(shared_redis: Redis) -> None:
    standin = TwitchStandin()
    standin.add_user("1", "one")
    async with _running(standin) as settings, TwitchClient(settings, shared_redis) as twitch:
        await twitch.get_users(ids=["1"])  # fetch the app token first
        standin.fail("/helix/users", 429, reset_in=1.0)
        users = await twitch.get_users(ids=["1"])
    assert [u.id for u in users] == ["1"]
    times = [t for _, path, t in standin.requests if path == "/helix/users"]
    assert len(times) == 3
    assert twitch.transport.rate_limited_waits == 1
    # The injected 429 said: full again at the next whole second after now + 1 s.
    reset = int(times[1] + 1.0) + 1
    assert times[2] >= reset - 0.001


async def test_an_empty_bucket_is_waited_out_and_every_call_still_succeeds(
    shared_redis: Redis,
) -> None:
    standin = TwitchStandin(points_per_minute=3, bucket_window=1.0)
    standin.add_user("1", "one")
    async with _running(standin) as settings, TwitchClient(settings, shared_redis) as twitch:
        await twitch.get_users(ids=["1"])
        started = time.monotonic()
        for _ in range(8):
            assert [u.id for u in await twitch.get_users(ids=["1"])] == ["1"]
        elapsed = time.monotonic() - started
        limit = twitch.transport.rate_limit
    assert limit is not None
    assert limit.limit == 3
    # 3 points a second: 8 calls from a nearly empty bucket cannot finish in under ~2 s.
    assert elapsed >= 1.5


async def test_a_401_renews_the_app_token_once_and_the_token_is_shared_through_redis(
    shared_redis: Redis,
) -> None:
    standin = TwitchStandin()
    standin.add_user("1", "one")
    async with _running(standin) as settings:
        async with TwitchClient(settings, shared_redis) as first:
            await first.get_users(ids=["1"])
        async with TwitchClient(settings, shared_redis) as second:
            await second.get_users(ids=["1"])
            assert standin.token_grants["client_credentials"] == 1
            standin.expire_app_tokens()
            assert [u.id for u in await second.get_users(ids=["1"])] == ["1"]
    assert standin.token_grants["client_credentials"] == 2


async def test_oauth_code_exchange_validate_refresh_rotation_and_revoke(
    shared_redis: Redis,
) -> None:
    standin = TwitchStandin()
    standin.consent_as(standin.add_user("77", "streamer"))
    redirect = "http://127.0.0.1:9/auth/twitch/callback"
    async with (
        _running(standin) as settings,
        TwitchClient(settings, shared_redis) as twitch,
        httpx.AsyncClient() as browser,
    ):
        url = twitch.authorize_url(["channel:bot"], "state-1", redirect_uri=redirect)
        answer = await browser.get(url)
        assert answer.status_code == 302
        query = httpx.URL(answer.headers["location"]).params
        assert query["state"] == "state-1"
        tokens = await twitch.exchange_code(query["code"], redirect_uri=redirect)
        assert tokens.scopes == ("channel:bot",)
        validation = await twitch.validate(tokens.access_token)
        assert (validation.user_id, validation.login) == ("77", "streamer")
        rotated = await twitch.refresh(tokens.refresh_token)
        assert rotated.refresh_token != tokens.refresh_token
        with pytest.raises(InvalidRefreshToken):
            await twitch.refresh(tokens.refresh_token)
        assert await twitch.revoke(rotated.access_token) is True
        with pytest.raises(InvalidAccessToken):
            await twitch.validate(rotated.access_token)
        with pytest.raises(TwitchRejected):
            await twitch.exchange_code(query["code"], redirect_uri=redirect)  # single use


# -- MockTransport: failures on cue ---------------------------------------------------------


class Scripted:
    """Answers Helix/OAuth requests from a script; records what was asked."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.seen: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        if request.url.path.endswith("/token") and b"client_credentials" in request.content:
            return httpx.Response(200, json={"access_token": "app", "expires_in": 3600})
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


async def _no_sleep(seconds: float) -> None:
    _no_sleep.waits.append(seconds)  # type: ignore[attr-defined]


def _client(script: Scripted, **options: Any) -> TwitchClient:
    _no_sleep.waits = []  # type: ignore[attr-defined]
    return TwitchClient(
        _settings(), None, transport=httpx.MockTransport(script), sleep=_no_sleep, **options
    )


def _streams(*ids: str, cursor: str | None = None) -> httpx.Response:
    data = [
        {
            "id": f"s{i}",
            "user_id": i,
            "user_login": f"u{i}",
            "user_name": f"U{i}",
            "started_at": "2024-01-01T00:00:00Z",
            "viewer_count": 1,
        }
        for i in ids
    ]
    return httpx.Response(
        200, json={"data": data, "pagination": {"cursor": cursor} if cursor else {}}
    )


async def test_5xx_and_network_errors_are_retried_with_backoff_then_succeed() -> None:
    script = Scripted(httpx.Response(503), httpx.ConnectError("down"), _streams("1"))
    async with _client(script) as twitch:
        streams = await twitch.get_streams(["1"])
    assert [s.user_id for s in streams] == ["1"]
    assert len(_no_sleep.waits) == 2  # type: ignore[attr-defined]
    assert all(0 <= w <= 5 for w in _no_sleep.waits)  # type: ignore[attr-defined]


async def test_retries_are_bounded_and_end_as_unavailable() -> None:
    script = Scripted(*[httpx.Response(500)] * 3)
    async with _client(script, max_attempts=3) as twitch:
        with pytest.raises(TwitchUnavailable):
            await twitch.get_streams(["1"])
    assert len(script.answers) == 0


async def test_streams_follow_the_cursor_and_send_first_100() -> None:
    script = Scripted(_streams("1", cursor="c1"), _streams("2"))
    async with _client(script) as twitch:
        streams = await twitch.get_streams(["1", "2"])
    assert {s.user_id for s in streams} == {"1", "2"}
    helix = [r for r in script.seen if r.url.path == "/helix/streams"]
    assert helix[0].url.params.get_list("user_id") == ["1", "2"]
    assert helix[0].url.params["first"] == "100"
    assert helix[1].url.params["after"] == "c1"


async def test_a_429_for_too_many_identical_subscriptions_is_not_retried() -> None:
    body = {
        "error": "Too Many Requests",
        "status": 429,
        "message": "maximum subscriptions with type and condition exceeded",
    }
    script = Scripted(httpx.Response(429, json=body))
    async with _client(script) as twitch:
        with pytest.raises(TwitchRejected):
            await twitch.create_subscription(
                "stream.online", {"broadcaster_user_id": "1"}, callback=CALLBACK, secret=SUB_SECRET
            )


async def test_refresh_failures_are_told_apart() -> None:
    invalid = {"error": "Bad Request", "status": 400, "message": "Invalid refresh token"}
    script = Scripted(
        httpx.Response(400, json=invalid), *[httpx.Response(502)] * 5, httpx.ReadTimeout("slow")
    )
    async with _client(script) as twitch:
        with pytest.raises(InvalidRefreshToken):
            await twitch.refresh("dead")
        with pytest.raises(TwitchUnavailable):
            await twitch.refresh("alive")
    create = next(r for r in script.seen if b"refresh_token=alive" in r.content)
    assert b"grant_type=refresh_token" in create.content


async def test_validate_sends_the_oauth_scheme_not_bearer() -> None:
    body = {
        "client_id": "test-client-id",
        "login": "x",
        "user_id": "1",
        "scopes": [],
        "expires_in": 100,
    }
    script = Scripted(httpx.Response(200, json=body))
    async with _client(script) as twitch:
        validation = await twitch.validate("tok")
    assert validation.user_id == "1"
    assert script.seen[0].headers["authorization"] == "OAuth tok"
    assert msgspec.json.encode(validation)
