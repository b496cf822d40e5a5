"""GET /api/viewers/me/stats: the caller's own chat, per channel and UTC hour or day.

Read from ``chatter_hours`` by the caller's user id only: there is no parameter that
could name another person. Hours are the grain of the aggregates, so the window is
widened to whole hours and the response says which window was used.
"""

from __future__ import annotations

from itertools import groupby

from starlette.responses import Response

from receiver.api import params, render, shapes
from receiver.api.endpoint import Call
from schema.queries import ceil_hour, floor_hour
from schema.viewer_stats import viewer_periods


async def my_stats(call: Call) -> Response:
    window = call.arg(params.WINDOW)
    unit = call.arg(params.GRANULARITY)
    since = floor_hour(window.since)
    until = since if window.empty else ceil_hour(window.until)  # empty stays empty
    rows = await viewer_periods(call.session, call.who.user_id, since, until, unit=unit)
    channels = []
    for broadcaster_id, group in groupby(rows, key=lambda r: r.broadcaster_id):
        periods = list(group)
        channels.append(
            shapes.ViewerChannel(
                broadcaster_id=broadcaster_id,
                login=periods[0].login,
                display_name=periods[0].display_name,
                chat_messages=sum(p.chat_messages for p in periods),
                active_hours=sum(p.active_hours for p in periods),
                periods=[
                    shapes.ViewerPeriod(p.start, p.chat_messages, p.active_hours) for p in periods
                ],
            )
        )
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
