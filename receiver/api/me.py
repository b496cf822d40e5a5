"""GET /api/me: who am I, my roles, and the channels I may read."""

from __future__ import annotations

from typing import Literal

from sqlalchemy import text
from starlette.responses import Response

from receiver.api import render, shapes
from receiver.api.endpoint import Call

_USER = text("SELECT login, display_name FROM twitch_users WHERE id = :u")
_COLUMNS = """broadcaster_id, login, display_name, connected,
               CASE WHEN chat_blocked THEN chat_revocation END AS chat_blocked_reason"""
_ALL_CHANNELS = text(f"SELECT {_COLUMNS} FROM channels ORDER BY broadcaster_id")  # noqa: S608
_OWN_CHANNEL = text(f"SELECT {_COLUMNS} FROM channels WHERE broadcaster_id = :u")  # noqa: S608


async def whoami(call: Call) -> Response:
    who = call.who
    user = (await call.session.execute(_USER, {"u": who.user_id})).one()
    if who.is_operator:
        rows = (await call.session.execute(_ALL_CHANNELS)).all()
    elif who.is_streamer:
        rows = (await call.session.execute(_OWN_CHANNEL, {"u": who.user_id})).all()
    else:
        rows = []
    roles: list[Literal["viewer", "streamer", "operator"]] = ["viewer"]
    if who.is_streamer:
        roles.append("streamer")
    if who.is_operator:
        roles.append("operator")
    return render.json_response(
        shapes.Me(
            user_id=who.user_id,
            login=user.login,
            display_name=user.display_name,
            roles=roles,
            channels=[
                shapes.ChannelRef(
                    r.broadcaster_id,
                    r.login,
                    r.display_name,
                    bool(r.connected),
                    r.chat_blocked_reason,
                )
                for r in rows
            ],
            reads_all_channels=who.is_operator,
            authenticated_by="api_token" if who.via == "api_token" else "session",
        )
    )
