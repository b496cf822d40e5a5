"""Exact distinct chatters from chatter sets, chatter-hours, edge messages and the stored
totals of sessions, checked against a plain ``count(DISTINCT …)`` over the raw messages."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from aggregator import store
from aggregator.chatter_rollup import roll_up
from aggregator.fold import ChatRow, FoldPlan
from receiver.reads.chat_totals import chat_totals, chat_totals_many, span_totals
from schema.db import create_engine, create_sessionmaker

# Two days either side of a month's end: windows cross minutes, hours, days and a month.
T0 = datetime(2026, 1, 30, tzinfo=UTC)
SPAN_MINUTES = 4 * 24 * 60
minutes = st.integers(0, SPAN_MINUTES)
messages = st.lists(st.tuples(minutes, st.integers(0, 7)), max_size=40)


def _at(minute: int, second: int = 0) -> datetime:
    return T0 + timedelta(minutes=minute, seconds=second)


async def _fold(session: AsyncSession, batch: list[tuple[int, int]], tag: str) -> None:
    rows = [ChatRow(f"{tag}-{i}", "1", f"c{c}", _at(m, i % 60)) for i, (m, c) in enumerate(batch)]
    await store.write_plan(session, FoldPlan(chat=rows), {})


_TRUTH = text("""
    SELECT count(*) AS n, count(DISTINCT chatter_id) AS chatters FROM chat_messages
    WHERE broadcaster_id = '1' AND sent_at >= :since AND sent_at < :until AND NOT is_copy
""")


async def _check(
    url: str,
    early: list[tuple[int, int]],
    late: list[tuple[int, int]],
    rolled_to: int,
    windows: list[tuple[int, int]],
    ended: list[tuple[int, int]] = [],  # noqa: B006 - never mutated
) -> None:
    """Fold ``early``, roll up to ``rolled_to`` (sets, and the totals of the sessions
    ``ended`` by then), fold ``late``; every window, and every session as the sessions
    page reads it, must count what the raw messages count."""
    engine = create_engine(url, pool_size=1)
    try:
        sessions = create_sessionmaker(engine)
        async with sessions.begin() as s:
            await s.execute(
                text(
                    "TRUNCATE chat_messages, chatter_hours, channel_hours, "
                    "chatter_sets, chatter_keys, span_chat"
                )
            )
            await s.execute(
                text(
                    "INSERT INTO channels (broadcaster_id, login, display_name) "
                    "VALUES ('1', 'one', 'One') ON CONFLICT DO NOTHING"
                )
            )
            await s.execute(text("DELETE FROM stream_sessions"))
            for i, (a, b) in enumerate(ended):
                await s.execute(
                    text(
                        "INSERT INTO stream_sessions (id, broadcaster_id, started_at, ended_at,"
                        " started_by, ended_by) VALUES (:id, '1', :a, :b, 'eventsub', 'eventsub')"
                    ),
                    {"id": f"s{i}", "a": _at(min(a, b), 15), "b": _at(max(a, b), 45)},
                )
            await _fold(s, early, "early")
            until = _at(rolled_to).replace(minute=0)
            await roll_up(s, ended_after=T0 - timedelta(days=40), until=until)
            await _fold(s, late, "late")  # some sets are stale now, some hours have none
        spans = [(_at(min(a, b)), _at(max(a, b), 30)) for a, b in windows]
        async with sessions() as s:
            got = await chat_totals_many(s, "1", spans)
            for (since, until), totals in zip(spans, got, strict=True):
                truth = (await s.execute(_TRUTH, {"since": since, "until": until})).one()
                assert (totals.chat_messages, totals.unique_chatters) == (truth.n, truth.chatters)
                assert await chat_totals(s, "1", since, until) == totals
            # Sessions: stored totals where current, counted otherwise; and any span that
            # is no session (the live one runs to now) is counted as a window.
            session_spans = [(_at(min(a, b), 15), _at(max(a, b), 45)) for a, b in ended]
            got = await span_totals(s, "1", [*session_spans, *spans])
            for (since, until), totals in zip([*session_spans, *spans], got, strict=True):
                truth = (await s.execute(_TRUTH, {"since": since, "until": until})).one()
                assert (totals.chat_messages, totals.unique_chatters) == (truth.n, truth.chatters)
    finally:
        await engine.dispose()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    early=messages,
    late=messages,
    rolled_to=minutes,
    windows=st.lists(st.tuples(minutes, minutes), min_size=1, max_size=6),
    ended=st.lists(st.tuples(minutes, minutes), max_size=4),
)
# Two sessions with the same span share one stored total.
@example(early=[(90, 1)], late=[], rolled_to=3000, windows=[(0, 200)], ended=[(60, 120)] * 2)
def test_unique_chatters_of_any_window_equal_a_distinct_count_over_the_raw_messages(
    database_url: str,
    early: list[tuple[int, int]],
    late: list[tuple[int, int]],
    rolled_to: int,
    windows: list[tuple[int, int]],
    ended: list[tuple[int, int]],
) -> None:
    asyncio.run(_check(database_url, early, late, rolled_to, windows, ended))


def test_a_year_with_every_set_current_reads_month_sets_not_chatter_hours(
    database_url: str,
) -> None:
    """The whole of a rolled-up month reads one set; a late message makes it stale and
    the read still counts exactly, through the month's days and hours."""
    batch = [(60 * 24 * d + 5, d % 3) for d in range(4)] + [(60 * 24 * 3 + 5, 7)]
    asyncio.run(
        _check(
            database_url,
            batch,
            [(60 * 24 + 30, 6)],
            SPAN_MINUTES,
            [(0, SPAN_MINUTES), (60 * 24 * 2, SPAN_MINUTES)],
        )
    )


def test_a_session_reads_its_stored_totals_until_a_late_message_makes_them_stale(
    database_url: str,
) -> None:
    """A session rolled up reads one stored row; a late message inside it, or only in an
    hour it touches, makes the row stale and the totals are counted again, exactly."""
    early = [(60 + 20, 1), (60 + 50, 2), (120 + 10, 1), (180 + 5, 3), (180 + 40, 4)]
    session = [(60, 180)]  # 01:00:15 to 03:00:45
    # Inside the session's end minutes, then outside it but in an hour it touches.
    for late in ([(180, 5)], [(180 + 30, 6)], []):
        asyncio.run(_check(database_url, early, late, SPAN_MINUTES, [(0, 10)], session))
    asyncio.run(_stored_totals_are_read(database_url))


async def _stored_totals_are_read(url: str) -> None:
    """The stored row is what is read: a planted count shows through while current."""
    engine = create_engine(url, pool_size=1)
    try:
        async with create_sessionmaker(engine).begin() as s:
            row = (await s.execute(text("SELECT * FROM span_chat"))).one()
            await s.execute(text("UPDATE span_chat SET unique_chatters = 99"))
            got = await span_totals(s, "1", [(row.started_at, row.ended_at)])
            assert got[0].unique_chatters == 99
            await _fold(s, [(60 + 30, 7)], "later")
            got = await span_totals(s, "1", [(row.started_at, row.ended_at)])
            truth = (
                await s.execute(_TRUTH, {"since": row.started_at, "until": row.ended_at})
            ).one()
            assert (got[0].chat_messages, got[0].unique_chatters) == (truth.n, truth.chatters)
    finally:
        await engine.dispose()
