"""Exact chat figures of a channel over any windows: messages and distinct chatters.

A window's whole hours are covered by the largest current chatter sets (a month, else its
days, else their hours; ``schema/chatter_sets.py``), an hour without a current set by its
``chatter_hours`` rows, and the partial hours at the window's edges by ``chat_messages``.
Distinct chatters are the size of the union of all of them, never a sum. The cost follows
the number of sets (at most ~12 months, ~60 days and ~46 hours for a year), not the number
of chatter-hours: a year of the busiest channel is ~130 bitmaps instead of ~900,000 rows.

Messages of whole hours come from ``channel_hours``, whose ``unique_chatters`` also tell
which sets are current. Only the sets a window would read if all were current are fetched,
by primary key; a stale or missing one is replaced by its finer periods.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from typing import Any

from pyroaring import BitMap
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from receiver.reads.windows import (
    Span,
    edge_horizon,
    floor_hour,
    kept_from,
    split,
)
from schema import chatter_sets
from schema.chatter_sets import LEVELS


@dataclass(frozen=True, slots=True)
class ChatTotals:
    chat_messages: int
    unique_chatters: int
    # False: a partial-hour edge lay before the retained chat rows, so the window was
    # answered on the whole hours it touches (``edge_horizon``).
    exact_edges: bool = True


@dataclass(slots=True)
class _Plan:
    """What one window reads: sets, whole hours without a set, and edge-minute spans."""

    whole: Span
    minutes: list[Span]
    sets: list[Span] = field(default_factory=list)
    raw_hours: list[datetime] = field(default_factory=list)


def _plan(since: datetime, until: datetime) -> _Plan:
    whole, edges = split(since, until)
    return _Plan(whole, edges)


def _epoch(t: datetime) -> int:
    return int(t.timestamp())


class _Hours:
    """``channel_hours`` of the hull of all windows (hours as epoch seconds): messages and
    new chatters per hour, as prefix sums."""

    def __init__(self, hours: list[int], messages: list[int], chatter_hours: list[int]) -> None:
        self.hours = hours
        self.messages = [0, *accumulate(messages)]
        self.chatter_hours = [0, *accumulate(chatter_hours)]

    def _range(self, a: datetime, b: datetime) -> tuple[int, int]:
        return bisect_left(self.hours, _epoch(a)), bisect_left(self.hours, _epoch(b))

    def sum_messages(self, a: datetime, b: datetime) -> int:
        i, j = self._range(a, b)
        return self.messages[j] - self.messages[i]

    def sum_chatter_hours(self, a: datetime, b: datetime) -> int:
        i, j = self._range(a, b)
        return self.chatter_hours[j] - self.chatter_hours[i]


def _candidates(a: datetime, b: datetime, level: int) -> list[tuple[Span, int]]:
    """The largest aligned periods of ``LEVELS[level]`` or finer that tile whole hours
    ``[a, b)``: what a window reads when every set is current."""
    out: list[tuple[Span, int]] = []
    for start, end in chatter_sets.periods(a, b, LEVELS[level]):
        lo, hi = max(start, a), min(end, b)
        if (lo, hi) == (start, end):
            out.append(((start, end), level))
        else:
            out += _candidates(lo, hi, level + 1)
    return out


# The hull's hour totals in one row of int8 arrays, hours as epoch seconds: read as rows
# of timestamps, a year of the busiest channel cost ~10 ms of Python (cProfile).
_HOURS = """
    SELECT array_agg(extract(epoch FROM hour)::int8 ORDER BY hour),
           array_agg(chat_messages::int8 ORDER BY hour),
           array_agg(unique_chatters::int8 ORDER BY hour)
    FROM channel_hours
    WHERE broadcaster_id = %(b)s AND hour >= %(since)s AND hour < %(until)s
"""


async def _binary_rows(session: AsyncSession, sql: str, params: object) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` through the session's own connection, fetched in binary."""
    connection = await (await session.connection()).get_raw_connection()
    driver = connection.driver_connection
    assert driver is not None
    async with driver.cursor(binary=True) as cursor:
        await cursor.execute(sql, params)
        rows: list[tuple[Any, ...]] = await cursor.fetchall()
        return rows


async def _hours(session: AsyncSession, b: str, since: datetime, until: datetime) -> _Hours:
    params = {"b": b, "since": since, "until": until}
    hours, messages, chatters = (await _binary_rows(session, _HOURS, params))[0]
    return _Hours(hours or [], messages or [], chatters or [])


# Only the candidate periods, by primary key: reading every set's count in the hull (a
# year: ~1,500 rows, each on its own heap page) took 13 ms in PostgreSQL alone. Fetched in
# binary: a bytea in text format is hex, twice the bytes and a parse.
_SETS = """
    SELECT period_start, period_end, chatter_hours, chatters FROM chatter_sets
    WHERE broadcaster_id = %s
      AND (period_start, period_end) IN (SELECT * FROM unnest(%s::timestamptz[],
                                                              %s::timestamptz[]))
"""


async def _fetch_sets(
    session: AsyncSession, b: str, spans: set[Span]
) -> dict[Span, tuple[int, bytes]]:
    """Sets of ``spans`` that exist: the count of chatter-hours each was built from, and
    its serialized bitmap."""
    if not spans:
        return {}
    ordered = sorted(spans)
    rows = await _binary_rows(session, _SETS, (b, [s for s, _ in ordered], [e for _, e in ordered]))
    return {(r[0].astimezone(UTC), r[1].astimezone(UTC)): (r[2], r[3]) for r in rows}


async def _cover(
    session: AsyncSession, b: str, plans: list[_Plan], hours: _Hours
) -> dict[Span, BitMap]:
    """Cover each plan's whole hours with current sets, the largest first; a missing or
    stale set (its count differs from the hours') is replaced by its finer periods, read
    in one more round trip per level, and an hour without a current set by its raw rows.
    Returns the bitmaps the plans use."""
    pending = [
        (w, span, level)
        for w, p in enumerate(plans)
        if p.whole[0] < p.whole[1]
        for span, level in _candidates(*p.whole, 0)
    ]
    fetched: dict[Span, tuple[int, bytes]] = {}
    used: dict[Span, BitMap] = {}
    while pending:
        fetched.update(await _fetch_sets(session, b, {s for _, s, _ in pending} - fetched.keys()))
        finer = []
        for w, span, level in pending:
            n = hours.sum_chatter_hours(*span)
            if n == 0:
                continue  # nobody chatted
            got = fetched.get(span)
            if got is not None and got[0] == n:
                plans[w].sets.append(span)
                if span not in used:
                    used[span] = chatter_sets.decode(got[1])
            elif LEVELS[level] == "hour":
                plans[w].raw_hours.append(span[0])
            else:
                nxt = LEVELS[level + 1]
                finer += [(w, s, level + 1) for s in chatter_sets.periods(*span, nxt)]
        pending = finer
    return used


@dataclass(slots=True)
class Edges:
    """The chatters a window's raw rows add: those with a key go into the bitmap, those
    not rolled up yet are kept by id (a key and an id never name the same chatter twice,
    since the key table maps ids one to one)."""

    keys: BitMap = field(default_factory=BitMap)
    unkeyed: set[str] = field(default_factory=set)
    messages: int = 0


# Whole hours without a current set read their chatter-hours. ``w`` numbers the window
# each hour belongs to.
_RAW_HOURS = text("""
    SELECT s.w, h.chatter_id, k.chatter_key
    FROM unnest(CAST(:ws AS int[]), CAST(:hours AS timestamptz[])) AS s(w, hour)
    JOIN chatter_hours h ON h.broadcaster_id = :b AND h.hour = s.hour
    LEFT JOIN chatter_keys k USING (chatter_id)
""")

# The partial hours at the windows' edges read the messages themselves.
_EDGE_MINUTES = text("""
    SELECT s.w, m.chatter_id, k.chatter_key, count(*) AS n
    FROM unnest(CAST(:ws AS int[]), CAST(:froms AS timestamptz[]),
                CAST(:tos AS timestamptz[])) AS s(w, f, t)
    JOIN chat_messages m ON m.broadcaster_id = :b AND m.sent_at >= s.f AND m.sent_at < s.t
        AND NOT m.is_copy  -- primaries only; their day prunes the partitions
        AND m.day BETWEEN (s.f AT TIME ZONE 'UTC')::date AND (s.t AT TIME ZONE 'UTC')::date
    LEFT JOIN chatter_keys k USING (chatter_id)
    GROUP BY s.w, m.chatter_id, k.chatter_key
""")


def _add(edges: dict[int, Edges], w: int, chatter_id: str, key: int | None, n: int) -> None:
    e = edges.setdefault(w, Edges())
    e.messages += n
    if key is None:
        e.unkeyed.add(chatter_id)
    else:
        e.keys.add(key)


async def raw_hour_chatters(
    session: AsyncSession,
    b: str,
    raw_hours: Sequence[tuple[int, datetime]],
    edges: dict[int, Edges],
) -> None:
    """Add the chatters of whole hours without a current set (``chatter_hours``) to the
    ``Edges`` of each window ``w``; their messages are counted from ``channel_hours``."""
    if not raw_hours:
        return
    params = {"b": b, "ws": [w for w, _ in raw_hours], "hours": [h for _, h in raw_hours]}
    for r in (await session.execute(_RAW_HOURS, params)).all():
        _add(edges, r.w, r.chatter_id, r.chatter_key, 0)


async def edge_minute_chatters(
    session: AsyncSession,
    b: str,
    minute_spans: Sequence[tuple[int, datetime, datetime]],
    edges: dict[int, Edges],
) -> None:
    """Add the chatters and messages of the ``[from, to)`` spans (the partial hours at a
    window's edges, ``_plan``) to the ``Edges`` of each window ``w``, from the messages."""
    if not minute_spans:
        return
    params = {
        "b": b,
        "ws": [w for w, _, _ in minute_spans],
        "froms": [f for _, f, _ in minute_spans],
        "tos": [t for _, _, t in minute_spans],
    }
    for r in (await session.execute(_EDGE_MINUTES, params)).all():
        _add(edges, r.w, r.chatter_id, r.chatter_key, int(r.n))


async def chat_totals_many(
    session: AsyncSession, broadcaster_id: str, windows: Sequence[Span]
) -> list[ChatTotals]:
    """Messages and distinct chatters of one channel in each ``[since, until)``, exactly
    (on whole hours where retention removed an edge's messages), in six round trips
    whatever the number of windows (and one more per level of sets found stale or
    missing)."""
    kept = await kept_from(session, "chat_messages")
    horizons = [edge_horizon(s, u, kept) if s < u else ((s, u), True) for s, u in windows]
    windows = [w for w, _ in horizons]
    plans = [_plan(s, u) if s < u else _Plan((s, s), []) for s, u in windows]
    whole = [p.whole for p in plans if p.whole[0] < p.whole[1]]
    if whole:
        since, until = min(a for a, _ in whole), max(b for _, b in whole)
        hours = await _hours(session, broadcaster_id, since, until)
    else:
        hours = _Hours([], [], [])
    bitmaps = await _cover(session, broadcaster_id, plans, hours)
    edges: dict[int, Edges] = {}
    raw_hours = [(w, h) for w, p in enumerate(plans) for h in p.raw_hours]
    await raw_hour_chatters(session, broadcaster_id, raw_hours, edges)
    minute_spans = [(w, a, b) for w, p in enumerate(plans) for a, b in p.minutes]
    await edge_minute_chatters(session, broadcaster_id, minute_spans, edges)
    totals = []
    for w, p in enumerate(plans):
        e = edges.get(w, Edges())
        union = BitMap.union(e.keys, *(bitmaps[s] for s in p.sets))
        totals.append(
            ChatTotals(
                hours.sum_messages(*p.whole) + e.messages,
                len(union) + len(e.unkeyed),
                horizons[w][1],
            )
        )
    return totals


async def chat_totals(
    session: AsyncSession, broadcaster_id: str, since: datetime, until: datetime
) -> ChatTotals:
    """Messages and distinct chatters of one channel in ``[since, until)``, exactly."""
    return (await chat_totals_many(session, broadcaster_id, [(since, until)]))[0]


# Stored totals of closed spans (``span_chat``, counted by the rollup when a session ends)
# from the first span's start to the last one's, and the messages of the hours they touch,
# in one row of arrays (times in microseconds): a span's totals are current while the hours
# it touches hold as many messages as when they were counted (``hour_messages``).
_SPAN_TOTALS = """
    SELECT h.hours, h.messages, t.starts, t.ends, t.stamps, t.messages, t.chatters
    FROM (SELECT array_agg(extract(epoch FROM hour)::int8 * 1000000 ORDER BY hour) AS hours,
                 array_agg(chat_messages::int8 ORDER BY hour) AS messages
          FROM channel_hours
          WHERE broadcaster_id = %(b)s AND hour >= %(hours_from)s AND hour < %(until)s) AS h,
         (SELECT array_agg((extract(epoch FROM started_at) * 1000000)::int8) AS starts,
                 array_agg((extract(epoch FROM ended_at) * 1000000)::int8) AS ends,
                 array_agg(hour_messages) AS stamps, array_agg(chat_messages) AS messages,
                 array_agg(unique_chatters::int8) AS chatters
          FROM span_chat
          WHERE broadcaster_id = %(b)s AND started_at >= %(since)s AND started_at <= %(last)s
            AND ended_at <= %(until)s) AS t
"""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _micros(t: datetime) -> int:
    return (t - _EPOCH) // _MICROSECOND


async def _stored_span_totals(
    session: AsyncSession, broadcaster_id: str, spans: Sequence[Span]
) -> dict[int, ChatTotals]:
    """The current stored totals of those ``spans`` that have them, by index."""
    params = {
        "b": broadcaster_id,
        "hours_from": floor_hour(min(s for s, _ in spans)),
        "since": min(s for s, _ in spans),
        "last": max(s for s, _ in spans),
        "until": max(u for _, u in spans),
    }
    hours, hour_messages, starts, ends, stamps, messages, chatters = (
        await _binary_rows(session, _SPAN_TOTALS, params)
    )[0]
    if not starts:
        return {}
    touched = [0, *accumulate(hour_messages or [])]
    hours = hours or []
    stored = {
        (a, b): (stamp, ChatTotals(n, c))
        for a, b, stamp, n, c in zip(starts, ends, stamps, messages, chatters, strict=True)
    }
    found = {}
    for i, (since, until) in enumerate(spans):
        got = stored.get((_micros(since), _micros(until)))
        if got is None:
            continue
        lo = bisect_left(hours, _micros(floor_hour(since)))
        hi = bisect_left(hours, _micros(until))
        if touched[hi] - touched[lo] == got[0]:
            found[i] = got[1]
    return found


async def span_totals(
    session: AsyncSession, broadcaster_id: str, spans: Sequence[Span]
) -> list[ChatTotals]:
    """``chat_totals_many`` for spans that are often whole sessions: a span with current
    stored totals reads them (one round trip for all), the others (a live session, one not
    rolled up yet or changed by a late message) are counted from the sets and raw rows."""
    if not spans:
        return []
    found = await _stored_span_totals(session, broadcaster_id, spans)
    missing = [i for i in range(len(spans)) if i not in found]
    if missing:
        counted = await chat_totals_many(session, broadcaster_id, [spans[i] for i in missing])
        found.update(zip(missing, counted, strict=True))
    return [found[i] for i in range(len(spans))]
