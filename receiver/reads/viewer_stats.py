"""A viewer's own chat statistics, from ``chatter_hours`` by chatter, per channel and
period, in the wire shapes ``GET /api/viewers/me/stats`` encodes."""

from __future__ import annotations

from datetime import datetime
from itertools import groupby

import msgspec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from receiver.reads.fields import Count, Id, Instant


class ViewerPeriod(msgspec.Struct, frozen=True):
    """One viewer's chat in one channel over one UTC hour or day."""

    start: Instant
    chat_messages: Count
    active_hours: Count


class ViewerChannel(msgspec.Struct, frozen=True):
    broadcaster_id: Id
    login: str | None
    display_name: str | None
    chat_messages: Count
    active_hours: Count
    periods: list[ViewerPeriod]


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


async def viewer_channels(
    session: AsyncSession, chatter_id: str, since: datetime, until: datetime, *, unit: str
) -> list[ViewerChannel]:
    """A chatter's messages per channel and ``unit`` ("hour" or "day") in whole UTC hours
    ``[since, until)``, channels by id, periods by start; callers align the window to whole
    hours (``chatter_hours`` has no finer grain)."""
    if unit not in ("hour", "day"):
        raise ValueError(f"unit must be hour or day, not {unit!r}")
    rows = (
        await session.execute(
            _VIEWER_PERIODS, {"c": chatter_id, "since": since, "until": until, "unit": unit}
        )
    ).all()
    channels = []
    for broadcaster_id, group in groupby(rows, key=lambda r: r.broadcaster_id):
        channel = list(group)
        periods = [ViewerPeriod(r.start, int(r.messages), int(r.hours)) for r in channel]
        channels.append(
            ViewerChannel(
                broadcaster_id=broadcaster_id,
                login=channel[0].login,
                display_name=channel[0].display_name,
                chat_messages=sum(p.chat_messages for p in periods),
                active_hours=sum(p.active_hours for p in periods),
                periods=periods,
            )
        )
    return channels
