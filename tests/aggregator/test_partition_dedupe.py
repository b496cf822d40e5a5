"""Dedupe across day partitions: a message delivered twice, stamped on either side of
midnight, counts once while its two timestamps are less than the dedupe horizon apart.

Real PostgreSQL, the real fold path; only the deliveries' timestamps and order vary.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from aggregator.pipeline import fold_deliveries
from schema.db import create_engine, create_sessionmaker
from schema.events import Delivery
from schema.partitions import HORIZON
from streamfold.eventsub_sender import chat_message_body, rfc3339

MIDNIGHT = datetime(2026, 11, 30, tzinfo=UTC)
CHAT = "channel.chat.message"


def _chat(eventsub_id: str, at: datetime, chat_id: str = "m-1") -> Delivery:
    return Delivery(eventsub_id, rfc3339(at), CHAT, chat_message_body("7", "u1", chat_id))


async def _fold(database_url: str, deliveries: list[Delivery]) -> dict[str, Any]:
    """Fold each delivery in its own transaction; what the tables then count."""
    engine = create_engine(database_url, pool_size=1)
    sessions = create_sessionmaker(engine)
    try:
        async with sessions.begin() as session:
            await session.execute(
                text("TRUNCATE chat_messages, chatter_hours, channel_hours, folded_messages")
            )
        fresh = 0
        for delivery in deliveries:
            async with sessions.begin() as session:
                fresh += len((await fold_deliveries(session, [delivery])).fresh)
        async with sessions() as session:

            async def one(sql: str) -> Any:
                return (await session.execute(text(sql))).scalar_one()

            return {
                "fresh": fresh,
                "counted": await one("SELECT coalesce(sum(chat_messages), 0) FROM channel_hours"),
                "chatter_hours": await one("SELECT coalesce(sum(messages), 0) FROM chatter_hours"),
                "primaries": await one("SELECT count(*) FROM chat_messages WHERE NOT is_copy"),
            }
    finally:
        await engine.dispose()


def test_a_redelivery_with_a_refreshed_timestamp_across_midnight_counts_once(
    database_url: str,
) -> None:
    first, again = MIDNIGHT - timedelta(seconds=30), MIDNIGHT + timedelta(minutes=20)
    for order in ([first, again], [again, first]):
        result = asyncio.run(_fold(database_url, [_chat("ev-1", at) for at in order]))
        assert result == {"fresh": 1, "counted": 1, "chatter_hours": 1, "primaries": 1}


def test_a_rotation_duplicate_across_midnight_counts_once(database_url: str) -> None:
    """Two subscriptions deliver one chat message under two EventSub ids, stamped apart."""
    old_sub = _chat("ev-old", MIDNIGHT + timedelta(seconds=2))
    new_sub = _chat("ev-new", MIDNIGHT - timedelta(seconds=3))
    for order in ([old_sub, new_sub], [new_sub, old_sub]):
        result = asyncio.run(_fold(database_url, order))
        # Both deliveries are new to the ledger; the chat message counts once, and the
        # later one's primary row it could insert is no primary.
        assert result == {"fresh": 2, "counted": 1, "chatter_hours": 1, "primaries": 1}


def test_beyond_the_horizon_a_redelivery_across_midnight_counts_again(
    database_url: str,
) -> None:
    """The documented bound: stamped a horizon or more apart, in different days, the
    deliveries share no partition."""
    first = MIDNIGHT - HORIZON - timedelta(minutes=2)  # no copy: a horizon later is the same day
    late = MIDNIGHT + timedelta(minutes=1)
    result = asyncio.run(_fold(database_url, [_chat("ev-1", first), _chat("ev-1", late)]))
    assert result["counted"] == 2


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    first=st.integers(-2 * 3600, 2 * 3600),
    gaps=st.lists(st.integers(0, int(HORIZON.total_seconds()) - 1), min_size=1, max_size=3),
    rotated=st.lists(st.booleans(), min_size=3, max_size=3),
    order=st.randoms(use_true_random=False),
)
def test_deliveries_of_one_message_within_the_horizon_count_once(
    database_url: str, first: int, gaps: list[int], rotated: list[bool], order: Any
) -> None:
    """Redeliveries and rotation duplicates of one chat message, stamped within the
    horizon of the earliest and in any order, around midnight: counted once."""
    start = MIDNIGHT + timedelta(seconds=first)
    deliveries = [_chat("ev-0", start)]
    for i, gap in enumerate(gaps):
        eventsub_id = f"ev-rot-{i}" if rotated[i] else "ev-0"
        deliveries.append(_chat(eventsub_id, start + timedelta(seconds=gap)))
    order.shuffle(deliveries)
    result = asyncio.run(_fold(database_url, deliveries))
    assert (result["counted"], result["chatter_hours"], result["primaries"]) == (1, 1, 1)
