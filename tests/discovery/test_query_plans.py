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

BIG = {"channel_profiles", "viewer_samples", "category_days", "category_windows"}
NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
SINCE = NOW - timedelta(days=30)
LIVE = {"game": None, "language": None, "limit": 51, "after_rank": None, "after_id": None}

CASES: dict[str, tuple[TextClause, dict[str, Any]]] = {
    "live now": (discovery._LIVE, LIVE),
    "live now, one category": (discovery._LIVE, LIVE | {"game": "509658"}),
    "live now, next page": (discovery._LIVE, LIVE | {"after_rank": 40, "after_id": "7"}),
    "search": (
        discovery._SEARCH,
        {"q": "shruod", "prefix": "shruod%", "since": SINCE, "limit": 20},
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
        {"b": "7", "since": SINCE, "until": NOW, "limit": 51, "before_at": None, "before_id": None},
    ),
    "history, snapshots": (discovery._SNAPSHOTS, {"b": "7", "since": SINCE, "until": NOW}),
}


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
    seq = [n["Relation Name"] for n in nodes(plan) if n["Node Type"] == "Seq Scan"]
    assert not BIG & set(seq), f"{name}: sequential scan of {sorted(BIG & set(seq))}"
    read = {n.get("Relation Name") for n in nodes(plan)}
    assert read & BIG, f"{name}: reads none of {sorted(BIG)}"
    if query is discovery._LIVE:
        # One primary-key probe per live channel: every live channel's newest snapshot
        # has the same poll time, so an index on time alone would walk all of them.
        probes = {
            n.get("Index Name") for n in nodes(plan) if n.get("Relation Name") == "viewer_samples"
        }
        assert probes == {"pk_viewer_samples"}, f"{name}: {probes}"
