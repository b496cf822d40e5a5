"""GET /api/channels/{broadcaster_id}/summary: totals over a window.

``unique_chatters`` is exact over the whole window (``receiver/reads/queries.chat_totals``),
never a sum of hourly figures.
"""

from __future__ import annotations

from starlette.responses import Response

from receiver.api import params, render
from receiver.api.endpoint import Call
from receiver.reads import queries


async def channel_summary(call: Call) -> Response:
    window = call.arg(params.WINDOW)
    broadcaster_id = call.broadcaster_id or ""
    total = await queries.summary(
        call.session, broadcaster_id, window.since, window.until, now=call.now
    )
    return render.json_response(total)
