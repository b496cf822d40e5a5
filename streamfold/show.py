"""``streamfold show BROADCASTER_ID``: a channel's sessions and hourly rows as tables."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from receiver.reads import queries


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%SZ")
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)
    ]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(out)


SESSION_COLUMNS = (
    "id",
    "started_at",
    "ended_at",
    "duration_seconds",
    "chat_messages",
    "unique_chatters",
    "peak_viewers",
    "avg_viewers",
    "hours_watched",
    "started_by",
    "ended_by",
    "chat_complete",
)
HOUR_COLUMNS = (
    "hour",
    "live_seconds",
    "chat_messages",
    "unique_chatters",
    "avg_viewers",
    "peak_viewers",
    "hours_watched",
    "chat_complete",
)


async def render(
    session: AsyncSession, broadcaster_id: str, since: datetime, until: datetime, now: datetime
) -> str:
    sessions = await queries.sessions(session, broadcaster_id, since, until, now=now, limit=500)
    hours = await queries.hourly(session, broadcaster_id, since, until, now=now)
    total = await queries.summary(session, broadcaster_id, since, until, now=now)
    parts = [
        f"channel {broadcaster_id}, {_cell(since)} to {_cell(until)}",
        "",
        f"sessions ({len(sessions)})",
        table(SESSION_COLUMNS, [[getattr(s, c) for c in SESSION_COLUMNS] for s in sessions]),
        "",
        f"hourly rows ({len(hours)})",
        table(HOUR_COLUMNS, [[getattr(h, c) for c in HOUR_COLUMNS] for h in hours]),
        "",
        "summary",
        table(
            (
                "hours_streamed",
                "sessions",
                "chat_messages",
                "unique_chatters",
                "avg_viewers",
                "peak_viewers",
                "hours_watched",
            ),
            [
                [
                    total.hours_streamed,
                    total.sessions,
                    total.chat_messages,
                    total.unique_chatters,
                    total.avg_viewers,
                    total.peak_viewers,
                    total.hours_watched,
                ]
            ],
        ),
    ]
    return "\n".join(parts)
