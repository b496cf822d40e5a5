"""Sign in with Twitch through real HTTP: browser -> receiver -> stand-in -> receiver,
with real PostgreSQL and Redis; Twitch's challenge comes back to the receiver."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis
from cryptography.fernet import Fernet, InvalidToken
from itsdangerous.timed import TimestampSigner
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from receiver.oauth import STATE_COOKIE
from schema.errors import ConfigurationError
from schema.settings import Settings, load_settings
from schema.twitch import TwitchClient
from schema.twitch.channels import disconnect_channel
from schema.twitch.tokens import TokenCipher, connected_bot_id, load_tokens, rotate_token_keys
from streamfold.channels_cli import describe_channels, sync
from streamfold.eventsub_sender import authorization_revoke_body, challenge_body, signed
from streamfold.twitch_local import TwitchStandin
from tests.conftest import FERNET_KEY, SECRET, eventually
from tests.connected import STREAMER, Connected, connected

STREAMER_ID = STREAMER[0]

pytestmark = pytest.mark.usefixtures("redis")

NOTHING_STORED = (
    "SELECT (SELECT count(*) FROM twitch_users) + (SELECT count(*) FROM oauth_tokens)"
    " + (SELECT count(*) FROM login_sessions) + (SELECT count(*) FROM channels)"
)


def _live(env: Connected) -> dict[tuple[str, tuple[tuple[str, str], ...]], dict[str, Any]]:
    return {
        (s["type"], tuple(sorted(s["condition"].items()))): s
        for s in env.standin.live_subscriptions()
    }


async def test_bot_then_streamer_consent_creates_verified_subscriptions(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with connected(settings, sessions, ensure_at_startup=True) as env:
        # The app-wide revoke subscription is ensured once the receiver serves.
        await eventually(lambda: len(env.standin.subscriptions) == 1)
        bot_page = await env.login("bot", env.bot)
        assert bot_page.status_code == 200, bot_page.text
        assert "Bot connected" in bot_page.text
        # A 429 on the way must only delay the streamer's subscriptions.
        env.standin.fail("/helix/eventsub/subscriptions", 429, reset_in=1.0)
        page = await env.login("streamer", env.streamer)
        assert page.status_code == 200, page.text
        assert "Channel connected" in page.text
        await env.standin.settled()

        live = _live(env)
        b, s = env.bot.id, env.streamer.id
        assert set(live) == {
            ("user.authorization.revoke", (("client_id", "test-client-id"),)),
            ("stream.online", (("broadcaster_user_id", s),)),
            ("stream.offline", (("broadcaster_user_id", s),)),
            ("channel.chat.message", (("broadcaster_user_id", s), ("user_id", b))),
        }
        assert {sub["status"] for sub in live.values()} == {"enabled"}
        for sub in live.values():
            assert sub["transport"] == {"method": "webhook", "callback": env.settings.callback_url}
            assert env.standin.secrets[sub["id"]] == SECRET
        # Every challenge came back 200, text/plain (the stand-in checked the exact text).
        assert {(c["status"], c["content_type"]) for c in env.standin.challenges} == {
            (200, "text/plain")
        }
        await eventually(
            lambda: env.scalar(
                "SELECT count(*) = 4 FROM eventsub_subscriptions WHERE status = 'enabled'"
            )
        )
        assert await env.scalar("SELECT connected FROM channels WHERE broadcaster_id = :b", b=s)
        assert await env.scalar("SELECT is_bot FROM twitch_users WHERE id = :b", b=b)
        assert await env.scalar("SELECT count(*) FROM login_sessions") == 2
        assert "streamfold_session" in env.browser.cookies
        assert STATE_COOKIE not in env.browser.cookies


async def test_streamer_without_a_bot_is_told_chat_is_not_collected(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with connected(settings, sessions) as env:
        page = await env.login("streamer", env.streamer)
        await env.standin.settled()
        assert page.status_code == 200
        assert "no bot account connected" in page.text
        assert {t for t, _ in _live(env)} == {"stream.online", "stream.offline"}


async def test_tokens_are_encrypted_at_rest_and_survive_key_rotation(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with connected(settings, sessions) as env:
        await env.login("streamer", env.streamer)
        grant = env.standin.grants[env.streamer.id]
        dump = await env.rows("SELECT access_token, refresh_token, scopes FROM oauth_tokens")
    assert len(dump) == 1
    raw = b"".join(bytes(c) for c in dump[0][:2])
    assert grant.access_token.encode() not in raw
    assert grant.refresh_token.encode() not in raw
    assert dump[0].scopes == ["channel:bot"]
    with pytest.raises(InvalidToken):
        Fernet(Fernet.generate_key()).decrypt(bytes(dump[0].access_token))

    new_key = Fernet.generate_key().decode()
    async with sessions.begin() as session:
        assert await rotate_token_keys(session, TokenCipher([new_key, FERNET_KEY])) == 1
    async with sessions() as session:
        stored = await load_tokens(session, TokenCipher([new_key]), "1337", "streamer")
    assert stored is not None
    assert (stored.access_token, stored.refresh_token) == (grant.access_token, grant.refresh_token)
    rotated = await env.rows("SELECT access_token FROM oauth_tokens")
    assert Fernet(new_key).decrypt(bytes(rotated[0].access_token)) == grant.access_token.encode()
    with pytest.raises(InvalidToken):
        Fernet(FERNET_KEY).decrypt(bytes(rotated[0].access_token))


async def _authorize_redirect(env: Connected, role: str = "streamer") -> httpx.URL:
    """Start a login and stop at Twitch's redirect back to us: the callback URL."""
    env.standin.consent_as(env.streamer)
    start = await env.browser.get(
        "/auth/twitch/login", params={"role": role}, follow_redirects=False
    )
    assert start.status_code == 302
    async with httpx.AsyncClient() as twitch_side:
        consent = await twitch_side.get(start.headers["location"])
    assert consent.status_code == 302
    return httpx.URL(consent.headers["location"])


async def test_missing_reused_tampered_and_expired_state_are_refused_and_nothing_stored(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with connected(settings, sessions) as env:
        # Missing: a callback this browser never started.
        back = await _authorize_redirect(env)
        async with httpx.AsyncClient() as stranger:
            answer = await stranger.get(str(back))
        assert answer.status_code == 400
        assert "not started here" in answer.text

        # Tampered: the signed cookie altered.
        back = await _authorize_redirect(env)
        cookie = env.browser.cookies[STATE_COOKIE]
        env.browser.cookies.delete(STATE_COOKIE)
        env.browser.cookies.set(STATE_COOKIE, cookie[:-2] + ("AA" if cookie[-2:] != "AA" else "BB"))
        answer = await env.browser.get(str(back.copy_remove_param("x")))
        assert answer.status_code == 400
        assert "altered" in answer.text
        env.browser.cookies.clear()

        # State of another login: a valid cookie, a different state in the query.
        back = await _authorize_redirect(env)
        other = back.copy_set_param("state", "someone-elses-state")
        answer = await env.browser.get(str(other))
        assert answer.status_code == 400
        assert "does not match" in answer.text

        # A state that is not ASCII: refused like any other mismatch, not a 500.
        back = await _authorize_redirect(env)
        answer = await env.browser.get(str(back.copy_set_param("state", "é")))
        assert answer.status_code == 400
        assert "does not match" in answer.text

        # Expired: a cookie signed eleven minutes ago.
        now = time.time()
        monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: int(now) - 660)
        back = await _authorize_redirect(env)
        monkeypatch.undo()
        answer = await env.browser.get(str(back))
        assert answer.status_code == 400
        assert "start the sign-in again" in answer.text
        assert await env.scalar(NOTHING_STORED) == 0

        # Reused: the first use signs in; replaying the same state (and cookie) does not.
        back = await _authorize_redirect(env)
        cookie = env.browser.cookies[STATE_COOKIE]
        first = await env.browser.get(str(back))
        assert first.status_code == 200
        stored = await env.scalar(NOTHING_STORED)
        env.browser.cookies.set(STATE_COOKIE, cookie)
        again = await env.browser.get(str(back))
        assert again.status_code == 400
        assert "already used" in again.text
        assert await env.scalar(NOTHING_STORED) == stored


async def test_denied_consent_and_a_bad_code_get_a_page_not_a_500(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with connected(settings, sessions) as env:
        denied = await env.login("streamer", env.streamer, deny=True)
        assert denied.status_code == 403
        assert "declined" in denied.text
        assert denied.headers["content-type"].startswith("text/html")

        back = await _authorize_redirect(env)
        forged = back.copy_set_param("code", "not-a-code")
        answer = await env.browser.get(str(forged))
        assert answer.status_code == 400
        assert "did not accept" in answer.text

        bad_role = await env.browser.get("/auth/twitch/login", params={"role": "admin"})
        assert bad_role.status_code == 422
        assert bad_role.json()["error"] == "invalid_parameter"
        assert await env.scalar(NOTHING_STORED) == 0


async def test_a_bot_without_the_chat_scopes_is_refused(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with connected(settings, sessions) as env:
        page = await env.login("bot", env.bot, scopes=["user:read:chat"])
        assert page.status_code == 403
        assert "user:bot" in page.text
        assert await env.scalar(NOTHING_STORED) == 0


async def test_logout_ends_the_session(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with connected(settings, sessions) as env:
        await env.login("viewer", env.streamer)
        assert await env.scalar("SELECT count(*) FROM login_sessions WHERE ended_at IS NULL") == 1
        answer = await env.browser.post("/auth/logout")
        assert answer.status_code == 200
        assert await env.scalar("SELECT count(*) FROM login_sessions WHERE ended_at IS NULL") == 0
        # A viewer connects no channel, asks for no scope, and leaves no tokens with us.
        assert await env.scalar("SELECT count(*) FROM channels") == 0
        assert await env.scalar("SELECT count(*) FROM oauth_tokens") == 0


async def test_nobody_else_can_take_over_the_bot_role(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with connected(settings, sessions) as env:
        assert (await env.login("bot", env.bot)).status_code == 200
        assert (await env.login("streamer", env.streamer)).status_code == 200
        await env.standin.settled()
        # Another Twitch account (here the streamer's) asks to become the bot.
        page = await env.login("bot", env.streamer)
        assert page.status_code == 403
        await env.standin.settled()
        chat = [c for t, c in _live(env) if t == "channel.chat.message"]
        assert chat == [(("broadcaster_user_id", env.streamer.id), ("user_id", env.bot.id))]
        assert not await env.scalar(
            "SELECT is_bot FROM twitch_users WHERE id = :u", u=env.streamer.id
        )


async def test_an_existing_subscription_409_is_adopted(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with connected(settings, sessions) as env:
        # A subscription left from before a restart: Twitch answers our create with 409.
        env.standin.subscriptions["old-online"] = {
            "id": "old-online",
            "status": "enabled",
            "type": "stream.online",
            "version": "1",
            "condition": {"broadcaster_user_id": env.streamer.id},
            "created_at": "2024-01-01T00:00:00Z",
            "transport": {"method": "webhook", "callback": env.settings.callback_url},
            "cost": 0,
        }
        env.standin.subscriptions["old-offline"] = env.standin.subscriptions["old-online"] | {
            "id": "old-offline",
            "type": "stream.offline",
        }
        page = await env.login("streamer", env.streamer)
        assert page.status_code == 200
        await env.standin.settled()
        live = {s["id"] for s in env.standin.live_subscriptions()}
        assert live == {"old-online", "old-offline"}
        ids = await env.rows("SELECT id FROM eventsub_subscriptions ORDER BY id")
        assert [r.id for r in ids] == ["old-offline", "old-online"]


async def test_a_challenge_for_a_subscription_we_did_not_request_is_refused(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], redis: ArqRedis
) -> None:
    async with connected(settings, sessions) as env:
        body = challenge_body("abc", "stream.online", {"broadcaster_user_id": "666"}, "x-1")
        message = signed(
            SECRET.encode(),
            body,
            "stream.online",
            sent_at=datetime.now(UTC),
            message_type="webhook_callback_verification",
        )
        answer = await env.browser.post(
            "/eventsub/callback", content=message.body, headers=message.headers()
        )
        assert answer.status_code == 403
        assert answer.json()["error"] == "forbidden"
        assert await env.scalar("SELECT count(*) FROM eventsub_subscriptions") == 0


async def test_a_challenge_is_answered_while_a_sync_still_holds_its_row(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    from sqlalchemy import text

    from schema.twitch.subscription_records import expect

    condition = {"broadcaster_user_id": "1337"}
    async with connected(settings, sessions) as env:
        redis = ArqRedis.from_url(env.settings.redis_url or "")
        try:
            # The create call is about to be made: the expectation comes first.
            await expect(redis, env.settings.queue_name, "stream.online", condition)
        finally:
            await redis.aclose()
        body = challenge_body("race-challenge", "stream.online", condition, "race-1")
        message = signed(
            SECRET.encode(),
            body,
            "stream.online",
            sent_at=datetime.now(UTC),
            message_type="webhook_callback_verification",
        )
        async with sessions.begin() as sync_tx:  # a sync that recorded the id, not committed
            await sync_tx.execute(
                text("""INSERT INTO eventsub_subscriptions (id, type, version, condition, status)
                        VALUES ('race-1', 'stream.online', '1', '{}',
                                'webhook_callback_verification_pending')""")
            )
            started = time.monotonic()
            answer = await env.browser.post(
                "/eventsub/callback", content=message.body, headers=message.headers()
            )
            waited = time.monotonic() - started
        assert answer.status_code == 200
        assert answer.text == "race-challenge"
        assert waited < 5


OTHER_BOT = ("9002", "second_bot")


async def _chat_bots(env: Connected) -> set[str]:
    """The accounts every live chat subscription names, after a full sync."""
    await sync(env.settings)
    await env.standin.settled()
    return {s["condition"]["user_id"] for s in _live_chat(env)}


def _live_chat(env: Connected) -> list[dict[str, Any]]:
    """Live chat subscriptions of this receiver (an earlier one had another callback URL)."""
    return [
        s
        for s in env.standin.live_subscriptions()
        if s["type"] == "channel.chat.message"
        and s["transport"]["callback"] == env.settings.callback_url
    ]


async def test_a_former_bot_signing_in_as_a_streamer_does_not_take_the_bot_role_back(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with connected(settings, sessions) as env:
        former = env.bot
        second = env.standin.add_user(*OTHER_BOT)
        assert (await env.login("streamer", env.streamer)).status_code == 200
        assert (await env.login("bot", former)).status_code == 200
        await env.standin.settled()
        assert await _chat_bots(env) == {former.id}
        # The former bot's authorization ends: Twitch says so, the worker disconnects it.
        env.standin.revoke_user(former.id)
        message = signed(
            SECRET.encode(),
            authorization_revoke_body("test-client-id", former.id),
            "user.authorization.revoke",
            sent_at=datetime.now(UTC),
            message_type="notification",
        )
        answer = await env.browser.post(
            "/eventsub/callback", content=message.body, headers=message.headers()
        )
        assert answer.status_code == 204
        await env.drain()
        assert not await env.scalar("SELECT is_bot FROM twitch_users WHERE id = :u", u=former.id)

        assert (await env.login("bot", second)).status_code == 200
        # The former bot comes back, as the streamer of a channel of its own.
        page = await env.login("streamer", former)
        assert page.status_code == 200, page.text
        await env.standin.settled()
        assert await _chat_bots(env) == {second.id}
        assert len(_live_chat(env)) == 2  # both channels read through the second bot
        assert (await env.login("bot", former)).status_code == 403


async def test_bot_user_id_decides_the_bot_even_while_a_former_bot_holds_tokens(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    standin = TwitchStandin(client_id=settings.twitch_client_id or "")
    async with connected(settings, sessions, standin) as env:
        assert (await env.login("streamer", env.streamer)).status_code == 200
        assert (await env.login("bot", env.bot)).status_code == 200
        await env.standin.settled()
    second = standin.add_user(*OTHER_BOT)
    named = settings.model_copy(update={"bot_user_id": second.id})
    async with connected(named, sessions, standin) as env:
        # The old bot still holds valid bot tokens, and signs in again as a streamer.
        assert (await env.login("streamer", env.bot)).status_code == 200
        await env.standin.settled()
        assert await _chat_bots(env) == set()  # BOT_USER_ID has not connected yet
        assert (await env.login("bot", env.bot)).status_code == 403
        assert (await env.login("bot", second)).status_code == 200
        assert await _chat_bots(env) == {second.id}
        assert "bot account: 9002" in await describe_channels(env.settings)


async def test_a_streamer_login_keeps_the_same_accounts_bot_tokens_apart(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    one_account = settings.model_copy(update={"bot_user_id": STREAMER_ID})
    async with connected(one_account, sessions) as env:
        assert (await env.login("bot", env.streamer)).status_code == 200
        assert (await env.login("streamer", env.streamer)).status_code == 200
        await env.standin.settled()
        roles = await env.rows("SELECT role, scopes FROM oauth_tokens ORDER BY role")
        assert [(r.role, sorted(r.scopes)) for r in roles] == [
            ("bot", ["user:bot", "user:read:chat"]),
            ("streamer", ["channel:bot"]),
        ]
        # Disconnecting the channel ends the streamer's tokens, not the bot role.
        async with TwitchClient(env.settings, None) as twitch, sessions.begin() as session:
            await disconnect_channel(session, twitch, STREAMER_ID, purge=False)
        assert [r.role for r in await env.rows("SELECT role FROM oauth_tokens")] == ["bot"]
        async with sessions() as session:
            assert await connected_bot_id(session, STREAMER_ID) == STREAMER_ID


def test_bot_user_id_is_required_outside_a_local_run() -> None:
    with pytest.raises(ConfigurationError, match="BOT_USER_ID is required"):
        load_settings(public_base_url="https://streamfold.example")
    assert (
        load_settings(public_base_url="https://streamfold.example", bot_user_id="7").is_local
        is False
    )
    for local in ("http://127.0.0.1:8000", "http://localhost:8000", "http://[::1]:8000"):
        assert load_settings(public_base_url=local).bot_user_id is None


async def test_streamer_and_bot_logins_always_show_twitch_consent(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with connected(settings, sessions) as env:
        for role, forced in (("streamer", True), ("bot", True), ("viewer", False)):
            start = await env.browser.get(
                "/auth/twitch/login", params={"role": role}, follow_redirects=False
            )
            assert start.status_code == 302
            query = httpx.URL(start.headers["location"]).params
            assert (query.get("force_verify") == "true") is forced, role
