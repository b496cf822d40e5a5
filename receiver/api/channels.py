"""DELETE /api/channels/{broadcaster_id}: the streamer disconnects their channel.

``schema/channels.disconnect_channel`` does the work, the same way a revoked
authorization does: the channel is marked disconnected, its subscriptions are deleted at
Twitch (left for the next sync if Twitch is down), its tokens revoked and deleted; with
``?purge=true`` every aggregate of the channel goes too. The channel row stays,
disconnected, so the streamer can still sign in and connect again.
"""

from __future__ import annotations

from starlette.responses import Response

from receiver.api import params, render, shapes
from receiver.api.endpoint import Call
from schema.errors import TwitchClientMissing
from schema.twitch.channels import disconnect_channel


async def disconnect(call: Call) -> Response:
    broadcaster_id = call.broadcaster_id or ""
    purge = call.arg(params.PURGE)
    if call.ctx.twitch is None:
        raise TwitchClientMissing("the Twitch client is not configured; retry later")
    await disconnect_channel(call.session, call.ctx.twitch, broadcaster_id, purge=purge)
    return render.json_response(
        shapes.Disconnected(broadcaster_id=broadcaster_id, connected=False, purged=purge)
    )
