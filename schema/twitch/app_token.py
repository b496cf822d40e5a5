"""The app access token (client credentials), shared by every process through Redis.

Twitch issues app tokens for about two months (PROTOCOL.md 5.6); each process fetching
its own would work, but one cached token keeps token requests to one per expiry.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable

import msgspec
from redis.asyncio import Redis

# Renew this long before Twitch's expiry, capped at a tenth of the lifetime so a short
# lived token (a stand-in's) is still used for most of its life.
RENEW_MARGIN_SECONDS = 3600

# Delete the cached token only if it is still the one that failed: another process may
# already have stored a fresh one.
_DELETE_IF_SAME = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class _Cached(msgspec.Struct, frozen=True):
    token: str
    renew_at: float


def cache_key(client_id: str, auth_base: str) -> str:
    digest = hashlib.sha256(f"{auth_base}|{client_id}".encode()).hexdigest()[:16]
    return f"streamfold:twitch:app-token:{digest}"


class AppTokenCache:
    def __init__(
        self,
        fetch: Callable[[], Awaitable[tuple[str, int]]],
        redis: Redis | None,
        key: str,
        *,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._fetch = fetch
        self._redis = redis
        self._key = key
        self._now = now
        self._local: _Cached | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> str:
        cached = self._local if self._usable(self._local) else await self._read()
        if cached is not None:
            return cached.token
        async with self._lock:
            # Another task may have fetched while this one waited for the lock.
            cached = await self._read()
            if cached is not None:
                return cached.token
            token, expires_in = await self._fetch()
            margin = min(RENEW_MARGIN_SECONDS, expires_in / 10)
            entry = _Cached(token=token, renew_at=self._now() + expires_in - margin)
            self._local = entry
            if self._redis is not None:
                ttl = max(1, int(expires_in - margin))
                await self._redis.set(self._key, msgspec.json.encode(entry), ex=ttl)
            return token

    async def invalidate(self, token: str) -> None:
        """Twitch answered 401 to ``token``: forget it so the next ``get`` fetches anew."""
        if self._local is not None and self._local.token == token:
            self._local = None
        if self._redis is None:
            return
        raw = await self._redis.get(self._key)
        if raw is None or msgspec.json.decode(raw, type=_Cached).token != token:
            return
        await self._redis.eval(_DELETE_IF_SAME, 1, self._key, raw)  # type: ignore[misc]

    def _usable(self, entry: _Cached | None) -> bool:
        return entry is not None and entry.renew_at > self._now()

    async def _read(self) -> _Cached | None:
        if self._local is not None and self._usable(self._local):
            return self._local
        if self._redis is None:
            return None
        raw = await self._redis.get(self._key)
        if raw is None:
            return None
        entry = msgspec.json.decode(raw, type=_Cached)
        if not self._usable(entry):
            return None
        self._local = entry
        return entry
