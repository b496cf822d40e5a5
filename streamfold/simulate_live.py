"""``streamfold simulate`` with the local Twitch: the event stream of ``simulate.py``,
with Helix agreeing that the channels are live while they are, and reconciliation run
twice during the streams so that every viewer column fills in at once."""

from __future__ import annotations

import random
from collections import Counter

from schema.settings import Settings
from streamfold import simulate_local as local
from streamfold.simulate import Plan, send


async def send_with_local_twitch(
    settings: Settings, receiver: str, url: str, plan: Plan
) -> Counter[int]:
    channels = list(plan.expected)
    for line in await local.connect_demo(settings, receiver, channels):
        print(f"  signed in through the local Twitch: {line}")
    rng = random.Random(len(plan.deliveries))
    live: list[dict[str, object]] = [
        {
            "broadcaster_id": broadcaster,
            "live": True,
            "stream_id": e.stream_id,
            "started_at": e.started_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "viewers": rng.randrange(20, 400),
            "title": f"simulated stream of channel {broadcaster}",
        }
        for broadcaster, e in plan.expected.items()
    ]

    async def streams_live() -> None:
        await local.mark_streams(settings, live)
        stream_ids = [e.stream_id for e in plan.expected.values()]
        if await local.wait_open(settings, stream_ids):
            print("  " + await local.reconcile_now(settings))

    async def streams_end() -> None:
        print("  " + await local.reconcile_now(settings))
        await local.mark_streams(settings, [{"broadcaster_id": b, "live": False} for b in channels])

    return await send(url, plan, after_online=streams_live, before_offline=streams_end)
