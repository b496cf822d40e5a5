"""/api/follows: the channels I follow, to learn when they go live (``/api/live/events``).

Following and unfollowing are idempotent; the channel's tracking and its EventSub
subscriptions follow from ``schema/follows.py``, which serialises concurrent changes of
one channel across every web process.
"""

from __future__ import annotations

import msgspec
from starlette.responses import Response

from receiver.api import render, shapes
from receiver.api.endpoint import Call
from receiver.live_events import live_events
from schema.errors import InvalidParameter, StreamfoldError
from schema.twitch import TwitchClient
from schema.twitch.follows import (
    ChannelName,
    Follower,
    FollowResult,
    follow,
    followed_by,
    resolve_channel,
    unfollow,
)

_decode_request = msgspec.json.Decoder(shapes.FollowRequest)


class TwitchNotConfigured(StreamfoldError):
    status_code = 503
    code = "twitch_not_configured"


def _twitch(call: Call) -> TwitchClient:
    if call.ctx.twitch is None:
        raise TwitchNotConfigured("this deployment has no Twitch client")
    return call.ctx.twitch


def _shape(result: FollowResult) -> shapes.Followed:
    return shapes.Followed(
        result.broadcaster_id,
        result.login,
        result.display_name,
        result.following,
        result.subscriptions_pending,
    )


async def list_follows(call: Call) -> Response:
    follows = await followed_by(call.session, Follower("user", call.who.user_id))
    return render.json_response(
        shapes.FollowList([_shape(f) for f in follows], call.ctx.settings.follow_limit)
    )


async def add_follow(call: Call) -> Response:
    """201 when the follow is new, 200 when I already followed the channel."""
    example = '{"broadcaster_id": "1337"} or {"login": "coolstreamer"}'
    try:
        wanted = _decode_request.decode(call.body)
    except msgspec.ValidationError as exc:
        raise InvalidParameter("body", f"{exc} (send {example})") from None
    except msgspec.DecodeError:
        raise InvalidParameter("body", f"must be JSON such as {example}") from None
    if (wanted.broadcaster_id is None) == (wanted.login is None):
        raise InvalidParameter(
            "body", f"name the channel by one of broadcaster_id or login: {example}"
        )
    twitch = _twitch(call)
    channel: ChannelName = await resolve_channel(
        twitch, broadcaster_id=wanted.broadcaster_id, login=wanted.login
    )
    result = await follow(
        call.session, twitch, call.ctx.settings, channel, Follower("user", call.who.user_id)
    )
    return render.json_response(_shape(result), status_code=201 if result.changed else 200)


async def live_stream(call: Call) -> Response:
    """Server-Sent Events of my channels' online/offline (``receiver/live_events.py``)."""
    return await live_events(call.request, call.who)


async def remove_follow(call: Call) -> Response:
    """Idempotent: 204 whether or not I followed the channel."""
    assert call.broadcaster_id is not None  # the route has {broadcaster_id}
    await unfollow(
        call.session,
        _twitch(call),
        call.ctx.settings,
        call.broadcaster_id,
        Follower("user", call.who.user_id),
    )
    return Response(status_code=204)
