"""Windows over hourly rollups: whole UTC hours, partial-hour edges, and what retention
left of the raw rows the edges are read from.

A read over ``[since, until)`` takes its whole hours from a rollup kept forever
(``channel_hours``, chatter sets, ``viewer_hours``) and its partial hours at the edges
from raw rows (``chat_messages``, ``viewer_samples``). Raw rows are removed after
``RETENTION_DAYS``; ``retention_marks`` says from when a raw table is complete. An edge
whose partial hour began before that is widened to its whole hour, and the read says so
(``chat_exact_edges`` / ``viewer_exact_edges: false``): never a silent undercount.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

HOUR = timedelta(hours=1)
Span = tuple[datetime, datetime]


def floor_hour(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def ceil_hour(t: datetime) -> datetime:
    floored = floor_hour(t)
    return floored if floored == t else floored + HOUR


_KEPT_FROM = text("SELECT removed_before FROM retention_marks WHERE table_name = :table")


async def kept_from(session: AsyncSession, table: str) -> datetime | None:
    """Since when raw ``table`` holds every row (None: retention never removed any)."""
    kept = await session.scalar(_KEPT_FROM, {"table": table})
    return kept.astimezone(UTC) if kept is not None else None


def edge_horizon(since: datetime, until: datetime, kept: datetime | None) -> tuple[Span, bool]:
    """The window a read covers, and whether its edges are exact: an edge whose partial
    hour began before ``kept`` (its raw rows were removed) moves out to the whole hour."""
    if kept is None:
        return (since, until), True
    start = floor_hour(since) if since < kept else since
    end = ceil_hour(until) if floor_hour(until) < kept else until
    return (start, end), (start, end) == (since, until)


def split(since: datetime, until: datetime) -> tuple[Span, list[Span]]:
    """``[since, until)`` as its whole hours (possibly empty) and the partial-hour spans
    at its edges (none, one or two; the whole window when no hour fits inside)."""
    full_from, full_to = ceil_hour(since), floor_hour(until)
    if full_from >= full_to:
        return (since, since), [(since, until)] if since < until else []
    edges = [(since, full_from), (full_to, until)]
    return (full_from, full_to), [(a, b) for a, b in edges if a < b]
