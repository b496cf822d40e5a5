"""GET /api/channels/{broadcaster_id}/sessions: a channel's streams, newest first.

JSON pages are cut by a keyset cursor on (started_at, id), so a page never repeats or
skips a session even while new ones arrive. CSV streams every session of the window,
page by page, without holding the window in memory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime

from starlette.responses import Response

from receiver.api import params, render, shapes
from receiver.api.endpoint import Call
from receiver.context import Context
from receiver.reads import queries

CSV_PAGE = 500
COLUMNS = queries.Session.__struct_fields__


async def list_sessions(call: Call) -> Response:
    window = call.arg(params.WINDOW)
    broadcaster_id = call.broadcaster_id or ""
    if call.arg(params.FORMAT) == "csv":
        chunks = _all_sessions(call.ctx, broadcaster_id, window, call.now)
        return render.csv_response(COLUMNS, chunks, f"sessions-{broadcaster_id}.csv")
    limit = call.arg(params.LIMIT)
    rows = await queries.sessions(
        call.session,
        broadcaster_id,
        window.since,
        window.until,
        now=call.now,
        limit=limit + 1,  # one more tells whether a next page exists
        before=call.arg(params.CURSOR),
    )
    page, more = rows[:limit], len(rows) > limit
    last = page[-1] if page else None
    return render.json_response(
        shapes.SessionPage(
            broadcaster_id=broadcaster_id,
            since=window.since,
            until=window.until,
            sessions=page,
            next=params.encode_cursor(last.started_at, last.id) if more and last else None,
        )
    )


async def _all_sessions(
    ctx: Context, broadcaster_id: str, window: params.Window, now: datetime
) -> AsyncIterator[Sequence[queries.Session]]:
    before: tuple[datetime, str] | None = None
    async with ctx.sessions() as session:
        while True:
            rows = await queries.sessions(
                session, broadcaster_id, window.since, window.until,
                now=now, limit=CSV_PAGE, before=before,
            )  # fmt: skip
            yield rows
            if len(rows) < CSV_PAGE:
                return
            before = (rows[-1].started_at, rows[-1].id)
