"""Every public route's query can be answered from an index on the tables that grow.

With sequential scans priced out (``enable_seqscan = off``), PostgreSQL still plans one
on a table when no index serves the query: that is what this guards against, without the
millions of rows it would take for the planner to prefer the index on its own.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from receiver.reads import discovery
from schema.partitions import parent_of

BIG = {
    "channel_profiles",
    "channel_search",
    "viewer_samples",
    "viewer_hours",
    "category_days",
    "category_windows",
}
NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
SINCE = NOW - timedelta(days=30)
LIVE = {"limit": 51}
AFTER = {"after_rank": 40, "after_id": "7"}

CASES: dict[str, tuple[TextClause, dict[str, Any]]] = {
    "live now": (discovery.live_query(game=False, language=False, after=False), LIVE),
    "live now, one category": (
        discovery.live_query(game=True, language=False, after=False),
        LIVE | {"game": "509658"},
    ),
    "live now, one language": (
        discovery.live_query(game=False, language=True, after=False),
        LIVE | {"language": "en"},
    ),
    "live now, both, next page": (
        discovery.live_query(game=True, language=True, after=True),
        LIVE | AFTER | {"game": "just chatting", "language": "en"},
    ),
    "live now, next page": (
        discovery.live_query(game=False, language=False, after=True),
        LIVE | AFTER,
    ),
    "search": (
        discovery._SEARCH,
        {"q": "shruod", "prefix": "shruod%", "limit": 20},
    ),
    "categories, preset window": (
        discovery._PRECOMPUTED,
        {"since": SINCE, "until": NOW, "limit": 50, "seconds_back": 30 * 86_400},
    ),
    "categories, any window": (
        discovery._CATEGORIES,
        {"since": SINCE, "until": NOW, "limit": 50},
    ),
    "history, seen streams": (
        discovery._SEEN,
        {
            "b": "7",
            # Whole hours from the rollup, edges of 30 minutes from the samples.
            "whole_from": SINCE,
            "whole_to": NOW,
            "edge1_from": SINCE - timedelta(minutes=30),
            "edge1_to": SINCE,
            "edge2_from": NOW,
            "edge2_to": NOW + timedelta(minutes=30),
            "limit": 51,
            "before_at": None,
            "before_id": None,
        },
    ),
    "history, snapshots": (discovery._SNAPSHOTS, {"b": "7", "since": SINCE, "until": NOW}),
}


def relation(node: dict[str, Any]) -> str | None:
    """The table a plan node reads, a partition counted as its partitioned table."""
    name = node.get("Relation Name")
    return None if name is None else (parent_of(name) or name)


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


async def plan_of(session: AsyncSession, query: TextClause, params: dict[str, Any]) -> Any:
    rows = await session.execute(text("EXPLAIN (FORMAT JSON) " + query.text), params)
    raw = rows.scalar_one()
    return (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]


@pytest.mark.parametrize("name", list(CASES))
async def test_route_query_reads_big_tables_through_an_index(
    sessions: async_sessionmaker[AsyncSession], name: str
) -> None:
    query, params = CASES[name]
    async with sessions() as session:
        if query is discovery._SEARCH and not await session.scalar(
            text("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")
        ):
            pytest.skip("no pg_trgm on this server: search scans (its SQL fallback, README)")
        await session.execute(text("SELECT show_limit()"))  # load pg_trgm's operators
        await session.execute(text("SET LOCAL enable_seqscan = off"))
        plan = await plan_of(session, query, params)
    seq = [relation(n) for n in nodes(plan) if n["Node Type"] == "Seq Scan"]
    assert not BIG & set(seq), f"{name}: sequential scan of {sorted(BIG & set(seq))}"
    read = {relation(n) for n in nodes(plan)}
    assert read & BIG, f"{name}: reads none of {sorted(BIG)}"
    if name.startswith("live now"):
        # The live snapshot is on the profile row: live now never probes the snapshots.
        assert "viewer_samples" not in read, f"{name}: reads viewer_samples"
