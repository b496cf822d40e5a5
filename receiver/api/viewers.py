"""GET /api/viewers/me/stats: the caller's own chat, per channel and UTC hour or day.

Read from ``chatter_hours`` by the caller's user id only: there is no parameter that
could name another person. Hours are the grain of the aggregates, so the window is
widened to whole hours and the response says which window was used.
"""

from __future__ import annotations

from starlette.responses import Response

from receiver.api import params, render, shapes
from receiver.api.endpoint import Call
from receiver.reads.queries import ceil_hour, floor_hour
from receiver.reads.viewer_stats import viewer_channels


async def my_stats(call: Call) -> Response:
    window = call.arg(params.WINDOW)
    unit = call.arg(params.GRANULARITY)
    since = floor_hour(window.since)
    until = since if window.empty else ceil_hour(window.until)  # empty stays empty
    channels = await viewer_channels(call.session, call.who.user_id, since, until, unit=unit)
    return render.json_response(
        shapes.ViewerStats(
            user_id=call.who.user_id,
            since=since,
            until=until,
            granularity=unit,
            chat_messages=sum(c.chat_messages for c in channels),
            channels=channels,
        )
    )
