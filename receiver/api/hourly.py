"""GET /api/channels/{broadcaster_id}/hourly: one row per UTC hour with activity.

Rows are whole hours starting in ``[floor_hour(since), until)``. CSV is read and sent a
week at a time: hour rows are independent, so cutting the window changes no figure.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta

from starlette.responses import Response

from receiver.api import params, render, shapes
from receiver.api.endpoint import Call
from receiver.context import Context
from receiver.reads import queries

CSV_CHUNK = timedelta(days=7)
COLUMNS = queries.HourRow.__struct_fields__


async def list_hours(call: Call) -> Response:
    window = call.arg(params.WINDOW)
    broadcaster_id = call.broadcaster_id or ""
    if call.arg(params.FORMAT) == "csv":
        chunks = _hours_by_week(call.ctx, broadcaster_id, window, call.now)
        return render.csv_response(COLUMNS, chunks, f"hourly-{broadcaster_id}.csv")
    rows = await queries.hourly(
        call.session, broadcaster_id, window.since, window.until, now=call.now
    )
    return render.json_response(
        shapes.Hourly(
            broadcaster_id=broadcaster_id,
            since=window.since,
            until=window.until,
            hours=rows,
        )
    )


async def _hours_by_week(
    ctx: Context, broadcaster_id: str, window: params.Window, now: datetime
) -> AsyncIterator[Sequence[queries.HourRow]]:
    start = queries.floor_hour(window.since)
    async with ctx.sessions() as session:
        while start < window.until and not window.empty:
            stop = min(start + CSV_CHUNK, window.until)
            yield await queries.hourly(session, broadcaster_id, start, stop, now=now)
            start = stop
