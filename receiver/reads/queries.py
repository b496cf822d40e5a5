"""Reads of a channel: sessions, hourly rows and summaries, straight from the aggregate
tables, each returned as the wire shape the JSON API encodes (field names are PRODUCT.md's:
the frontend depends on them).

Used by the JSON API, the pages and ``streamfold show``. The sessions and hourly queries
name their columns after their shape's fields, so a row becomes its shape by name.

Chat figures are exact over any window (``receiver/reads/chat_totals.py``): distinct
chatters are the union of chatter sets, chatter-hours and edge messages, never summed
from smaller windows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from receiver.reads.audience import FIGURES, LATEST, VIEWER_ROWS, viewer_window
from receiver.reads.chat_totals import ChatTotals, chat_totals, span_totals
from receiver.reads.fields import Count, Id, Instant
from receiver.reads.windows import HOUR, ceil_hour, floor_hour

__all__ = ["HOUR", "ChatTotals", "ceil_hour", "chat_totals", "floor_hour"]


# Live time is counted in whole seconds, one way everywhere: each session's start and stop
# are floored to the second first, then durations, hour shares and window totals are
# differences of those instants. Hour tops are whole seconds, so the hour shares of a
# session add up to its ``duration_seconds`` exactly; rounding each share on its own would
# not (0.6 s + 0.6 s of two hours round to 2 s of a 1 s session).


# A channel's sessions never overlap (a new stream closes the open one at its start), so of
# those that began before a window only the latest can reach into it. Starting the index
# range (broadcaster_id, started_at) there reads the window's sessions, not the channel's
# whole history. The three session reads below share this lower bound.


# -- sessions -----------------------------------------------------------------------------


class Session(msgspec.Struct, frozen=True):
    """One stream; `ended_at` is null while live and `duration_seconds` runs to now."""

    id: Id
    broadcaster_id: Id
    started_at: Instant
    ended_at: Instant | None
    duration_seconds: Count
    chat_messages: Count
    unique_chatters: Count
    peak_viewers: Count | None
    avg_viewers: float | None
    hours_watched: float | None
    title: str | None
    game_name: str | None
    started_by: Literal["eventsub", "reconcile"]
    ended_by: Literal["eventsub", "reconcile"] | None
    chat_complete: bool
    # False: retention removed the messages of a partial hour at an edge, so chat
    # figures count the whole hours the session touches.
    chat_exact_edges: bool = True


# The page is cut first (keyset on (started_at, id), index (broadcaster_id, started_at)),
# then each session's viewer figures are read beside it from its stream's ``viewer_hours``
# (kept forever, so old sessions keep them); the page's exact chat totals follow in one
# batch (``chat_totals_many``). The hours are bounded in time so the primary key
# (broadcaster_id, hour, stream_id) finds them; the hour of slack after the end keeps the
# samples Helix still reports for a stream shortly after it went offline.
_SESSIONS = text(f"""
    WITH page AS MATERIALIZED (
        SELECT s.id, s.broadcaster_id, s.started_at, s.ended_at, s.started_by, s.ended_by,
               s.title, s.game_name,
               greatest(coalesce(s.ended_at, :now), s.started_at) AS stop
        FROM stream_sessions s
        WHERE s.broadcaster_id = :b AND s.started_at < :until
          AND s.started_at >= coalesce((SELECT max(p.started_at) FROM stream_sessions p
                         WHERE p.broadcaster_id = :b AND p.started_at < :since), :since)
          AND coalesce(s.ended_at, 'infinity') > :since
          AND (CAST(:before_start AS timestamptz) IS NULL
               OR (s.started_at, s.id)
                  < (CAST(:before_start AS timestamptz), CAST(:before_id AS text)))
        ORDER BY s.started_at DESC, s.id DESC
        LIMIT :limit
    )
    SELECT sp.id, sp.broadcaster_id, sp.started_at, sp.ended_at, sp.started_by, sp.ended_by,
           extract(epoch FROM date_trunc('second', sp.stop, 'UTC')
                              - date_trunc('second', sp.started_at, 'UTC'))::bigint
               AS duration_seconds,
           coalesce(sp.title, v.title) AS title, coalesce(sp.game_name, v.game_name) AS game_name,
           v.peak_viewers, v.avg_viewers, v.hours_watched,
           sp.stop,
           NOT EXISTS (
               SELECT 1 FROM chat_gaps g
               WHERE (g.broadcaster_id = sp.broadcaster_id OR g.broadcaster_id IS NULL)
                 AND g.started_at < sp.stop
                 AND coalesce(g.ended_at, 'infinity') > sp.started_at
           ) AS chat_complete
    FROM page sp
    LEFT JOIN LATERAL (
        SELECT {FIGURES}, {LATEST}
        FROM viewer_hours r
        WHERE r.broadcaster_id = sp.broadcaster_id AND r.stream_id = sp.id
          AND r.hour >= date_trunc('hour', sp.started_at, 'UTC')
          AND r.hour < sp.stop + interval '1 hour'
    ) v ON true
    ORDER BY sp.started_at DESC, sp.id DESC
""")  # noqa: S608 - the fragments are audience.py's constants


async def sessions(
    session: AsyncSession,
    broadcaster_id: str,
    since: datetime,
    until: datetime,
    *,
    now: datetime,
    limit: int = 100,
    before: tuple[datetime, str] | None = None,
) -> list[Session]:
    """Sessions overlapping ``[since, until)``, newest first; ``before`` is the keyset
    cursor (start, id) of the last row of the previous page. An empty window has none."""
    if until <= since:
        return []
    result = await session.execute(
        _SESSIONS,
        {
            "b": broadcaster_id,
            "since": since,
            "until": until,
            "now": now,
            "limit": limit,
            "before_start": before[0] if before else None,
            "before_id": before[1] if before else None,
        },
    )
    # Fields by position: a row's ``_mapping`` costs ~70 µs a row, most of a page's Python.
    names = list(result.keys())
    rows = result.all()
    chat = await span_totals(session, broadcaster_id, [(r.started_at, r.stop) for r in rows])
    pages = []
    for r, c in zip(rows, chat, strict=True):
        fields = dict(zip(names, r, strict=True))
        del fields["stop"]
        pages.append(
            Session(
                **fields,
                chat_messages=c.chat_messages,
                unique_chatters=c.unique_chatters,
                chat_exact_edges=c.exact_edges,
            )
        )
    return pages


# -- hourly rows --------------------------------------------------------------------------


class HourRow(msgspec.Struct, frozen=True):
    """One UTC hour that saw live time, chat or a viewer sample."""

    hour: Instant
    live_seconds: Count
    chat_messages: Count
    unique_chatters: Count
    avg_viewers: float | None
    peak_viewers: Count | None
    hours_watched: float | None
    chat_complete: bool


_HOURLY = text(f"""
    WITH spans AS (
        SELECT date_trunc('second', s.started_at, 'UTC') AS start_s,
               date_trunc('second', coalesce(s.ended_at, :now), 'UTC') AS stop_s
        FROM stream_sessions s
        WHERE s.broadcaster_id = :b AND s.started_at < :until
          AND s.started_at >= coalesce((SELECT max(p.started_at) FROM stream_sessions p
                         WHERE p.broadcaster_id = :b AND p.started_at < :from_hour), :from_hour)
          AND coalesce(s.ended_at, :now) > :from_hour
    ), live AS (
        SELECT h AS hour,
               -- greatest(0, ...): an open session stamped by a sender clock slightly
               -- ahead of ours has not started yet "now".
               sum(greatest(0, extract(epoch FROM
                   least(sp.stop_s, h + interval '1 hour') - greatest(sp.start_s, h))))
                   AS live_seconds
        FROM spans sp,
             generate_series(greatest(date_trunc('hour', sp.start_s, 'UTC'), :from_hour),
                             least(sp.stop_s, :until),
                             interval '1 hour') AS h
        WHERE h < sp.stop_s AND h < :until
        GROUP BY h
    ), chat AS (
        SELECT hour, chat_messages, unique_chatters FROM channel_hours
        WHERE broadcaster_id = :b AND hour >= :from_hour AND hour < :until
    ), samples AS (
        SELECT r.hour, {FIGURES}
        FROM viewer_hours r
        WHERE r.broadcaster_id = :b AND r.hour >= :from_hour AND r.hour < :to_hour
        GROUP BY 1
    ), hours AS (
        SELECT hour FROM live UNION SELECT hour FROM chat UNION SELECT hour FROM samples
    )
    SELECT hours.hour, coalesce(live.live_seconds, 0)::bigint AS live_seconds,
           coalesce(chat.chat_messages, 0) AS chat_messages,
           coalesce(chat.unique_chatters, 0) AS unique_chatters,
           samples.avg_viewers, samples.peak_viewers, samples.hours_watched,
           NOT EXISTS (
               SELECT 1 FROM chat_gaps g
               WHERE (g.broadcaster_id = :b OR g.broadcaster_id IS NULL)
                 AND g.started_at < hours.hour + interval '1 hour'
                 AND coalesce(g.ended_at, 'infinity') > hours.hour
           ) AS chat_complete
    FROM hours
    LEFT JOIN live USING (hour) LEFT JOIN chat USING (hour) LEFT JOIN samples USING (hour)
    ORDER BY hours.hour
""")  # noqa: S608 - the fragments are audience.py's constants


async def hourly(
    session: AsyncSession, broadcaster_id: str, since: datetime, until: datetime, *, now: datetime
) -> list[HourRow]:
    """One row per UTC hour in the window that saw live time, chat or a viewer sample.
    An empty window has none (not even the hour it lies in)."""
    if until <= since:
        return []
    rows = (
        await session.execute(
            _HOURLY,
            {
                "b": broadcaster_id,
                "from_hour": floor_hour(since),
                "to_hour": ceil_hour(until),  # rows are whole hours, samples too
                "until": until,
                "now": now,
            },
        )
    ).all()
    return [HourRow(**r._mapping) for r in rows]  # live seconds are whole already


# -- summary ------------------------------------------------------------------------------


class Summary(msgspec.Struct, frozen=True):
    """Totals over the window; `unique_chatters` is exact over the whole window."""

    broadcaster_id: Id
    since: Instant
    until: Instant
    hours_streamed: float
    sessions: Count
    chat_messages: Count
    unique_chatters: Count
    avg_viewers: float | None
    peak_viewers: Count | None
    hours_watched: float | None
    # False: retention removed the messages of a partial hour at an edge, so chat
    # figures count the whole hours the window touches.
    chat_exact_edges: bool = True
    # The same for the viewer samples and the viewer figures.
    viewer_exact_edges: bool = True


# Sessions and viewer figures (``receiver/reads/audience.py``) in one round trip; chat
# totals follow (``chat_totals``).
_SUMMARY = text(f"""
    SELECT live.sessions, live.live_seconds, viewers.*
    FROM (
        SELECT count(*) AS sessions,
               coalesce(sum(greatest(0, extract(epoch FROM
                   least(date_trunc('second', coalesce(ended_at, :now), 'UTC'), :until)
                   - greatest(date_trunc('second', started_at, 'UTC'), :since)))),
                   0) AS live_seconds
        FROM stream_sessions
        WHERE broadcaster_id = :b AND started_at < :until
          AND started_at >= coalesce((SELECT max(p.started_at) FROM stream_sessions p
                             WHERE p.broadcaster_id = :b AND p.started_at < :since), :since)
          AND coalesce(ended_at, :now) > :since
    ) AS live, (SELECT {FIGURES} FROM ({VIEWER_ROWS}) AS r) AS viewers
""")  # noqa: S608 - the fragments are audience.py's constants


async def summary(
    session: AsyncSession, broadcaster_id: str, since: datetime, until: datetime, *, now: datetime
) -> Summary:
    if until <= since:  # an empty window: nothing streamed, nothing sampled
        return Summary(broadcaster_id, since, until, 0.0, 0, 0, 0, None, None, None)
    viewers = await viewer_window(session, since, until)
    params = {"b": broadcaster_id, "since": since, "until": until, "now": now, **viewers.params}
    row = (await session.execute(_SUMMARY, params)).one()
    chat = await chat_totals(session, broadcaster_id, since, min(until, now))
    return Summary(
        broadcaster_id=broadcaster_id,
        since=since,
        until=until,
        hours_streamed=round(float(row.live_seconds) / 3600.0, 4),
        sessions=int(row.sessions),
        chat_messages=chat.chat_messages,
        unique_chatters=chat.unique_chatters,
        avg_viewers=row.avg_viewers,
        peak_viewers=row.peak_viewers,
        hours_watched=row.hours_watched,
        chat_exact_edges=chat.exact_edges,
        viewer_exact_edges=viewers.exact_edges,
    )
