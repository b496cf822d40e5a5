"""One HTTP exchange with Twitch, with the retries Twitch asks for (PROTOCOL.md 5.6, 6.1,
6.5): wait for the bucket's reset on 429, renew the app token once on 401, back off with
jitter on 5xx and network errors. Callers see a final response or ``TwitchUnavailable``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal, cast

import httpx
import msgspec

from schema.logs import get_logger
from schema.metrics import TWITCH_RATELIMIT_REMAINING, TWITCH_REQUESTS
from schema.twitch.app_token import AppTokenCache
from schema.twitch.errors import TwitchRejected, TwitchUnavailable
from schema.twitch.models import ErrorBody
from schema.twitch.ratelimit import RateLimit, backoff, parse_headers, wait_for_reset

log = get_logger("schema.twitch")

# Auth to send: the app token, a user token as Bearer, a token for /validate, or none.
Auth = Literal["app", "none"] | tuple[Literal["bearer", "oauth"], str]
Params = Sequence[tuple[str, str]] | Mapping[str, str] | None


class Transport:
    def __init__(
        self,
        http: httpx.AsyncClient,
        client_id: str,
        app_token: AppTokenCache | None,
        *,
        max_attempts: int = 5,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        now: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.http = http
        self.client_id = client_id
        self.app_token = app_token
        self.max_attempts = max_attempts
        self.sleep = sleep
        self.now = now
        self.rng = rng or random.Random()
        self.rate_limit: RateLimit | None = None
        self.rate_limited_waits = 0  # 429s waited out, for tests and metrics

    async def send(
        self,
        method: str,
        url: str,
        *,
        endpoint: str,
        auth: Auth = "app",
        params: Params = None,
        json: Any = None,
        data: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        attempt = 0
        renewed = False
        while True:
            attempt += 1
            await self._respect_empty_bucket(auth)
            headers, token = await self._headers(auth)
            try:
                response = await self.http.request(
                    method,
                    url,
                    params=cast(Any, params),  # httpx's own alias is private
                    json=json,
                    data=data,
                    headers=headers,
                )
            except httpx.TransportError as exc:
                TWITCH_REQUESTS.labels(endpoint=endpoint, status="network_error").inc()
                if attempt >= self.max_attempts:
                    raise TwitchUnavailable(f"{endpoint}: {type(exc).__name__}") from None
                log.warning("twitch.network_error", endpoint=endpoint, attempt=attempt)
                await self.sleep(backoff(attempt, self.rng))
                continue
            limit = parse_headers(response.headers)
            status = response.status_code
            TWITCH_REQUESTS.labels(endpoint=endpoint, status=str(status)).inc()
            if limit is not None:
                self.rate_limit = limit
                if auth == "app":
                    TWITCH_RATELIMIT_REMAINING.set(limit.remaining)
            if status == 401 and auth == "app" and not renewed and token is not None:
                # The cached app token expired or was revoked: fetch a new one, once.
                assert self.app_token is not None
                await self.app_token.invalidate(token)
                renewed = True
                attempt -= 1
                log.info("twitch.app_token_renewed_after_401", endpoint=endpoint)
                continue
            if status == 429 and not _is_subscription_cap(response):
                if attempt >= self.max_attempts:
                    raise TwitchUnavailable(f"{endpoint}: still rate limited after retries")
                reset = limit.reset_at if limit is not None else None
                delay = wait_for_reset(reset, self.now(), self.rng)
                log.warning("twitch.rate_limited", endpoint=endpoint, wait=round(delay, 3))
                self.rate_limited_waits += 1
                await self.sleep(delay)
                continue
            if status >= 500:
                if attempt >= self.max_attempts:
                    raise TwitchUnavailable(f"{endpoint}: Twitch answered {status}")
                log.warning("twitch.server_error", endpoint=endpoint, status=status)
                await self.sleep(backoff(attempt, self.rng))
                continue
            return response

    async def _respect_empty_bucket(self, auth: Auth) -> None:
        """Wait for the reset instead of spending a request on a certain 429."""
        limit = self.rate_limit
        if auth != "app" or limit is None or limit.remaining > 0:
            return
        if limit.reset_at > self.now():
            await self.sleep(wait_for_reset(limit.reset_at, self.now(), self.rng))
        self.rate_limit = None

    async def _headers(self, auth: Auth) -> tuple[dict[str, str], str | None]:
        headers = {"Client-Id": self.client_id}
        if auth == "app":
            if self.app_token is None:
                raise TwitchRejected(401, "no client secret configured", endpoint="app token")
            token = await self.app_token.get()
            headers["Authorization"] = f"Bearer {token}"
            return headers, token
        if auth == "none":
            return headers, None
        kind, token = auth
        headers["Authorization"] = f"{'Bearer' if kind == 'bearer' else 'OAuth'} {token}"
        return headers, token


def error_of(response: httpx.Response) -> ErrorBody:
    try:
        return msgspec.json.decode(response.content, type=ErrorBody)
    except msgspec.DecodeError:
        return ErrorBody(status=response.status_code, message=response.reason_phrase)


def rejected(response: httpx.Response, endpoint: str) -> TwitchRejected:
    return TwitchRejected(response.status_code, error_of(response).message, endpoint=endpoint)


def _is_subscription_cap(response: httpx.Response) -> bool:
    """Twitch also answers 429 for 'maximum subscriptions with type and condition
    exceeded' (twurple#616): waiting for the bucket does not help there."""
    return "maximum subscriptions" in error_of(response).message.lower()
