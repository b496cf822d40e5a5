"""The one Twitch client: Helix (users, streams, EventSub subscriptions) and OAuth.

One ``httpx.AsyncClient`` (one connection pool) per process; base URLs come only from
settings. Every call goes through ``Transport.send`` for rate limits and retries.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Iterable, Sequence
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlencode

import httpx
import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from schema.events import LIVE_STATUSES, Subscription
from schema.settings import Settings
from schema.twitch.app_token import AppTokenCache, cache_key
from schema.twitch.errors import (
    InvalidAccessToken,
    InvalidRefreshToken,
    TwitchRejected,
)
from schema.twitch.models import (
    AppToken,
    ChannelInfo,
    Page,
    Stream,
    SubscriptionCreated,
    User,
    UserTokens,
    Validation,
)
from schema.twitch.transport import Transport, error_of, rejected

T = TypeVar("T")

HELIX_PAGE_IDS = 100  # Get Streams / Get Users take at most 100 ids per call (6.2, 6.3)
_TIMEOUT = httpx.Timeout(10.0, connect=5.0)


def budget_key(settings: Settings) -> str:
    """Redis hash of the EventSub budget (total_cost and max_total_cost, as Twitch last
    said), one per deployment."""
    return f"{settings.queue_name}:eventsub:budget"


class TwitchClient:
    def __init__(
        self,
        settings: Settings,
        redis: Redis | None,
        *,
        http: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        **transport_options: Any,
    ) -> None:
        self.settings = settings
        self.client_id = settings.twitch_client_id or ""
        # Shared with the subscription manager for its pending-challenge expectations.
        self.redis = redis
        secret = settings.twitch_client_secret
        self._client_secret = secret.get_secret_value() if secret is not None else ""
        self.api_base = settings.twitch_api_base or "https://api.twitch.tv/helix"
        self.auth_base = settings.twitch_auth_base or "https://id.twitch.tv/oauth2"
        self._http = http or httpx.AsyncClient(
            timeout=_TIMEOUT,
            transport=transport,
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
        )
        app_token = (
            AppTokenCache(
                self._fetch_app_token,
                redis,
                cache_key(self.client_id, self.auth_base),
                **({"now": transport_options["now"]} if "now" in transport_options else {}),
            )
            if self._client_secret
            else None
        )
        self.transport = Transport(self._http, self.client_id, app_token, **transport_options)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> TwitchClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- Helix ----------------------------------------------------------------------------

    async def get_users(
        self, *, ids: Sequence[str] = (), logins: Sequence[str] = (), user_token: str | None = None
    ) -> list[User]:
        """Users by id and login; with only ``user_token``, the token's own user."""
        auth: Any = ("bearer", user_token) if user_token else "app"
        wanted = [("id", i) for i in ids] + [("login", name) for name in logins]
        chunks = _chunks(wanted, HELIX_PAGE_IDS) if wanted else [[]]
        users: list[User] = []
        for chunk in chunks:
            users += await self._get_all("/users", chunk, User, auth=auth)
        return users

    async def get_streams(self, user_ids: Sequence[str]) -> list[Stream]:
        """The live streams among ``user_ids`` (offline channels are simply absent)."""
        streams: dict[str, Stream] = {}
        for chunk in _chunks([("user_id", u) for u in user_ids], HELIX_PAGE_IDS):
            # first=100, or Twitch answers only 20 of the 100 ids (PROTOCOL.md 6.2).
            for stream in await self._get_all("/streams", [*chunk, ("first", "100")], Stream):
                # Paging by viewer count can repeat an entry (6.2): keep one per channel.
                streams[stream.user_id] = stream
        return list(streams.values())

    async def get_top_streams(self, limit: int) -> list[Stream]:
        """Up to ``limit`` of Twitch's live streams, most viewers first (Get Streams without
        filters, 100 a page, following cursors). Viewer counts move while we page, so an
        entry can come back on a later page: the first sighting of a channel is kept, and
        repeats do not count towards ``limit``."""
        streams: dict[str, Stream] = {}
        if limit <= 0:
            return []
        pages = self._pages("/streams", [("first", "100")], Stream, auth="app")
        async with contextlib.aclosing(pages):
            async for stream in pages:
                streams.setdefault(stream.user_id, stream)
                if len(streams) >= limit:
                    break
        return list(streams.values())

    async def get_channels(self, broadcaster_ids: Sequence[str]) -> list[ChannelInfo]:
        """Title and category of each channel, live or not (Get Channel Information)."""
        channels: list[ChannelInfo] = []
        for chunk in _chunks([("broadcaster_id", b) for b in broadcaster_ids], HELIX_PAGE_IDS):
            channels += await self._get_all("/channels", chunk, ChannelInfo)
        return channels

    async def list_subscriptions(
        self, *, status: str | None = None, type: str | None = None, user_id: str | None = None
    ) -> list[Subscription]:
        """Every subscription of our client id, all pages, oldest first."""
        filters = [(k, v) for k, v in (("status", status), ("type", type), ("user_id", user_id))]
        params = [(k, v) for k, v in filters if v is not None]
        if len(params) > 1:
            raise ValueError("Twitch accepts one filter at a time (PROTOCOL.md 3.3)")
        return await self._get_all("/eventsub/subscriptions", params, Subscription)

    async def create_subscription(
        self,
        type: str,
        condition: dict[str, str],
        *,
        callback: str,
        secret: str,
        version: str = "1",
    ) -> SubscriptionCreated:
        endpoint = "create subscription"
        body = {
            "type": type,
            "version": version,
            "condition": condition,
            "transport": {"method": "webhook", "callback": callback, "secret": secret},
        }
        url = self.api_base + "/eventsub/subscriptions"
        response = await self.transport.send("POST", url, endpoint=endpoint, json=body)
        if response.status_code == 202:
            page = msgspec.json.decode(response.content, type=Page)
            await self._note_budget(page)
            created = msgspec.convert(page.data[0], Subscription)
            return SubscriptionCreated(subscription=created)
        if response.status_code == 409:
            # Already exists (a restart, or our own retried create): adopt it (3.7).
            for existing in await self.list_subscriptions(type=type):
                if (
                    existing.condition == condition
                    and existing.status in LIVE_STATUSES
                    and existing.transport.callback == callback
                ):
                    return SubscriptionCreated(subscription=existing, adopted=True)
        raise rejected(response, endpoint)

    async def delete_subscription(self, subscription_id: str) -> bool:
        """Delete one subscription; False when Twitch no longer had it."""
        url = self.api_base + "/eventsub/subscriptions"
        response = await self.transport.send(
            "DELETE", url, endpoint="delete subscription", params={"id": subscription_id}
        )
        if response.status_code == 204:
            return True
        if response.status_code == 404:
            return False
        raise rejected(response, "delete subscription")

    # -- OAuth ----------------------------------------------------------------------------

    def authorize_url(
        self, scopes: Iterable[str], state: str, *, redirect_uri: str, force_verify: bool = False
    ) -> str:
        query = {
            "client_id": self.client_id,
            "redirect_uri": redirect_uri,
            "response_type": "code",
            "scope": " ".join(scopes),
            "state": state,
        }
        if force_verify:
            query["force_verify"] = "true"
        return f"{self.auth_base}/authorize?{urlencode(query)}"

    async def exchange_code(self, code: str, *, redirect_uri: str) -> UserTokens:
        form = {"code": code, "grant_type": "authorization_code", "redirect_uri": redirect_uri}
        response = await self._token_request(form, "exchange code")
        if response.status_code != 200:
            raise rejected(response, "exchange code")
        return msgspec.json.decode(response.content, type=UserTokens)

    async def refresh(self, refresh_token: str) -> UserTokens:
        """New tokens; the refresh token may rotate, so store both (PROTOCOL.md 5.5)."""
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        response = await self._token_request(form, "refresh token")
        if response.status_code == 200:
            return msgspec.json.decode(response.content, type=UserTokens)
        message = error_of(response).message.lower()
        if response.status_code in (400, 401) and "refresh token" in message:
            raise InvalidRefreshToken("Twitch refused the refresh token")
        raise rejected(response, "refresh token")

    async def validate(self, access_token: str) -> Validation:
        response = await self.transport.send(
            "GET", self.auth_base + "/validate", endpoint="validate", auth=("oauth", access_token)
        )
        if response.status_code == 401:
            raise InvalidAccessToken("Twitch says the access token is not valid")
        if response.status_code != 200:
            raise rejected(response, "validate")
        return msgspec.json.decode(response.content, type=Validation)

    async def revoke(self, token: str) -> bool:
        """Revoke a user token; False when Twitch says it was already invalid."""
        response = await self.transport.send(
            "POST",
            self.auth_base + "/revoke",
            endpoint="revoke",
            auth="none",
            data={"client_id": self.client_id, "token": token},
        )
        if response.status_code == 200:
            return True
        if response.status_code == 400:
            return False
        raise rejected(response, "revoke")

    # -- internals ------------------------------------------------------------------------

    async def _note_budget(self, page: Page) -> None:
        """Keep Twitch's latest word on the subscription budget where every process
        (metrics, the follow API) reads it."""
        if page.total_cost is None or page.max_total_cost is None or self.redis is None:
            return
        # A figure for operators and follows; the next create or list writes it again.
        with contextlib.suppress(RedisError):
            await self.redis.hset(  # type: ignore[misc]
                budget_key(self.settings),
                mapping={"total_cost": page.total_cost, "max_total_cost": page.max_total_cost},
            )

    async def _fetch_app_token(self) -> tuple[str, int]:
        response = await self._token_request({"grant_type": "client_credentials"}, "app token")
        if response.status_code != 200:
            raise rejected(response, "app token")
        token = msgspec.json.decode(response.content, type=AppToken)
        return token.access_token, token.expires_in

    async def _token_request(self, form: dict[str, str], endpoint: str) -> httpx.Response:
        if not self._client_secret:
            raise TwitchRejected(401, "TWITCH_CLIENT_SECRET is not configured", endpoint=endpoint)
        data = {"client_id": self.client_id, "client_secret": self._client_secret, **form}
        return await self.transport.send(
            "POST", self.auth_base + "/token", endpoint=endpoint, auth="none", data=data
        )

    async def _get_all(
        self, path: str, params: list[tuple[str, str]], item: type[T], *, auth: Any = "app"
    ) -> list[T]:
        return [x async for x in self._pages(path, params, item, auth=auth)]

    async def _pages(
        self, path: str, params: list[tuple[str, str]], item: type[T], *, auth: Any
    ) -> AsyncGenerator[T, None]:
        cursor: str | None = None
        seen: set[str] = set()
        while True:
            query = params + ([("after", cursor)] if cursor else [])
            response = await self.transport.send(
                "GET", self.api_base + path, endpoint=path, auth=auth, params=query
            )
            if response.status_code != 200:
                raise rejected(response, path)
            page = msgspec.json.decode(response.content, type=Page)
            await self._note_budget(page)
            for raw in page.data:
                yield msgspec.convert(raw, item)
            cursor = page.cursor
            # A live list can end on an empty page or hand back a cursor twice (6.4).
            if cursor is None or not page.data or cursor in seen:
                return
            seen.add(cursor)


def _chunks(items: list[T], size: int) -> list[list[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
