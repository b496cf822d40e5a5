"""``streamfold subscriptions sync`` / ``sync_subscriptions``: Twitch's list is made to
match ours — missing ones created, failed ones replaced, orphans deleted, others' kept."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schema.settings import Settings
from streamfold.channels_cli import describe_channels, sync
from streamfold.cli import main
from tests.connected import connected

pytestmark = pytest.mark.usefixtures("redis")


def _sub(sub_id: str, sub_type: str, condition: dict[str, str], callback: str) -> dict[str, Any]:
    return {
        "id": sub_id,
        "status": "enabled",
        "type": sub_type,
        "version": "1",
        "condition": condition,
        "created_at": "2024-01-01T00:00:00Z",
        "transport": {"method": "webhook", "callback": callback},
        "cost": 0,
    }


async def test_sync_creates_missing_replaces_failed_and_deletes_orphans(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with connected(settings, sessions) as env:
        assert (await env.login("streamer", env.streamer)).status_code == 200
        await env.standin.settled()
        standin, ours = env.standin, env.settings.callback_url
        online = next(s for s in standin.live_subscriptions() if s["type"] == "stream.online")
        offline = next(s for s in standin.live_subscriptions() if s["type"] == "stream.offline")
        del standin.subscriptions[online["id"]]  # lost at Twitch
        offline["status"] = "notification_failures_exceeded"  # revoked: our fault, repair
        standin.add_user("555", "gone")
        standin.subscriptions["orphan"] = _sub(
            "orphan", "stream.online", {"broadcaster_user_id": "555"}, ours
        )
        standin.subscriptions["staging"] = _sub(
            "staging", "stream.online", {"broadcaster_user_id": "555"}, "https://staging/cb"
        )

        report = await sync(env.settings)
        await standin.settled()
        assert sorted(report.created) == [
            "stream.offline broadcaster_user_id=1337",
            "stream.online broadcaster_user_id=1337",
            "user.authorization.revoke client_id=test-client-id",
        ]
        assert sorted(report.deleted) == [
            "stream.offline broadcaster_user_id=1337 (notification_failures_exceeded)",
            "stream.online broadcaster_user_id=555 (enabled)",
        ]
        assert report.failed == []
        assert any("no bot account connected" in n for n in report.notes)
        live = {
            (s["type"], s["condition"].get("broadcaster_user_id"))
            for s in standin.live_subscriptions()
        }
        assert live == {
            ("stream.online", "1337"),
            ("stream.offline", "1337"),
            ("user.authorization.revoke", None),
            ("stream.online", "555"),  # the staging deployment's, not ours to delete
        }
        assert "staging" in standin.subscriptions
        assert {s["status"] for s in standin.subscriptions.values()} == {"enabled"}

        again = await sync(env.settings)
        assert not again.changed
        assert again.kept == 3

        listing = await describe_channels(env.settings)
        assert "coolstreamer" in listing
        assert "connected" in listing
        assert "stream.online=" in listing


def test_cli_lists_channels_and_refuses_without_configuration(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The command configures process-wide logging onto the captured stderr; later tests
    # would then log to a closed file.
    monkeypatch.setattr("streamfold.cli.configure_logging", lambda *a, **k: None)
    monkeypatch.setenv("DATABASE_URL", settings.database_url or "")
    monkeypatch.setenv("LOG_FORMAT", "console")
    assert main(["channels"]) == 0
    assert "(no channels)" in capsys.readouterr().out
    monkeypatch.delenv("TWITCH_CLIENT_SECRET", raising=False)
    assert main(["subscriptions", "sync"]) == 2
    assert "TWITCH_CLIENT_SECRET" in capsys.readouterr().err
