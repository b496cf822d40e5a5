"""The dashboard says when retention made a summary count whole hours at its edges, and
which raw rows it was, over real HTTP (the page is rendered on the server)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schema.settings import Settings
from tests.receiver.people import add_user, sign_in

_MARK = text("""
    INSERT INTO retention_marks (table_name, removed_before) VALUES (:t, :at)
""")


def _words(page: httpx.Response) -> str:
    return " ".join(page.text.split())


async def test_the_summary_says_when_its_edges_count_whole_hours(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    receiver: httpx.AsyncClient,
) -> None:
    await add_user(sessions, "9", "nine", streamer=True)
    cookie = await sign_in(sessions, settings, "9")
    page = await receiver.get("/channels/9", params={"window": "7d"}, headers=cookie)
    assert page.status_code == 200
    assert 'id="whole-hours"' not in page.text

    # Raw viewer samples removed up to two days ago: the 7-day window's start edge.
    two_days_ago = datetime.combine(datetime.now(UTC).date() - timedelta(days=2), time(), UTC)
    async with sessions.begin() as session:
        await session.execute(_MARK, {"t": "viewer_samples", "at": two_days_ago})
    page = await receiver.get("/channels/9", params={"window": "7d"}, headers=cookie)
    assert 'id="whole-hours"' in page.text
    assert "raw viewer samples have been removed" in _words(page)

    async with sessions.begin() as session:
        await session.execute(_MARK, {"t": "chat_messages", "at": two_days_ago})
    page = await receiver.get("/channels/9", params={"window": "7d"}, headers=cookie)
    assert "raw chat messages and viewer samples have been removed" in _words(page)
    # A window inside what is kept stays exact and says nothing.
    page = await receiver.get("/channels/9", params={"window": "24h"}, headers=cookie)
    assert 'id="whole-hours"' not in page.text
