"""Bytes on disk per folded chat message, through the real fold path.

``pipeline.fold_deliveries`` folds signed-shape chat deliveries in batches of 2,000 (the
worker's commit size), so every table gets exactly the rows production writes: the
ledger, the per-message chat rows, chatter-hours and channel-hours. Shape: ``channels``
busy channels, each hour ``chatters`` distinct chatters sending ``per_hour`` messages.
Sizes are ``pg_total_relation_size`` (heap, TOAST and every index; a partitioned table
is the sum of its partitions) after ``VACUUM ANALYZE``.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from aggregator.pipeline import fold_deliveries
from bench.loadgen import CHAT
from bench.services import Environment
from bench.stats import Row
from schema.db import create_engine, create_sessionmaker
from schema.events import Delivery
from streamfold.eventsub_sender import rfc3339

TABLES = ("chat_messages", "folded_messages", "chatter_hours", "channel_hours")
BATCH = 2000
_BODY = (
    b'{"subscription":{"id":"s","type":"channel.chat.message","version":"1","status":"enabled",'
    b'"condition":{},"transport":{"method":"webhook","callback":"x"},"created_at":'
    b'"2026-01-01T00:00:00Z"},"event":{"broadcaster_user_id":"{B}","broadcaster_user_login":'
    b'"b","broadcaster_user_name":"B","chatter_user_id":"{C}","chatter_user_login":"c",'
    b'"chatter_user_name":"C","message_id":"{M}","message":{"text":"hi","fragments":[]},'
    b'"message_type":"text","color":"","badges":[]}}'
)

# A partitioned table's own size is zero: sum its partitions (one level deep).
_SIZE = text("""
    SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c
    WHERE c.oid = CAST(:table AS regclass)
       OR c.oid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = CAST(:table AS regclass))
""")


def _deliveries(
    start: datetime, first: int, count: int, channels: int, chatters: int, per_hour: int
) -> list[Delivery]:
    out: list[Delivery] = []
    for i in range(first, first + count):
        hour, within = divmod(i, per_hour * channels)
        at = start + timedelta(hours=hour, seconds=within * 3600 / (per_hour * channels))
        body = (
            _BODY.replace(b"{B}", str(100_000 + i % channels).encode())
            .replace(b"{C}", str(5_000_000 + random.randrange(chatters)).encode())
            .replace(b"{M}", str(uuid.uuid4()).encode())
        )
        out.append(Delivery(str(uuid.uuid4()), rfc3339(at), CHAT, body))
    return out


async def measure(
    database_url: str,
    *,
    messages: int = 1_000_000,
    channels: int = 10,
    chatters: int = 1_500,
    per_hour: int = 5_000,
) -> dict[str, int]:
    """Fold ``messages`` chat messages; return bytes per table and row counts."""
    engine = create_engine(database_url)
    sessions = create_sessionmaker(engine)
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=2)
    try:
        for offset in range(0, messages, BATCH * 50):
            count = min(BATCH * 50, messages - offset)
            batch = _deliveries(start, offset, count, channels, chatters, per_hour)
            for i in range(0, len(batch), BATCH):
                async with sessions.begin() as session:
                    await fold_deliveries(session, batch[i : i + BATCH])
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("VACUUM ANALYZE"))
            sizes = {t: int(await conn.scalar(_SIZE, {"table": t}) or 0) for t in TABLES}
            chatter_rows = int(await conn.scalar(text("SELECT count(*) FROM chatter_hours")) or 0)
        sizes["chatter_hour_rows"] = chatter_rows
        sizes["messages"] = messages
        return sizes
    finally:
        await engine.dispose()


def run(env: Environment, *, quick: bool = False, repetitions: int = 3) -> list[Row]:
    messages = 50_000 if quick else 1_000_000
    sizes = asyncio.run(measure(env.database_url, messages=messages))
    rows = [
        Row("storage", f"{table} per message", "bytes", [sizes[table] / messages])
        for table in TABLES
    ]
    total = sum(sizes[t] for t in TABLES)
    rows.append(Row("storage", "all four per message", "bytes", [total / messages]))
    rows.append(
        Row(
            "storage",
            "chatter_hours per row",
            "bytes",
            [sizes["chatter_hours"] / max(1, sizes["chatter_hour_rows"])],
        )
    )
    return rows
