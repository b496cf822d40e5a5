"""``streamfold simulate`` against a run on the local Twitch: the demo channels are signed
in through the consent page, Helix lists them live while the events say so, and
reconciliation samples them at once, so sessions carry viewer figures as soon as the
simulation ends, with no wait for a reconcile period."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from receiver.reads import queries
from schema.settings import Settings
from streamfold.simulate import build_plan
from streamfold.simulate_live import send_with_local_twitch
from streamfold.simulate_local import local_twitch_url
from streamfold.twitch_local_run import build_standin
from tests.conftest import SECRET
from tests.connected import connected, folding

pytestmark = [pytest.mark.usefixtures("redis"), pytest.mark.slow]


async def test_simulate_on_the_local_twitch_fills_viewer_figures(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    standin = build_standin(settings.twitch_client_id or "", "test-client-secret")
    async with connected(settings, sessions, standin) as env:
        assert local_twitch_url(env.settings) is not None
        async with folding(env):
            now = datetime.now(UTC)
            plan = build_plan(
                SECRET.encode(), channels=2, messages=60, chatters=10, now=now, seed=7
            )
            base = str(env.browser.base_url).rstrip("/")
            statuses = await send_with_local_twitch(
                env.settings, base, f"{base}/eventsub/callback", plan
            )
            assert set(statuses) == {204, 400, 403}
        async with sessions() as session:
            for broadcaster, expected in plan.expected.items():
                rows = await queries.sessions(
                    session, broadcaster, now - timedelta(hours=3), now, now=now
                )
                assert [r.id for r in rows] == [expected.stream_id]
                assert rows[0].peak_viewers is not None
                assert rows[0].avg_viewers is not None
                assert rows[0].hours_watched
                assert rows[0].started_by == "eventsub"
        assert standin.live == {}  # offline in Helix once the simulated streams end
        assert await env.scalar("SELECT count(*) FROM channels WHERE connected") == 2
