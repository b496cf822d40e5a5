"""The local Twitch: the documented shapes of OAuth (PROTOCOL.md 5), Helix users and
streams (6) and EventSub subscription management (3), served by Starlette.

The tests and benchmarks drive it in-process (``streamfold.serving.serve(standin.app)``);
``streamfold dev`` without Twitch credentials runs it beside the product
(``streamfold local-twitch``), with demo users, a consent page and streams whose viewer
counts move. Point ``TWITCH_AUTH_BASE`` at ``{url}/oauth2`` and ``TWITCH_API_BASE`` at
``{url}/helix``.
A created webhook subscription is verified the way Twitch does it: a signed
``webhook_callback_verification`` is POSTed to the callback, and the subscription is
enabled only if the answer is 200, ``text/plain`` and exactly the challenge.
"""

from __future__ import annotations

import asyncio
import math
import random
import secrets
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import msgspec
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from receiver.signature import sign
from schema.settings import Settings
from schema.twitch.app_token import cache_key
from streamfold import twitch_consent as consent_page

LIVE = ("enabled", "webhook_callback_verification_pending")
# Scopes Twitch requires before a chat subscription may be created (PROTOCOL.md 4.3, 5.10).
CHAT_USER_SCOPES = {"user:read:chat", "user:bot"}


@dataclass
class StandinUser:
    id: str
    login: str
    display_name: str
    broadcaster_type: str = ""
    profile_image_url: str = ""


@dataclass
class Consent:
    """What the next visit to /oauth2/authorize does: grant as ``user`` or deny."""

    user: StandinUser
    deny: bool = False
    scopes: list[str] | None = None  # None: grant exactly what was asked


@dataclass
class Grant:
    user_id: str
    scopes: list[str]
    access_token: str
    refresh_token: str
    expires_at: float


@dataclass
class Failure:
    path: str  # prefix of the request path it applies to, e.g. "/helix/streams"
    status: int
    remaining: int = 1
    reset_in: float = 1.0  # for 429: Ratelimit-Reset this far ahead


@dataclass
class Bucket:
    """Twitch's token bucket for app-token Helix requests (PROTOCOL.md 6.5)."""

    points: int = 800
    window: float = 60.0
    tokens: float = 800.0
    updated: float = field(default_factory=time.time)

    def take(self, now: float) -> tuple[bool, dict[str, str]]:
        rate = self.points / self.window
        self.tokens = min(self.points, self.tokens + (now - self.updated) * rate)
        self.updated = now
        allowed = self.tokens >= 1
        if allowed:
            self.tokens -= 1
        reset = math.ceil(now + (self.points - self.tokens) / rate)
        headers = {
            "Ratelimit-Limit": str(self.points),
            "Ratelimit-Remaining": str(int(self.tokens)),
            "Ratelimit-Reset": str(reset),
        }
        return allowed, headers


def challenge_echo_app() -> Starlette:
    """A callback that answers every challenge correctly (no signature check): for client
    tests that need subscriptions to become enabled without a receiver."""

    async def echo(request: Request) -> Response:
        body = msgspec.json.decode(await request.body())
        return Response(body.get("challenge", ""), media_type="text/plain")

    return Starlette(routes=[Route("/eventsub/callback", echo, methods=["POST"])])


async def forget_app_token(settings: Settings) -> None:
    """Drop the cached app token for this stand-in's URL: a stand-in started later on a
    port an earlier one used would otherwise get that one's token, answer 401 and make
    the client renew it, one call more than the test counts."""
    redis = Redis.from_url(settings.redis_url or "")
    try:
        await redis.delete(cache_key(settings.twitch_client_id or "", settings.twitch_auth_base))
    finally:
        await redis.aclose()


def point_at(settings: Settings, base_url: str) -> Settings:
    """``settings`` with both Twitch base URLs on a stand-in served at ``base_url``."""
    values = settings.model_dump()
    values |= {"twitch_api_base": f"{base_url}/helix", "twitch_auth_base": f"{base_url}/oauth2"}
    return Settings(**values)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    reasons = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}
    reasons |= {409: "Conflict", 429: "Too Many Requests", 500: "Internal Server Error"}
    body = {"error": reasons.get(status, "Error"), "status": status, "message": message}
    return JSONResponse(body, status_code=status, headers=headers)


async def _form(request: Request) -> dict[str, str]:
    """Form fields without python-multipart: Twitch's token endpoints take urlencoded only."""
    return dict(parse_qsl((await request.body()).decode()))


def _now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class TwitchStandin:
    def __init__(
        self,
        client_id: str = "test-client-id",
        client_secret: str = "test-client-secret",  # noqa: S107 - the tests' secret
        *,
        points_per_minute: int = 800,
        bucket_window: float = 60.0,
        page_size: int = 100,
        user_token_lifetime: int = 14_400,
        app_token_lifetime: int = 5_000_000,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.bucket = Bucket(points_per_minute, bucket_window, float(points_per_minute))
        self.page_size = page_size
        self.user_token_lifetime = user_token_lifetime
        self.app_token_lifetime = app_token_lifetime
        self.users: dict[str, StandinUser] = {}
        self.consent: Consent | None = None
        self.live: dict[str, dict[str, Any]] = {}  # user_id -> stream object
        self.subscriptions: dict[str, dict[str, Any]] = {}  # insertion order = oldest first
        self.secrets: dict[str, str] = {}  # subscription id -> transport secret
        self.grants: dict[str, Grant] = {}  # user_id -> latest grant
        self.codes: dict[str, tuple[str, list[str], str]] = {}  # code -> user, scopes, uri
        self.app_tokens: set[str] = set()
        self.failures: list[Failure] = []
        self.requests: list[tuple[str, str, float]] = []  # method, path, time
        self.token_grants: dict[str, int] = {}
        self.challenges: list[dict[str, Any]] = []  # what each verification attempt saw
        self._tasks: set[asyncio.Task[None]] = set()
        # Set to hold Get Streams answers until the test releases them (overlapping runs).
        self.streams_gate: asyncio.Event | None = None
        # Called after each page of unfiltered Get Streams is served, with the page's
        # offset: lets a test move viewer counts while a client pages (entries shift).
        self.after_top_page: Callable[[int], None] | None = None
        self.refused_by_bucket = 0  # 429s the bucket answered (not injected ones)
        self.chat_bans: set[tuple[str, str]] = set()  # (broadcaster id, banned user id)
        self.moving: dict[str, int] = {}  # user_id -> base viewers of a drifting audience
        # The EventSub budget (PROTOCOL.md 3.6): a subscription costs 1 unless the
        # broadcaster in its condition authorised the app; past the cap, creates are refused.
        self.max_total_cost = 10_000
        self.titles: dict[str, str] = {}  # user_id -> channel title when not live
        self.app = Starlette(
            routes=[
                Route("/oauth2/authorize", self.authorize, methods=["GET", "POST"]),
                Route("/oauth2/token", self.token, methods=["POST"]),
                Route("/oauth2/validate", self.validate),
                Route("/oauth2/revoke", self.revoke, methods=["POST"]),
                Route("/helix/users", self.helix_users),
                Route("/helix/streams", self.helix_streams),
                Route("/helix/channels", self.helix_channels),
                Route(
                    "/helix/eventsub/subscriptions",
                    self.eventsub,
                    methods=["GET", "POST", "DELETE"],
                ),
                Route("/_local/streams", self.local_streams, methods=["POST"]),
            ]
        )

    # -- test controls --------------------------------------------------------------------

    def add_user(self, user_id: str, login: str, display_name: str | None = None) -> StandinUser:
        user = StandinUser(user_id, login, display_name or login.title())
        self.users[user_id] = user
        return user

    def seed_subscriptions(self, callback_url: str, channels: Sequence[str]) -> None:
        """Enabled stream.online/offline subscriptions for ``channels`` and the app's
        revoke subscription, as a previous sync left them (a steady state to reconcile)."""
        wanted = [("user.authorization.revoke", {"client_id": self.client_id})]
        for channel in channels:
            for kind in ("stream.online", "stream.offline"):
                wanted.append((kind, {"broadcaster_user_id": channel}))
        for n, (kind, condition) in enumerate(wanted):
            sub_id = f"seeded-{n}"
            self.subscriptions[sub_id] = {
                "id": sub_id,
                "status": "enabled",
                "type": kind,
                "version": "1",
                "condition": condition,
                "created_at": "2026-01-01T00:00:00Z",
                "transport": {"method": "webhook", "callback": callback_url},
                "cost": 0,
            }

    def consent_as(
        self, user: StandinUser, *, deny: bool = False, scopes: list[str] | None = None
    ) -> None:
        self.consent = Consent(user, deny, scopes)

    def go_live(
        self,
        user_id: str,
        *,
        stream_id: str | None = None,
        viewers: int = 10,
        started_at: datetime | None = None,
        game: tuple[str, str] = ("509658", "Just Chatting"),
        title: str = "stand-in stream",
        language: str = "en",
    ) -> None:
        """``user_id`` goes live; unfiltered Get Streams (the top list) lists every live
        stream by viewers, so this is also how a test fills the top list."""
        user = self.users[user_id]
        started_at = started_at or datetime.now(UTC)
        self.live[user_id] = {
            "id": stream_id or str(abs(hash((user_id, time.time())))),
            "user_id": user.id,
            "user_login": user.login,
            "user_name": user.display_name,
            "game_id": game[0],
            "game_name": game[1],
            "type": "live",
            "title": title,
            "tags": [],
            "viewer_count": viewers,
            "started_at": started_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "language": language,
            "thumbnail_url": "https://example.invalid/{width}x{height}.jpg",
            "tag_ids": [],
            "is_mature": False,
        }

    async def local_streams(self, request: Request) -> Response:
        """Local-only control (not Twitch's): ``streamfold simulate`` marks channels live or
        offline here, so Helix Get Streams agrees with the events it sends."""
        try:
            body = msgspec.json.decode(await request.body())
            changes = [(str(c["broadcaster_id"]), c) for c in body["streams"]]
        except (msgspec.DecodeError, KeyError, TypeError):
            return _error(400, 'send {"streams": [{"broadcaster_id": ..., "live": bool}]}')
        for user_id, change in changes:
            if not change.get("live"):
                self.live.pop(user_id, None)
                continue
            if user_id not in self.users:
                self.add_user(user_id, change.get("login") or f"channel_{user_id}")
            self.go_live(
                user_id, stream_id=change.get("stream_id"), viewers=int(change.get("viewers", 50))
            )
            stream = self.live[user_id]
            stream["started_at"] = change.get("started_at") or stream["started_at"]
            stream["title"] = change.get("title") or stream["title"]
            self.moving[user_id] = stream["viewer_count"]
        return JSONResponse({"live": sorted(self.live)})

    def _viewed(self, stream: dict[str, Any]) -> dict[str, Any]:
        """A stream marked live through the local control has an audience that drifts
        minute by minute around its starting size, as real viewer counts do."""
        base = self.moving.get(stream["user_id"])
        if base is not None:
            minute = time.time() / 60
            phase = sum(map(ord, stream["user_id"])) % 7
            drift = 0.25 * math.sin(minute / 3 + phase) + random.uniform(-0.05, 0.05)
            stream["viewer_count"] = max(1, round(base * (1 + drift)))
        return stream

    def fail(self, path: str, status: int, *, times: int = 1, reset_in: float = 1.0) -> None:
        """The next ``times`` requests under ``path`` answer ``status``."""
        self.failures.append(Failure(path, status, times, reset_in))

    def expire_app_tokens(self) -> None:
        self.app_tokens.clear()

    def revoke_user(self, user_id: str) -> None:
        """The user disconnects the app in Twitch's settings (PROTOCOL.md 5.9)."""
        self.grants.pop(user_id, None)
        for sub in self.subscriptions.values():
            if user_id in sub["condition"].values() and sub["status"] in LIVE:
                sub["status"] = "authorization_revoked"

    def ban_from_chat(self, broadcaster_id: str, user_id: str) -> None:
        """The broadcaster bans ``user_id`` (the bot) from their chat: its chat
        subscription is revoked and new ones are refused until an unban."""
        self.chat_bans.add((broadcaster_id, user_id))
        for sub in self.subscriptions.values():
            condition = sub["condition"]
            if (
                sub["type"] == "channel.chat.message"
                and (condition.get("broadcaster_user_id"), condition.get("user_id"))
                == (broadcaster_id, user_id)
                and sub["status"] in LIVE
            ):
                sub["status"] = "chat_user_banned"

    def unban_from_chat(self, broadcaster_id: str, user_id: str) -> None:
        self.chat_bans.discard((broadcaster_id, user_id))

    def live_subscriptions(self) -> list[dict[str, Any]]:
        return [s for s in self.subscriptions.values() if s["status"] in LIVE]

    async def settled(self) -> None:
        """Wait until every challenge delivery in flight has finished."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- OAuth ----------------------------------------------------------------------------

    async def authorize(self, request: Request) -> Response:
        if request.method == "POST":  # the local consent form's answer
            return await consent_page.answer(self, request)
        q = request.query_params
        if q.get("client_id") != self.client_id or q.get("response_type") != "code":
            return _error(400, "invalid client or response_type")
        redirect_uri, state = q.get("redirect_uri", ""), q.get("state", "")
        if not redirect_uri:
            return _error(400, "missing redirect_uri")
        if self.consent is None:
            return await consent_page.answer(self, request)
        return self.grant(self.consent, q.get("scope", ""), redirect_uri, state)

    def grant(self, consent: Consent, scope: str, redirect_uri: str, state: str) -> Response:
        """Redirect back as Twitch does: ``code`` and ``state``, or ``error=access_denied``."""
        if consent.deny:
            query = {
                "error": "access_denied",
                "error_description": "The user denied you access",
                "state": state,
            }
            return RedirectResponse(f"{redirect_uri}?{urlencode(query)}", status_code=302)
        asked = scope.split()
        scopes = asked if consent.scopes is None else consent.scopes
        code = secrets.token_urlsafe(16)
        self.users.setdefault(consent.user.id, consent.user)
        self.codes[code] = (consent.user.id, scopes, redirect_uri)
        query = {"code": code, "scope": " ".join(scopes), "state": state}
        return RedirectResponse(f"{redirect_uri}?{urlencode(query)}", status_code=302)

    async def token(self, request: Request) -> Response:
        form = await _form(request)
        if (injected := self._injected(request)) is not None:
            return injected
        if form.get("client_id") != self.client_id:
            return JSONResponse({"status": 400, "message": "invalid client"}, status_code=400)
        if form.get("client_secret") != self.client_secret:
            return JSONResponse(
                {"status": 403, "message": "invalid client secret"}, status_code=403
            )
        grant_type = str(form.get("grant_type", ""))
        self.token_grants[grant_type] = self.token_grants.get(grant_type, 0) + 1
        if grant_type == "client_credentials":
            token = "app-" + secrets.token_urlsafe(16)
            self.app_tokens.add(token)
            body = {
                "access_token": token,
                "expires_in": self.app_token_lifetime,
                "token_type": "bearer",
            }
            return JSONResponse(body)
        if grant_type == "authorization_code":
            entry = self.codes.pop(str(form.get("code", "")), None)
            if entry is None or entry[2] != form.get("redirect_uri"):
                return _error(400, "Invalid authorization code")
            return JSONResponse(self._issue(entry[0], entry[1]))
        if grant_type == "refresh_token":
            refresh = str(form.get("refresh_token", ""))
            grant = next((g for g in self.grants.values() if g.refresh_token == refresh), None)
            if grant is None:
                return _error(400, "Invalid refresh token")
            # Rotation: the old refresh token dies with this answer (PROTOCOL.md 5.5).
            return JSONResponse(self._issue(grant.user_id, grant.scopes))
        return _error(400, "unsupported grant_type")

    def _issue(self, user_id: str, scopes: list[str]) -> dict[str, Any]:
        grant = Grant(
            user_id,
            scopes,
            "user-" + secrets.token_urlsafe(16),
            "refresh-" + secrets.token_urlsafe(24) + "%/=",
            time.time() + self.user_token_lifetime,
        )
        self.grants[user_id] = grant
        return {
            "access_token": grant.access_token,
            "expires_in": self.user_token_lifetime,
            "refresh_token": grant.refresh_token,
            "scope": scopes,
            "token_type": "bearer",
        }

    def _user_grant(self, token: str) -> Grant | None:
        grant = next((g for g in self.grants.values() if g.access_token == token), None)
        if grant is None or grant.expires_at <= time.time():
            return None
        return grant

    async def validate(self, request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        token = auth.removeprefix("OAuth ").removeprefix("Bearer ")
        if token in self.app_tokens:
            return JSONResponse({"client_id": self.client_id, "scopes": [], "expires_in": 3600})
        grant = self._user_grant(token)
        if grant is None:
            return JSONResponse({"status": 401, "message": "invalid access token"}, status_code=401)
        user = self.users[grant.user_id]
        return JSONResponse(
            {
                "client_id": self.client_id,
                "login": user.login,
                "scopes": grant.scopes,
                "user_id": user.id,
                "expires_in": int(grant.expires_at - time.time()),
            }
        )

    async def revoke(self, request: Request) -> Response:
        form = await _form(request)
        if form.get("client_id") != self.client_id:
            return JSONResponse(
                {"status": 404, "message": "client does not exist"}, status_code=404
            )
        token = str(form.get("token", ""))
        grant = self._user_grant(token)
        if grant is None:
            return JSONResponse({"status": 400, "message": "Invalid token"}, status_code=400)
        self.grants.pop(grant.user_id, None)
        return Response(status_code=200)

    # -- Helix ----------------------------------------------------------------------------

    def _helix_gate(self, request: Request, *, user_token_ok: bool = False) -> Response | None:
        """Injected failures, the app token, then the rate-limit bucket."""
        self.requests.append((request.method, request.url.path, time.time()))
        if (injected := self._injected(request)) is not None:
            return injected
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if request.headers.get("client-id") != self.client_id:
            return _error(401, "Client ID and OAuth token do not match")
        if token not in self.app_tokens and not (user_token_ok and self._user_grant(token)):
            return _error(401, "Invalid OAuth token")
        allowed, headers = self.bucket.take(time.time())
        request.state.ratelimit = headers
        if not allowed:
            self.refused_by_bucket += 1
            return _error(429, "Too Many Requests", headers)
        return None

    def _injected(self, request: Request) -> Response | None:
        for failure in self.failures:
            if failure.remaining > 0 and request.url.path.startswith(failure.path):
                failure.remaining -= 1
                headers = None
                if failure.status == 429:
                    reset = math.ceil(time.time() + failure.reset_in)
                    headers = {
                        "Ratelimit-Limit": str(self.bucket.points),
                        "Ratelimit-Remaining": "0",
                        "Ratelimit-Reset": str(reset),
                    }
                return _error(failure.status, "injected failure", headers)
        return None

    def _page(self, request: Request, items: list[dict[str, Any]], size: int) -> Response:
        start = int(request.query_params.get("after") or 0)
        chunk = items[start : start + size]
        more = start + size < len(items)
        body: dict[str, Any] = {
            "data": chunk,
            "pagination": {"cursor": str(start + size)} if more else {},
        }
        return JSONResponse(body, headers=request.state.ratelimit)

    async def helix_users(self, request: Request) -> Response:
        if (refused := self._helix_gate(request, user_token_ok=True)) is not None:
            return refused
        ids = request.query_params.getlist("id")
        logins = request.query_params.getlist("login")
        if len(ids) + len(logins) > 100:
            return _error(400, "too many ids")
        if not ids and not logins:
            token = request.headers.get("authorization", "").removeprefix("Bearer ")
            grant = self._user_grant(token)
            if grant is None:
                return _error(400, "id or login required with an app token")
            ids = [grant.user_id]
        users = [u for u in self.users.values() if u.id in ids or u.login in logins]
        data = [
            {
                "id": u.id,
                "login": u.login,
                "display_name": u.display_name,
                "type": "",
                "broadcaster_type": u.broadcaster_type,
                "profile_image_url": u.profile_image_url,
                "created_at": "2020-01-01T00:00:00Z",
            }
            for u in users
        ]
        return JSONResponse({"data": data}, headers=request.state.ratelimit)

    async def helix_streams(self, request: Request) -> Response:
        if (refused := self._helix_gate(request)) is not None:
            return refused
        if self.streams_gate is not None:
            await self.streams_gate.wait()
        ids = request.query_params.getlist("user_id")
        if len(ids) > 100:
            return _error(400, "at most 100 user_id")
        first = int(request.query_params.get("first") or 20)
        if not 1 <= first <= 100:
            return _error(400, "first must be 1-100")
        streams = [self._viewed(s) for uid, s in self.live.items() if not ids or uid in ids]
        streams.sort(key=lambda s: -s["viewer_count"])
        page = self._page(request, streams, first)
        if not ids and self.after_top_page is not None:
            self.after_top_page(int(request.query_params.get("after") or 0))
        return page

    async def helix_channels(self, request: Request) -> Response:
        if (refused := self._helix_gate(request, user_token_ok=True)) is not None:
            return refused
        ids = request.query_params.getlist("broadcaster_id")
        if not 1 <= len(ids) <= 100:
            return _error(400, "1-100 broadcaster_id")
        data = [
            {
                "broadcaster_id": u.id,
                "broadcaster_login": u.login,
                "broadcaster_name": u.display_name,
                "title": self.live.get(u.id, {}).get("title") or self.titles.get(u.id, ""),
                "game_name": self.live.get(u.id, {}).get("game_name", ""),
            }
            for u in self.users.values()
            if u.id in ids
        ]
        return JSONResponse({"data": data}, headers=request.state.ratelimit)

    def total_cost(self) -> int:
        return sum(s["cost"] for s in self.subscriptions.values() if s["status"] in LIVE)

    def _cost_of(self, condition: dict[str, str]) -> int:
        broadcaster = condition.get("broadcaster_user_id")
        return 0 if broadcaster is None or broadcaster in self.grants else 1

    async def eventsub(self, request: Request) -> Response:
        if (refused := self._helix_gate(request)) is not None:
            return refused
        if request.method == "GET":
            return self._list_subscriptions(request)
        if request.method == "DELETE":
            sub_id = request.query_params.get("id")
            if not sub_id:
                return _error(400, "missing id")
            if self.subscriptions.pop(sub_id, None) is None:
                return _error(404, "subscription not found")
            return Response(status_code=204, headers=request.state.ratelimit)
        return await self._create_subscription(request)

    def _list_subscriptions(self, request: Request) -> Response:
        q = request.query_params
        filters = [k for k in ("status", "type", "user_id", "subscription_id") if k in q]
        if len(filters) > 1:
            return _error(400, "filters are mutually exclusive")
        subs = list(self.subscriptions.values())
        if "status" in q:
            subs = [s for s in subs if s["status"] == q["status"]]
        if "type" in q:
            subs = [s for s in subs if s["type"] == q["type"]]
        if "user_id" in q:
            subs = [s for s in subs if q["user_id"] in s["condition"].values()]
        if "subscription_id" in q:
            subs = [s for s in subs if s["id"] == q["subscription_id"]]
        response = self._page(request, subs, self.page_size)
        body = msgspec.json.decode(bytes(response.body))
        body |= {
            "total": len(self.subscriptions),
            "total_cost": self.total_cost(),
            "max_total_cost": self.max_total_cost,
        }
        return JSONResponse(body, headers=request.state.ratelimit)

    async def _create_subscription(self, request: Request) -> Response:
        try:
            body = msgspec.json.decode(await request.body())
            sub_type, version = body["type"], body["version"]
            condition, transport = body["condition"], body["transport"]
            callback, secret = transport["callback"], transport["secret"]
        except (msgspec.DecodeError, KeyError, TypeError):
            return _error(400, "malformed body")
        if transport.get("method") != "webhook" or not 10 <= len(secret) <= 100:
            return _error(400, "invalid transport")
        if version != "1" or not isinstance(condition, dict):
            return _error(400, "invalid subscription type and version")
        if (refused := self._check_authorization(sub_type, condition)) is not None:
            return refused
        for existing in self.live_subscriptions():
            if existing["type"] == sub_type and existing["condition"] == condition:
                return _error(409, "subscription already exists")
        cost = self._cost_of(condition)
        if cost and self.total_cost() + cost > self.max_total_cost:
            return _error(429, "max total cost exceeded")
        sub = {
            "id": str(uuid.uuid4()),
            "status": "webhook_callback_verification_pending",
            "type": sub_type,
            "version": version,
            "condition": condition,
            "created_at": _now_rfc3339(),
            "transport": {"method": "webhook", "callback": callback},
            "cost": cost,
        }
        self.subscriptions[sub["id"]] = sub
        self.secrets[sub["id"]] = secret
        task = asyncio.create_task(self._verify(sub))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        body = {
            "data": [sub],
            "total": len(self.subscriptions),
            "total_cost": self.total_cost(),
            "max_total_cost": self.max_total_cost,
        }
        return JSONResponse(body, status_code=202, headers=request.state.ratelimit)

    def _check_authorization(self, sub_type: str, condition: dict[str, str]) -> Response | None:
        if sub_type == "user.authorization.revoke":
            if condition.get("client_id") != self.client_id:
                return _error(400, "client_id does not match")
            return None
        if condition.get("broadcaster_user_id") not in self.users:
            return _error(400, "condition user does not exist")
        if sub_type == "channel.chat.message":
            bot = self.grants.get(condition.get("user_id", ""))
            channel = self.grants.get(condition["broadcaster_user_id"])
            if bot is None or not set(bot.scopes) >= CHAT_USER_SCOPES:
                return _error(403, "subscription missing proper authorization")
            if channel is None or "channel:bot" not in channel.scopes:
                return _error(403, "subscription missing proper authorization")
            if (condition["broadcaster_user_id"], condition.get("user_id")) in self.chat_bans:
                return _error(403, "subscription missing proper authorization")
        return None

    async def _verify(self, sub: dict[str, Any]) -> None:
        """Twitch's challenge: sent right after the 202, possibly before the creator saw it."""
        challenge = secrets.token_urlsafe(24)
        message_id = str(uuid.uuid4())
        timestamp = _now_rfc3339()
        body = msgspec.json.encode({"challenge": challenge, "subscription": sub})
        secret = self.secrets[sub["id"]].encode()
        headers = {
            "Content-Type": "application/json",
            "Twitch-Eventsub-Message-Id": message_id,
            "Twitch-Eventsub-Message-Retry": "0",
            "Twitch-Eventsub-Message-Type": "webhook_callback_verification",
            "Twitch-Eventsub-Message-Signature": sign(secret, message_id, timestamp, body),
            "Twitch-Eventsub-Message-Timestamp": timestamp,
            "Twitch-Eventsub-Subscription-Type": sub["type"],
            "Twitch-Eventsub-Subscription-Version": sub["version"],
        }
        ok, seen = False, {"id": sub["id"], "status": None, "content_type": None}
        try:
            async with httpx.AsyncClient(timeout=10, follow_redirects=False) as http:
                answer = await http.post(
                    sub["transport"]["callback"], content=body, headers=headers
                )
            media = answer.headers.get("content-type", "").split(";")[0].strip()
            seen |= {"status": answer.status_code, "content_type": media}
            ok = answer.status_code == 200 and media == "text/plain" and answer.text == challenge
        except httpx.HTTPError:
            ok = False
        self.challenges.append(seen)
        if sub["id"] in self.subscriptions:
            sub["status"] = "enabled" if ok else "webhook_callback_verification_failed"
