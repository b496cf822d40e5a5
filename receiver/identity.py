"""Who is asking: login sessions (signed cookie -> ``login_sessions`` row) and API tokens.

The OAuth callback starts a session with ``start_login_session``; logout ends it with
``end_login_session``; every API request is identified once by ``identify``. What an
identity may read is decided from ``Identity`` alone (``receiver/api/access.py``).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response

from schema.settings import Settings

SESSION_COOKIE = "streamfold_session"
SESSION_LIFETIME = timedelta(days=14)
API_TOKEN_PREFIX = "sfk_"  # noqa: S105 - a prefix, not a secret


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: str
    login: str
    is_streamer: bool  # has a channel of their own in streamfold
    is_operator: bool  # listed in OPERATOR_USER_IDS: may read every channel
    via: str  # "session" or "api_token"
    session_id: str | None = None

    def may_read_channel(self, broadcaster_id: str) -> bool:
        return self.is_operator or (self.is_streamer and broadcaster_id == self.user_id)


def _serializer(settings: Settings) -> URLSafeSerializer:
    secret = settings.session_secret.get_secret_value() if settings.session_secret else ""
    if not secret:
        raise RuntimeError("SESSION_SECRET is required to sign browser sessions")
    return URLSafeSerializer(secret, salt="streamfold.session")


def hash_api_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def cookies_secure(settings: Settings) -> bool:
    """Cookies are marked Secure when the public URL is HTTPS; a plain-HTTP local run
    would otherwise never send them back."""
    return (settings.public_base_url or "").startswith("https://")


async def start_login_session(
    session: AsyncSession,
    settings: Settings,
    user_id: str,
    response: Response,
    *,
    now: datetime | None = None,
) -> str:
    """Record a new login session and set its signed cookie on ``response``."""
    now = now or datetime.now(UTC)
    session_id = secrets.token_urlsafe(32)
    await session.execute(
        text("INSERT INTO login_sessions (id, user_id, expires_at) VALUES (:id, :u, :exp)"),
        {"id": session_id, "u": user_id, "exp": now + SESSION_LIFETIME},
    )
    response.set_cookie(
        SESSION_COOKIE,
        _serializer(settings).dumps(session_id),
        max_age=int(SESSION_LIFETIME.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=cookies_secure(settings),
        path="/",
    )
    return session_id


async def end_login_session(
    session: AsyncSession, settings: Settings, request: Request, response: Response
) -> None:
    session_id = session_id_from_cookie(settings, request)
    if session_id is not None:
        await session.execute(
            text("UPDATE login_sessions SET ended_at = now() WHERE id = :id AND ended_at IS NULL"),
            {"id": session_id},
        )
    response.delete_cookie(SESSION_COOKIE, path="/")


async def end_sessions_of(session: AsyncSession, user_id: str) -> None:
    """Sign a user out everywhere (revoked authorization, invalid token)."""
    await session.execute(
        text("UPDATE login_sessions SET ended_at = now() WHERE user_id = :u AND ended_at IS NULL"),
        {"u": user_id},
    )


def session_id_from_cookie(settings: Settings, request: Request) -> str | None:
    raw = request.cookies.get(SESSION_COOKIE)
    if not raw:
        return None
    try:
        value = _serializer(settings).loads(raw)
    except BadSignature:
        return None
    return value if isinstance(value, str) else None


_IDENTITY_BY_SESSION = text("""
    SELECT u.id, u.login, s.id AS session_id,
           EXISTS (SELECT 1 FROM channels c WHERE c.broadcaster_id = u.id) AS is_streamer
    FROM login_sessions s JOIN twitch_users u ON u.id = s.user_id
    WHERE s.id = :sid AND s.ended_at IS NULL AND s.expires_at > now()
""")
_IDENTITY_BY_TOKEN = text("""
    UPDATE api_tokens t SET last_used_at = now()
    FROM twitch_users u
    WHERE t.token_sha256 = :h AND t.revoked_at IS NULL AND u.id = t.user_id
    RETURNING u.id, u.login,
              EXISTS (SELECT 1 FROM channels c WHERE c.broadcaster_id = u.id) AS is_streamer
""")


async def identify(session: AsyncSession, settings: Settings, request: Request) -> Identity | None:
    """The caller's identity from ``Authorization: Bearer sfk_...`` or the session cookie."""
    authorization = request.headers.get("authorization", "")
    if authorization.lower().startswith("bearer "):
        token = authorization[7:].strip()
        if not token.startswith(API_TOKEN_PREFIX):
            return None
        row = (await session.execute(_IDENTITY_BY_TOKEN, {"h": hash_api_token(token)})).first()
        return None if row is None else _identity(row, settings, via="api_token")
    session_id = session_id_from_cookie(settings, request)
    if session_id is None:
        return None
    row = (await session.execute(_IDENTITY_BY_SESSION, {"sid": session_id})).first()
    if row is None:
        return None
    return _identity(row, settings, via="session", session_id=row.session_id)


def _identity(row: Any, settings: Settings, *, via: str, session_id: str | None = None) -> Identity:
    return Identity(
        row.id,
        row.login,
        bool(row.is_streamer),
        row.id in settings.operator_ids,
        via=via,
        session_id=session_id,
    )
