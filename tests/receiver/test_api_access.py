"""Who may read what, each rule both ways; API tokens; logout; CORS; disconnect."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.responses import Response

from receiver.api.access import Audience
from receiver.api.routes import OPERATIONS
from receiver.app import create_app
from receiver.identity import SESSION_COOKIE, start_login_session
from schema.settings import Settings
from streamfold.twitch_local import TwitchStandin, point_at
from tests.conftest import serve
from tests.receiver.people import add_user, api_token, sign_in

ALICE, BOB, VIEWER, OPERATOR = "1337", "4242", "501", "9000"
ORIGIN = "https://dashboard.example"
EVIL = "https://evil.example"
READS = ("sessions", "hourly", "summary")


@pytest.fixture
async def standin() -> TwitchStandin:
    return TwitchStandin()


@pytest.fixture
async def api(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    standin: TwitchStandin,
    redis: object,
) -> AsyncIterator[httpx.AsyncClient]:
    """The app with an operator, an allowed frontend origin and Twitch's stand-in."""
    await add_user(sessions, ALICE, "alice", streamer=True)
    await add_user(sessions, BOB, "bob", streamer=True)
    await add_user(sessions, VIEWER, "viewer", streamer=False)
    await add_user(sessions, OPERATOR, "operator", streamer=False)
    async with serve(standin.app) as twitch_url:
        values = point_at(settings, twitch_url).model_dump()
        values |= {"operator_user_ids": OPERATOR, "cors_allowed_origins": ORIGIN}
        async with (
            serve(create_app(Settings(**values))) as base_url,
            httpx.AsyncClient(base_url=base_url, timeout=10) as client,
        ):
            yield client


def _error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"] == code
    assert response.json()["detail"]


SIGNED_IN_ONLY = [op for op in OPERATIONS if op.rule.audience is not Audience.PUBLIC]


@pytest.mark.parametrize("op", SIGNED_IN_ONLY, ids=lambda op: f"{op.method} {op.path}")
async def test_anonymous_gets_401_on_every_api_operation(
    api: httpx.AsyncClient, op: object
) -> None:
    path = op.path.format(broadcaster_id=ALICE, token_id=1)  # type: ignore[attr-defined]
    response = await api.request(op.method, path)  # type: ignore[attr-defined]
    _error(response, 401, "not_authenticated")
    # Nothing else about the request is judged first, not even a malformed id or window.
    malformed = op.path.format(broadcaster_id="x", token_id="x")  # type: ignore[attr-defined]
    response = await api.request(op.method, malformed, params={"since": "x"})  # type: ignore[attr-defined]
    _error(response, 401, "not_authenticated")


async def test_a_streamer_reads_their_own_channel_and_no_other(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    alice = await sign_in(sessions, settings, ALICE)
    for read in READS:
        assert (await api.get(f"/api/channels/{ALICE}/{read}", headers=alice)).status_code == 200
        _error(await api.get(f"/api/channels/{BOB}/{read}", headers=alice), 403, "forbidden")
    _error(await api.delete(f"/api/channels/{BOB}", headers=alice), 403, "forbidden")
    assert (await api.get("/api/viewers/me/stats", headers=alice)).status_code == 200


async def test_a_viewer_reads_only_their_own_stats(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    viewer = await sign_in(sessions, settings, VIEWER)
    for read in READS:
        _error(await api.get(f"/api/channels/{ALICE}/{read}", headers=viewer), 403, "forbidden")
    stats = await api.get("/api/viewers/me/stats", headers=viewer)
    assert stats.status_code == 200
    assert stats.json()["user_id"] == VIEWER
    me = (await api.get("/api/me", headers=viewer)).json()
    assert (me["roles"], me["channels"], me["reads_all_channels"]) == (["viewer"], [], False)


async def test_an_operator_reads_every_channel_but_disconnects_none(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    operator = await sign_in(sessions, settings, OPERATOR)
    for channel in (ALICE, BOB):
        for read in READS:
            response = await api.get(f"/api/channels/{channel}/{read}", headers=operator)
            assert response.status_code == 200, response.text
    _error(await api.get("/api/channels/77/summary", headers=operator), 404, "not_found")
    _error(await api.delete(f"/api/channels/{ALICE}", headers=operator), 403, "forbidden")
    me = (await api.get("/api/me", headers=operator)).json()
    assert me["roles"] == ["viewer", "operator"]
    assert me["reads_all_channels"] is True
    assert [c["broadcaster_id"] for c in me["channels"]] == [ALICE, BOB]


async def test_api_tokens_are_shown_once_stored_hashed_used_and_revoked(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    alice = await sign_in(sessions, settings, ALICE)
    created = await api.post("/api/tokens", json={"name": "dashboard"}, headers=alice)
    assert created.status_code == 201, created.text
    token = created.json()["token"]
    assert token.startswith("sfk_")
    assert len(token) > 40
    async with sessions() as session:
        stored = (await session.execute(text("SELECT token_sha256, name FROM api_tokens"))).one()
    assert stored.token_sha256 == hashlib.sha256(token.encode()).digest()
    assert stored.name == "dashboard"

    listed = (await api.get("/api/tokens", headers=alice)).json()["tokens"]
    assert [(t["name"], t["revoked_at"]) for t in listed] == [("dashboard", None)]
    assert token not in str(listed)

    bearer = {"Authorization": f"Bearer {token}"}
    me = (await api.get("/api/me", headers=bearer)).json()
    assert (me["user_id"], me["authenticated_by"]) == (ALICE, "api_token")
    assert (await api.get(f"/api/channels/{ALICE}/summary", headers=bearer)).status_code == 200
    _error(await api.get(f"/api/channels/{BOB}/summary", headers=bearer), 403, "forbidden")
    _error(await api.post("/api/tokens", json={"name": "x"}, headers=bearer), 403, "forbidden")

    bob = await sign_in(sessions, settings, BOB)
    token_id = created.json()["id"]
    _error(await api.delete(f"/api/tokens/{token_id}", headers=bob), 404, "not_found")
    assert (await api.delete(f"/api/tokens/{token_id}", headers=alice)).status_code == 204
    _error(await api.get("/api/me", headers=bearer), 401, "not_authenticated")
    listed = (await api.get("/api/tokens", headers=alice)).json()["tokens"]
    assert listed[0]["revoked_at"] is not None
    unknown = {"Authorization": "Bearer sfk_" + "x" * 43}
    _error(await api.get("/api/me", headers=unknown), 401, "not_authenticated")


async def test_expired_forged_and_logged_out_sessions_are_anonymous(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    response = Response()
    async with sessions.begin() as session:
        long_ago = datetime.now(UTC) - timedelta(days=15)
        await start_login_session(session, settings, ALICE, response, now=long_ago)
    expired = {"Cookie": response.headers["set-cookie"].split(";", 1)[0]}
    _error(await api.get("/api/me", headers=expired), 401, "not_authenticated")
    forged = {"Cookie": f"{SESSION_COOKIE}=InNvbWVib2R5Ig.forged-signature"}
    _error(await api.get("/api/me", headers=forged), 401, "not_authenticated")

    alice = await sign_in(sessions, settings, ALICE)
    assert (await api.get("/api/me", headers=alice)).status_code == 200
    assert (await api.post("/auth/logout", headers=alice)).status_code < 400
    _error(await api.get("/api/me", headers=alice), 401, "not_authenticated")
    other_token = await api_token(sessions, ALICE)  # tokens outlive a browser logout
    assert (await api.get("/api/me", headers=other_token)).status_code == 200


async def test_cors_preflight_allows_the_configured_origin_with_credentials(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    preflight = {"Access-Control-Request-Method": "GET"}
    preflight["Access-Control-Request-Headers"] = "authorization"
    allowed = await api.options("/api/me", headers={"Origin": ORIGIN, **preflight})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    assert allowed.headers["access-control-allow-credentials"] == "true"
    assert "GET" in allowed.headers["access-control-allow-methods"]
    refused = await api.options("/api/me", headers={"Origin": EVIL, **preflight})
    _error(refused, 400, "cors_refused")
    assert "access-control-allow-origin" not in refused.headers

    alice = await sign_in(sessions, settings, ALICE)
    read = await api.get("/api/me", headers={**alice, "Origin": ORIGIN})
    assert read.headers["access-control-allow-origin"] == ORIGIN
    assert read.headers["access-control-allow-credentials"] == "true"
    foreign = await api.get("/api/me", headers={**alice, "Origin": EVIL})
    assert "access-control-allow-origin" not in foreign.headers
    health = await api.get("/healthz", headers={"Origin": ORIGIN})
    assert "access-control-allow-origin" not in health.headers  # /api/* only


async def test_cookie_writes_from_a_foreign_origin_are_refused(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    alice = await sign_in(sessions, settings, ALICE)
    forged = await api.post("/api/tokens", json={"name": "x"}, headers={**alice, "Origin": EVIL})
    _error(forged, 403, "forbidden")
    ok = await api.post("/api/tokens", json={"name": "x"}, headers={**alice, "Origin": ORIGIN})
    assert ok.status_code == 201


async def test_a_streamer_disconnects_and_then_purges_their_channel(
    api: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    standin: TwitchStandin,
) -> None:
    for broadcaster in (ALICE, BOB):
        standin.subscriptions[f"sub-{broadcaster}"] = {
            "id": f"sub-{broadcaster}",
            "status": "enabled",
            "type": "stream.online",
            "version": "1",
            "condition": {"broadcaster_user_id": broadcaster},
            "created_at": "2024-05-01T09:00:00Z",
            "transport": {"method": "webhook", "callback": "https://x.example/eventsub/callback"},
            "cost": 0,
        }
        async with sessions.begin() as session:
            await session.execute(
                text("""INSERT INTO stream_sessions (id, broadcaster_id, started_at, started_by)
                        VALUES (:id, :b, now() - interval '1 hour', 'eventsub')"""),
                {"id": f"live-{broadcaster}", "b": broadcaster},
            )
    alice = await sign_in(sessions, settings, ALICE)
    alice_token = await api_token(sessions, ALICE)
    bob_token = await api_token(sessions, BOB)
    assert (await api.get(f"/api/channels/{ALICE}/summary", headers=alice_token)).is_success
    first = await api.delete(f"/api/channels/{ALICE}", headers=alice)
    assert first.status_code == 200, first.text
    # Her API tokens ended with the channel; another streamer's did not.
    gone = await api.get(f"/api/channels/{ALICE}/summary", headers=alice_token)
    _error(gone, 401, "not_authenticated")
    assert (await api.get(f"/api/channels/{BOB}/summary", headers=bob_token)).is_success
    assert first.json() == {"broadcaster_id": ALICE, "connected": False, "purged": False}
    assert list(standin.subscriptions) == [f"sub-{BOB}"]
    async with sessions() as session:
        connected = await session.scalar(
            text("SELECT connected FROM channels WHERE broadcaster_id = :b"), {"b": ALICE}
        )
        kept = await session.scalar(text("SELECT count(*) FROM stream_sessions"))
    assert (connected, kept) == (False, 2)
    # Still the channel's streamer: its history stays readable until purged.
    assert (await api.get(f"/api/channels/{ALICE}/sessions", headers=alice)).status_code == 200

    purged = await api.delete(f"/api/channels/{ALICE}", params={"purge": "true"}, headers=alice)
    assert purged.json()["purged"] is True
    async with sessions() as session:
        left = (await session.execute(text("SELECT broadcaster_id FROM stream_sessions"))).all()
    assert [r.broadcaster_id for r in left] == [BOB]


@pytest.mark.parametrize("purge", ["false", "true"])
async def test_an_api_token_cannot_disconnect_or_purge_a_channel(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], purge: str
) -> None:
    token = await api_token(sessions, ALICE)
    refused = await api.delete(f"/api/channels/{ALICE}", params={"purge": purge}, headers=token)
    _error(refused, 403, "forbidden")
    assert "browser session" in refused.json()["detail"]
    async with sessions() as session:
        still = await session.scalar(
            text("SELECT connected FROM channels WHERE broadcaster_id = :b"), {"b": ALICE}
        )
        live = await session.scalar(
            text("SELECT count(*) FROM api_tokens WHERE revoked_at IS NULL")
        )
    assert (still, live) == (True, 1)
    assert (await api.get(f"/api/channels/{ALICE}/summary", headers=token)).is_success
