"""Reconciliation against the Twitch stand-in under uvicorn, with real PostgreSQL, Redis
and, where the schedule matters, real arq workers."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text

from aggregator.worker import create_periodic_worker
from receiver.reads import queries
from streamfold.eventsub_sender import (
    revocation_body,
    signed,
    stream_offline_body,
    stream_online_body,
)
from tests.aggregator.reconcile_rig import Rig, base_time, wait_until
from tests.conftest import SECRET, Clock

MIN = timedelta(minutes=1)


async def test_live_without_online_opens_one_session_started_by_reconcile(rig: Rig) -> None:
    t = base_time()
    await rig.connect(["100"])
    rig.go_live("100", "s1", t - 3 * MIN, viewers=42)

    first = await rig.run(t)
    second = await rig.run(t + 5 * MIN)

    assert first.outcome == "success", first.error
    assert (first.counts["sessions_opened"], first.counts["samples_stored"]) == (1, 1)
    assert (second.counts["sessions_opened"], second.counts["samples_stored"]) == (0, 1)
    assert await rig.sessions_of("100") == [
        ("s1", t - 3 * MIN, "reconcile", None, None, "stand-in stream", "Just Chatting")
    ]


async def test_offline_without_offline_closes_after_the_grace_period_not_before(rig: Rig) -> None:
    t = base_time()
    await rig.connect(["100"])
    rig.go_live("100", "s1", t - 3 * MIN)
    await rig.run(t)
    rig.go_offline("100")

    early = await rig.run(t + 6 * MIN)  # the session is 9 minutes old: Helix may lag
    assert early.counts["sessions_closed"] == 0
    assert [r.ended_at for r in await rig.sessions_of("100")] == [None]

    late = await rig.run(t + 8 * MIN)  # 11 minutes old
    assert late.counts["sessions_closed"] == 1
    [row] = await rig.sessions_of("100")
    # Ended at the last time a sample saw it live, not at the run's "now".
    assert (row.ended_at, row.ended_by) == (t, "reconcile")


async def test_a_late_webhook_after_a_repair_wins_and_there_is_still_one_session(
    rig: Rig, receiver: httpx.AsyncClient, clock: Clock, drain: Callable[[], Any]
) -> None:
    t = base_time()
    await rig.connect(["100"])
    rig.go_live("100", "s1", t - 2 * MIN)
    await rig.run(t)  # reconcile opens s1 with Helix's start

    webhook_start = t - 2 * MIN - timedelta(seconds=20)
    await post(receiver, clock, "stream.online", stream_online_body("100", "s1", webhook_start), t)
    await drain()
    assert [(r.started_at, r.started_by) for r in await rig.sessions_of("100")] == [
        (webhook_start, "eventsub")
    ]

    rig.go_offline("100")
    await rig.run(t + 9 * MIN)  # closed on Helix's word at the last sample, t
    offline_at = t + timedelta(seconds=70)
    await post(receiver, clock, "stream.offline", stream_offline_body("100"), offline_at)
    await drain()
    await rig.run(t + 14 * MIN)

    [row] = await rig.sessions_of("100")
    assert (row.id, row.started_at, row.started_by) == ("s1", webhook_start, "eventsub")
    assert (row.ended_at, row.ended_by) == (offline_at, "eventsub")


async def post(
    receiver: httpx.AsyncClient, clock: Clock, kind: str, body: bytes, at: datetime
) -> None:
    clock.now = at
    message = signed(SECRET.encode(), body, kind, sent_at=at)
    response = await receiver.post(
        "/eventsub/callback", content=message.body, headers=message.headers()
    )
    assert response.status_code == 204, response.text


async def test_a_new_stream_id_closes_the_old_session_and_opens_the_new(rig: Rig) -> None:
    t = base_time()
    await rig.connect(["100"])
    rig.go_live("100", "s1", t - 30 * MIN)
    await rig.run(t)
    rig.go_live("100", "s2", t + 2 * MIN)  # a reconnect gave a new stream id

    result = await rig.run(t + 5 * MIN)

    assert (result.counts["sessions_opened"], result.counts["sessions_replaced"]) == (1, 1)
    rows = await rig.sessions_of("100")
    assert [(r.id, r.ended_at, r.ended_by) for r in rows] == [
        ("s1", t, "reconcile"),
        ("s2", None, None),
    ]


async def test_250_channels_take_3_get_streams_calls(rig: Rig) -> None:
    channels = [str(1000 + n) for n in range(250)]
    await rig.connect(channels)
    rig.seed_subscriptions(channels)
    t = base_time()
    for n in range(0, 250, 5):
        rig.go_live(channels[n], f"stream-{n}", t - 20 * MIN, viewers=n)

    result = await rig.run(t)

    assert result.outcome == "success", result.error
    assert rig.calls("/helix/streams") == 3
    assert result.counts["channels_checked"] == 250
    assert (result.counts["sessions_opened"], result.counts["samples_stored"]) == (50, 50)


async def test_10000_channels_stay_inside_800_points_per_minute(rig: Rig) -> None:
    assert rig.standin.bucket.points == 800  # Twitch's usual app-token bucket
    channels = [str(100_000 + n) for n in range(10_000)]
    await rig.connect(channels)
    rig.seed_subscriptions(channels)
    t = base_time()
    for n in range(0, 10_000, 10):
        rig.go_live(channels[n], f"stream-{n}", t - 20 * MIN, viewers=n)

    started = asyncio.get_running_loop().time()
    result = await rig.run(t)
    elapsed = asyncio.get_running_loop().time() - started

    assert result.outcome == "success", (result.error, str(result.counts), elapsed)
    assert rig.calls("/helix/streams") == 100
    helix = [at for _, path, at in rig.standin.requests if path.startswith("/helix/")]
    # 100 Get Streams calls + 201 pages of 20,001 subscriptions, and not one 429.
    assert len(helix) == 301
    assert rig.standin.refused_by_bucket == 0
    assert (result.counts["sessions_opened"], result.counts["samples_stored"]) == (1000, 1000)
    assert result.counts["subscriptions_kept"] == 20_001

    # The next run, back to back (the bucket has not refilled): still no 429.
    started = asyncio.get_running_loop().time()
    steady = await rig.run(t + 5 * MIN)
    steady_elapsed = asyncio.get_running_loop().time() - started
    assert steady.outcome == "success", steady.error
    assert (steady.counts["sessions_opened"], steady.counts["samples_stored"]) == (0, 1000)
    assert rig.standin.refused_by_bucket == 0
    print(f"\n10,000 channels: {len(helix)} Helix calls per run; first run {elapsed:.1f} s,")
    print(f"next run {steady_elapsed:.1f} s; counts {steady.counts}")


async def test_a_429_waits_for_the_reset_then_the_run_succeeds(rig: Rig) -> None:
    await rig.connect(["100"])
    rig.go_live("100", "s1", base_time() - 5 * MIN)
    rig.standin.fail("/helix/streams", 429, reset_in=1.5)

    result = await rig.run()

    assert result.outcome == "success", result.error
    refused, retried = [t for _, p, t in rig.standin.requests if p == "/helix/streams"]
    # The stand-in announced Ratelimit-Reset = ceil(first + 1.5); nothing was sent before.
    assert retried >= math.ceil(refused + 1.5) - 0.01
    assert result.counts["sessions_opened"] == 1


async def test_a_helix_outage_is_a_failed_run_and_the_next_run_succeeds(rig: Rig) -> None:
    await rig.connect(["100"])
    rig.go_live("100", "s1", base_time() - 5 * MIN)
    # More 503s than the client's bounded retries (5 attempts with backoff).
    rig.standin.fail("/helix/streams", 503, times=5)

    failed = await rig.run()
    succeeded = await rig.run()

    assert failed.outcome == "failed"
    assert succeeded.outcome == "success", succeeded.error
    runs = await rig.job_runs()
    assert [r.outcome for r in runs] == ["failed", "success"]
    assert "TwitchUnavailable" in runs[0].error
    assert rig.calls("/helix/streams") == 6  # 5 tries in the failed run, 1 in the next
    assert [r.id for r in await rig.sessions_of("100")] == ["s1"]


async def test_a_run_left_running_by_a_dead_worker_is_marked_failed(rig: Rig) -> None:
    async with rig.sessions.begin() as session:
        await session.execute(
            text("""INSERT INTO job_runs (job, started_at, outcome)
                    VALUES ('reconcile', now(), 'running')""")
        )
    result = await rig.run()
    runs = await rig.job_runs()
    assert result.outcome == "success"
    assert [r.outcome for r in runs] == ["failed", "success"]
    assert runs[0].error.startswith("abandoned")


async def test_an_overlapping_run_is_skipped_and_recorded(rig: Rig) -> None:
    await rig.connect(["100"])
    rig.standin.streams_gate = asyncio.Event()
    first = asyncio.create_task(rig.run())
    # The first run holds the lock while Helix has not answered.
    await wait_until(lambda: rig.calls("/helix/streams") == 1)

    second = await rig.run()
    rig.standin.streams_gate.set()
    done = await first

    assert (second.outcome, done.outcome) == ("skipped", "success")
    assert sorted(r.outcome for r in await rig.job_runs()) == ["skipped", "success"]


async def test_two_workers_run_one_reconciliation_per_tick_and_repair_within_two(
    rig: Rig,
) -> None:
    # A 10 s period, and no grace, so a missed offline is repaired at the next tick.
    settings = rig.settings.model_copy(
        update={"reconcile_interval_seconds": 10, "reconcile_grace_seconds": 0}
    )
    await rig.connect(["100"])
    rig.go_live("100", "s1", base_time() - 5 * MIN)
    workers = [
        create_periodic_worker(settings, handle_signals=False, poll_delay=0.05) for _ in range(2)
    ]
    tasks = [asyncio.create_task(w.main()) for w in workers]
    try:
        # Live with no stream.online: a session within two ticks.
        await wait_until(lambda: has_session(rig, ended=False), within=20)
        rig.go_offline("100")
        # Offline with no stream.offline: closed within two ticks (and that run finished).
        await wait_until(lambda: has_session(rig, ended=True), within=20)
        await wait_until(lambda: no_run_running(rig))
    finally:
        for worker, task in zip(workers, tasks, strict=True):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await worker.close()
    runs = await rig.rows(
        "SELECT started_at, outcome FROM job_runs WHERE job = 'reconcile' ORDER BY started_at"
    )
    # Both workers saw every tick; each tick ran once (no overlap, nothing skipped). A
    # tick that began as the workers were stopped may be left running.
    assert {r.outcome for r in runs[:-1]} == {"success"}
    assert runs[-1].outcome in ("success", "running")
    starts = [r.started_at for r in runs]
    assert all(b - a > timedelta(seconds=5) for a, b in itertools.pairwise(starts))
    [row] = await rig.sessions_of("100")
    assert (row.started_by, row.ended_by) == ("reconcile", "reconcile")


async def no_run_running(rig: Rig) -> bool:
    return all(r.outcome != "running" for r in await rig.job_runs())


async def has_session(rig: Rig, *, ended: bool) -> bool:
    rows = await rig.sessions_of("100")
    return len(rows) == 1 and (rows[0].ended_at is not None) == ended


async def test_viewer_figures_come_from_the_samples_as_defined(rig: Rig) -> None:
    t0 = queries.floor_hour(datetime.now(UTC)) + timedelta(hours=2, minutes=50)
    await rig.connect(["100"])
    for n, viewers in enumerate([10, 20, 30]):
        rig.go_live("100", "s1", t0 - 5 * MIN, viewers=viewers, title=f"title {n}")
        result = await rig.run(t0 + n * 5 * MIN)
        assert result.outcome == "success", result.error

    samples = await rig.rows(
        "SELECT sampled_at, viewer_count, interval_seconds FROM viewer_samples ORDER BY 1"
    )
    assert [(s.viewer_count, s.interval_seconds) for s in samples] == [
        (10, 300),
        (20, 300),
        (30, 300),
    ]
    now = t0 + 10 * MIN
    async with rig.sessions() as session:
        [row] = await queries.sessions(session, "100", t0 - MIN * 60, now, now=now)
        hours = await queries.hourly(session, "100", t0 - MIN * 60, now + MIN, now=now)
    assert (row.avg_viewers, row.peak_viewers, row.hours_watched) == (20.0, 30, 5.0)
    assert row.title == "title 2"
    by_hour = {h.hour: (h.avg_viewers, h.peak_viewers, h.hours_watched) for h in hours}
    assert by_hour[queries.floor_hour(t0)] == (15.0, 20, 2.5)
    assert by_hour[queries.floor_hour(now)] == (30.0, 30, 2.5)


async def test_lost_subscriptions_come_back_and_the_chat_gap_is_marked(
    rig: Rig, receiver: httpx.AsyncClient
) -> None:
    # Challenges reach the real receiver, which enables what the sync asked for.
    rig.settings = rig.settings.model_copy(
        update={"public_base_url": str(receiver.base_url).rstrip("/")}
    )
    await rig.connect(["100"])
    await rig.connect_bot(["100"])
    t = base_time()
    rig.go_live("100", "s1", t - 30 * MIN)

    first = await rig.run()
    await rig.standin.settled()
    await rig.run()  # sees the challenge answers
    assert first.counts["subscriptions_created"] == 4  # online, offline, chat, revoke
    assert sorted(s["type"] for s in enabled(rig)) == [
        "channel.chat.message",
        "stream.offline",
        "stream.online",
        "user.authorization.revoke",
    ]
    # Until the first chat subscription was enabled, chat was not being collected.
    assert await open_gaps(rig) == []

    # Twitch gives up on the chat subscription and says so.
    chat = next(s for s in enabled(rig) if s["type"] == "channel.chat.message")
    chat["status"] = "notification_failures_exceeded"
    revoked_at = datetime.now(UTC)
    body = revocation_body(chat["type"], chat["condition"], chat["status"], chat["id"])
    message = signed(
        SECRET.encode(), body, chat["type"], sent_at=revoked_at, message_type="revocation"
    )
    response = await receiver.post(
        "/eventsub/callback", content=message.body, headers=message.headers()
    )
    assert response.status_code == 204

    repaired = await rig.run()
    assert repaired.counts["subscriptions_created"] == 1
    assert repaired.counts["subscriptions_deleted"] == 1
    # The gap starts at the revocation; it may already be closed if the new
    # subscription's challenge was answered before the run's last gap pass.
    await rig.standin.settled()
    await rig.run()
    assert await open_gaps(rig) == []
    [gap] = await rig.rows(
        """SELECT started_at, ended_at, reason FROM chat_gaps
           WHERE reason <> 'chat_subscription_missing'"""
    )
    assert gap.reason == "chat_subscription_notification_failures_exceeded"
    assert revoked_at - timedelta(seconds=1) <= gap.started_at <= gap.ended_at
    assert gap.ended_at <= datetime.now(UTC)
    assert len(enabled(rig)) == 4

    # The session and hour that overlap the gap say their chat may be short.
    now = datetime.now(UTC)
    async with rig.sessions() as session:
        [row] = await queries.sessions(session, "100", t - 60 * MIN, now, now=now)
        hours = await queries.hourly(session, "100", t - 60 * MIN, now, now=now)
    assert row.chat_complete is False
    assert any(not h.chat_complete for h in hours)

    # A subscription deleted at Twitch by hand comes back at the next run.
    online = next(s for s in enabled(rig) if s["type"] == "stream.online")
    del rig.standin.subscriptions[online["id"]]
    again = await rig.run()
    assert again.counts["subscriptions_created"] == 1
    await rig.standin.settled()
    assert len(enabled(rig)) == 4


def enabled(rig: Rig) -> list[dict[str, Any]]:
    return [s for s in rig.standin.subscriptions.values() if s["status"] == "enabled"]


async def open_gaps(rig: Rig) -> list[Any]:
    return await rig.rows("SELECT started_at, reason FROM chat_gaps WHERE ended_at IS NULL")
