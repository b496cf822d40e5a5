"""DELETE /api/channels/{broadcaster_id}: the streamer disconnects their channel.

The channel stops being folded and its Twitch tokens are deleted at once; with
``?purge=true`` every session, hourly row, chat record and viewer sample of it goes too.
"""

from __future__ import annotations

from sqlalchemy import text
from starlette.responses import Response

from receiver.api import params, render, shapes
from receiver.api.endpoint import Call

_DISCONNECT = text("""
    UPDATE channels SET connected = false, disconnected_at = coalesce(disconnected_at, now())
    WHERE broadcaster_id = :b
""")
_DELETE_TOKENS = text("DELETE FROM oauth_tokens WHERE user_id = :b")
# Everything folded or sampled for the channel; the channels row itself stays (disconnected)
# so the streamer can still sign in, see it and connect again.
_PURGE = tuple(
    text(f"DELETE FROM {table} WHERE broadcaster_id = :b")  # noqa: S608 - fixed table names
    for table in (
        "stream_sessions",
        "stream_offlines",
        "chat_messages",
        "chatter_hours",
        "channel_hours",
        "chat_gaps",
        "viewer_samples",
    )
)


async def disconnect(call: Call) -> Response:
    broadcaster_id = call.broadcaster_id or ""
    purge = call.arg(params.PURGE)
    await call.session.execute(_DISCONNECT, {"b": broadcaster_id})
    await call.session.execute(_DELETE_TOKENS, {"b": broadcaster_id})
    if purge:
        for statement in _PURGE:
            await call.session.execute(statement, {"b": broadcaster_id})
    return render.json_response(
        shapes.Disconnected(broadcaster_id=broadcaster_id, connected=False, purged=purge)
    )
