"""The collector against the Twitch stand-in: runs at chosen instants, and helpers that
fill Twitch's top list."""

from __future__ import annotations

from datetime import UTC, datetime

from aggregator.collector import collect_once
from aggregator.reconcile import RunResult
from schema.twitch import TwitchClient
from tests.aggregator.reconcile_rig import Rig


async def collect(rig: Rig, at: datetime | None = None) -> RunResult:
    clock = (lambda: at) if at is not None else (lambda: datetime.now(UTC))
    async with TwitchClient(rig.settings, rig.redis) as twitch:
        return await collect_once(rig.settings, rig.engine, rig.sessions, twitch, clock=clock)


def top_stream(
    rig: Rig,
    user_id: str,
    login: str,
    viewers: int,
    started_at: datetime,
    *,
    game: tuple[str, str] = ("509658", "Just Chatting"),
    language: str = "en",
    title: str = "stand-in stream",
) -> None:
    """A channel that is not tracked, live in Twitch's top list."""
    if user_id not in rig.standin.users:
        user = rig.standin.add_user(user_id, login)
        user.broadcaster_type = "partner"
        user.profile_image_url = f"https://example.invalid/{login}.png"
    rig.standin.go_live(
        user_id, stream_id=f"st{user_id}", viewers=viewers, game=game, language=language,
        title=title, started_at=started_at,
    )  # fmt: skip
