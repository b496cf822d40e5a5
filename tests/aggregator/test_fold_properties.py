"""Any order, duplication or batching of one set of notifications folds to the same rows.

Folding goes through the real store into real PostgreSQL; only the delivery order, the
duplicates and where batches are cut vary.
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from aggregator.pipeline import fold_deliveries
from schema.db import create_engine, create_sessionmaker
from schema.events import Delivery
from streamfold.eventsub_sender import (
    chat_message_body,
    rfc3339,
    stream_offline_body,
    stream_online_body,
)

T0 = datetime(2024, 5, 4, 11, 30, tzinfo=UTC)


def _delivery(message_id: str, at: datetime, sub_type: str, body: bytes) -> Delivery:
    return Delivery(message_id, rfc3339(at), sub_type, body)


def notifications() -> list[Delivery]:
    d: list[Delivery] = []
    d.append(_delivery("on-1", T0, "stream.online", stream_online_body("7", "s1", T0)))
    for i in range(12):
        at = T0 + timedelta(minutes=7 * i)
        d.append(
            _delivery(
                f"chat-d{i}",
                at,
                "channel.chat.message",
                chat_message_body("7", f"u{i % 4}", f"chat-{i}"),
            )
        )
    # The same chat message delivered by a second subscription (secret rotation).
    d.append(
        _delivery(
            "chat-rotated",
            T0 + timedelta(minutes=14, seconds=2),
            "channel.chat.message",
            chat_message_body("7", "u2", "chat-2"),
        )
    )
    d.append(
        _delivery("off-1", T0 + timedelta(minutes=90), "stream.offline", stream_offline_body("7"))
    )
    s2 = T0 + timedelta(minutes=120)
    d.append(_delivery("on-2", s2, "stream.online", stream_online_body("7", "s2", s2)))
    for i in range(3):
        at = s2 + timedelta(minutes=5 * i)
        d.append(
            _delivery(
                f"chat2-d{i}",
                at,
                "channel.chat.message",
                chat_message_body("7", f"u{i + 3}", f"chat2-{i}"),
            )
        )
    d.append(
        _delivery("off-2", s2 + timedelta(minutes=30), "stream.offline", stream_offline_body("7"))
    )
    # A third stream whose offline was lost: it stays open.
    s3 = s2 + timedelta(minutes=60)
    d.append(_delivery("on-3", s3, "stream.online", stream_online_body("7", "s3", s3)))
    return d


async def _fold(database_url: str, batches: list[list[Delivery]]) -> dict[str, Any]:
    engine = create_engine(database_url, pool_size=1)
    sessions = create_sessionmaker(engine)
    try:
        async with sessions.begin() as session:
            await session.execute(
                text(
                    "TRUNCATE stream_sessions, stream_offlines, chat_messages, chatter_hours, "
                    "channel_hours, folded_messages, channels, follows, dead_letters, live_outbox"
                )
            )
        for batch in batches:
            async with sessions.begin() as session:
                await fold_deliveries(session, batch)
        async with sessions() as session:

            async def rows(sql: str) -> list[tuple[Any, ...]]:
                return [tuple(r) for r in (await session.execute(text(sql))).all()]

            return {
                "sessions": await rows(
                    "SELECT id, started_at, ended_at, ended_by FROM stream_sessions ORDER BY id"
                ),
                "hours": await rows(
                    "SELECT hour, chat_messages, unique_chatters FROM channel_hours ORDER BY hour"
                ),
                "chatters": await rows(
                    "SELECT hour, chatter_id, messages FROM chatter_hours ORDER BY 1, 2"
                ),
                "ledger": await rows("SELECT count(DISTINCT message_id) FROM folded_messages"),
                "chat": await rows("SELECT count(*) FROM chat_messages WHERE NOT is_copy"),
            }
    finally:
        await engine.dispose()


@st.composite
def deliveries_in_batches(draw: st.DrawFn) -> list[list[Delivery]]:
    base = notifications()
    extra = draw(st.lists(st.sampled_from(base), max_size=10))  # redeliveries
    stream = draw(st.permutations(base + extra))
    cuts = sorted(draw(st.sets(st.integers(1, len(stream) - 1), max_size=8)))
    bounds = [0, *cuts, len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(bounds)]


def test_natural_order_folds_to_the_expected_rows(database_url: str) -> None:
    result = asyncio.run(_fold(database_url, [notifications()]))
    s2 = T0 + timedelta(minutes=120)
    assert result["sessions"] == [
        ("s1", T0, T0 + timedelta(minutes=90), "eventsub"),
        ("s2", s2, s2 + timedelta(minutes=30), "eventsub"),
        ("s3", s2 + timedelta(minutes=60), None, None),
    ]
    assert result["chat"] == [(15,)]
    assert result["ledger"] == [(len(notifications()),)]
    assert sum(h[1] for h in result["hours"]) == 15


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batches=deliveries_in_batches())
def test_any_order_duplication_or_batching_folds_the_same(
    database_url: str, batches: list[list[Delivery]]
) -> None:
    expected = asyncio.run(_fold(database_url, [notifications()]))
    assert asyncio.run(_fold(database_url, batches)) == expected
