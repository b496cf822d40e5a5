"""Signed-in people for API tests: users, channels, login sessions and API tokens,
written the way the OAuth callback and ``POST /api/tokens`` write them."""

from __future__ import annotations

import secrets

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.responses import Response

from receiver.identity import API_TOKEN_PREFIX, SESSION_COOKIE, hash_api_token, start_login_session
from schema.settings import Settings


async def add_user(
    sessions: async_sessionmaker[AsyncSession], user_id: str, login: str, *, streamer: bool
) -> None:
    async with sessions.begin() as session:
        await session.execute(
            text("""INSERT INTO twitch_users (id, login, display_name) VALUES (:id, :l, :d)
                    ON CONFLICT (id) DO NOTHING"""),
            {"id": user_id, "l": login, "d": login.title()},
        )
        if streamer:
            await session.execute(
                text("""INSERT INTO channels (broadcaster_id, login, display_name, connected,
                                              connected_at)
                        VALUES (:id, :l, :d, true, now())
                        ON CONFLICT (broadcaster_id) DO UPDATE SET connected = true"""),
                {"id": user_id, "l": login, "d": login.title()},
            )


async def sign_in(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, user_id: str
) -> dict[str, str]:
    """Headers carrying a fresh login session's signed cookie."""
    response = Response()
    async with sessions.begin() as session:
        await start_login_session(session, settings, user_id, response)
    cookie = response.headers["set-cookie"].split(";", 1)[0]
    assert cookie.startswith(SESSION_COOKIE + "=")
    return {"Cookie": cookie}


async def api_token(sessions: async_sessionmaker[AsyncSession], user_id: str) -> dict[str, str]:
    """Headers carrying a fresh API token of ``user_id``."""
    token = API_TOKEN_PREFIX + secrets.token_urlsafe(32)
    async with sessions.begin() as session:
        await session.execute(
            text("INSERT INTO api_tokens (user_id, name, token_sha256) VALUES (:u, 'test', :h)"),
            {"u": user_id, "h": hash_api_token(token)},
        )
    return {"Authorization": f"Bearer {token}"}
