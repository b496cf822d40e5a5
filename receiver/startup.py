"""Work the receiver does once it serves: ensure the app-wide EventSub subscription.

It runs after start-up in the background because Twitch verifies a new subscription by
calling this very receiver, which must already be answering (PROTOCOL.md 3.2).
"""

from __future__ import annotations

import asyncio

from receiver.context import Context
from schema.logs import get_logger
from schema.twitch import TwitchError
from schema.twitch.subscriptions import ensure_app_subscriptions

log = get_logger("receiver.startup")


def start_app_subscriptions(ctx: Context) -> asyncio.Task[None] | None:
    settings = ctx.settings
    if not (settings.eventsub_ensure_at_startup and settings.twitch_client_secret):
        return None
    return asyncio.create_task(_ensure(ctx), name="ensure-app-subscriptions")


async def _ensure(ctx: Context) -> None:
    assert ctx.twitch is not None
    try:
        async with ctx.sessions.begin() as session:
            report = await ensure_app_subscriptions(session, ctx.twitch, ctx.settings)
    except TwitchError as exc:
        # Reconciliation's sync creates it later; events are not lost meanwhile, only
        # revocations are learnt later (from 401s and failed refreshes).
        log.warning("startup.app_subscriptions_failed", error=exc.code)
        return
    except Exception:
        log.exception("startup.app_subscriptions_failed")
        return
    log.info("startup.app_subscriptions", **report.counts())
