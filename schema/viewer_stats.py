"""Read model of a viewer's own chat statistics, from ``chatter_hours`` by chatter."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


@dataclass(frozen=True, slots=True)
class ViewerPeriod:
    """One viewer's chat in one channel over one UTC hour or day."""

    broadcaster_id: str
    login: str | None
    display_name: str | None
    start: datetime
    chat_messages: int
    active_hours: int


# Index (chatter_id, hour) on chatter_hours serves this; it never reads other people's rows.
_VIEWER_PERIODS = text("""
    SELECT a.broadcaster_id, c.login, c.display_name, a.start, a.messages, a.hours
    FROM (
        SELECT broadcaster_id, date_trunc(CAST(:unit AS text), hour, 'UTC') AS start,
               sum(messages) AS messages, count(*) AS hours
        FROM chatter_hours
        WHERE chatter_id = :c AND hour >= :since AND hour < :until
        GROUP BY 1, 2
    ) AS a
    LEFT JOIN channels c USING (broadcaster_id)
    ORDER BY a.broadcaster_id, a.start
""")


async def viewer_periods(
    session: AsyncSession, chatter_id: str, since: datetime, until: datetime, *, unit: str
) -> list[ViewerPeriod]:
    """A chatter's messages per channel and ``unit`` ("hour" or "day") in whole UTC hours
    ``[since, until)``; callers align the window to whole hours (``chatter_hours`` has no
    finer grain)."""
    if unit not in ("hour", "day"):
        raise ValueError(f"unit must be hour or day, not {unit!r}")
    rows = (
        await session.execute(
            _VIEWER_PERIODS, {"c": chatter_id, "since": since, "until": until, "unit": unit}
        )
    ).all()
    return [
        ViewerPeriod(r.broadcaster_id, r.login, r.display_name, r.start, int(r.messages), r.hours)
        for r in rows
    ]
