"""The pure reconciliation rules (aggregator/repairs.py) and the cron schedule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from aggregator.reconcile import _tick_seconds
from aggregator.repairs import (
    ChatSubscriptionState,
    GapClose,
    GapHistory,
    GapOpen,
    KnownSession,
    LiveStream,
    plan_channel,
    plan_chat_gaps,
    sample_interval,
)
from aggregator.schedule import cron_schedule, is_due

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
GRACE = timedelta(minutes=10)
INTERVAL = timedelta(minutes=5)
MIN = timedelta(minutes=1)


def live(stream_id: str = "s2", started: datetime = NOW - 30 * MIN, viewers: int = 7) -> LiveStream:
    return LiveStream(stream_id, "b", started, viewers, "title", "game")


def known(
    stream_id: str = "s1",
    started: datetime = NOW - 60 * MIN,
    *,
    ended_at: datetime | None = None,
    ended_by: str | None = None,
    estimate: datetime | None = None,
    last_sample: datetime | None = None,
) -> KnownSession:
    return KnownSession(stream_id, started, ended_at, ended_by, estimate, last_sample)


def plan(live_stream: LiveStream | None, *sessions: KnownSession):  # type: ignore[no-untyped-def]
    return plan_channel(live_stream, sessions, now=NOW, grace=GRACE, interval=INTERVAL)


def test_a_live_channel_without_a_session_gets_one_from_helix_and_a_sample() -> None:
    repairs = plan(live())
    assert repairs.open == live()
    assert repairs.estimates == []
    assert repairs.sample is not None
    assert (repairs.sample.stream_id, repairs.sample.viewer_count) == ("s2", 7)
    # Every sample stands for one sampling interval, the first of a stream included.
    assert repairs.sample.interval_seconds == 300


def test_a_live_channel_with_its_open_session_only_samples() -> None:
    repairs = plan(live("s1"), known("s1", last_sample=NOW - 5 * MIN))
    assert not repairs.writes_sessions
    assert repairs.sample is not None
    assert repairs.sample.interval_seconds == 300


def test_not_live_closes_at_the_last_sample_only_after_the_grace_period() -> None:
    young = known("s1", NOW - 9 * MIN, last_sample=NOW - 4 * MIN)
    assert not plan(None, young).writes_sessions
    old = known("s1", NOW - 10 * MIN, last_sample=NOW - 4 * MIN)
    repairs = plan(None, old)
    assert [(e.session_id, e.ended_at) for e in repairs.estimates] == [("s1", NOW - 4 * MIN)]
    assert repairs.closed == 1
    assert repairs.sample is None


def test_a_session_never_sampled_closes_at_its_start() -> None:
    repairs = plan(None, known("s1", NOW - 20 * MIN))
    assert [e.ended_at for e in repairs.estimates] == [NOW - 20 * MIN]


def test_a_new_stream_id_replaces_the_open_session() -> None:
    repairs = plan(
        live("s2", NOW - 3 * MIN), known("s1", NOW - 60 * MIN, last_sample=NOW - 6 * MIN)
    )
    assert repairs.open is not None
    assert repairs.open.stream_id == "s2"
    assert [(e.session_id, e.ended_at) for e in repairs.estimates] == [("s1", NOW - 6 * MIN)]
    assert repairs.replaced == 1
    assert repairs.closed == 0


def test_a_replaced_session_without_samples_is_left_to_the_new_start() -> None:
    # The end rule closes it at the new stream's start, a better estimate than its own start.
    repairs = plan(live("s2", NOW - 3 * MIN), known("s1", NOW - 60 * MIN))
    assert repairs.open is not None
    assert repairs.estimates == []
    assert repairs.replaced == 1


def test_helix_still_listing_a_stream_a_webhook_ended_changes_nothing() -> None:
    ended = known("s1", ended_at=NOW - 2 * MIN, ended_by="eventsub", last_sample=NOW - 5 * MIN)
    repairs = plan(live("s1"), ended)
    assert not repairs.writes_sessions
    assert repairs.sample is None


def test_a_stream_we_closed_that_helix_lists_again_is_reopened() -> None:
    closed = known(
        "s1",
        ended_at=NOW - 8 * MIN,
        ended_by="reconcile",
        estimate=NOW - 8 * MIN,
        last_sample=NOW - 8 * MIN,
    )
    repairs = plan(live("s1"), closed)
    assert [(e.session_id, e.ended_at) for e in repairs.estimates] == [("s1", None)]
    assert repairs.reopened == 1
    assert repairs.sample is not None
    assert repairs.sample.interval_seconds == 300


def test_a_sample_stands_for_the_sampling_interval() -> None:
    assert sample_interval(INTERVAL) == 300
    assert sample_interval(timedelta(seconds=10)) == 10


@pytest.mark.parametrize(
    ("interval", "second", "minute", "due_every"),
    [
        (10, set(range(0, 60, 10)), None, 0),
        (60, {0}, None, 0),
        (300, {0}, set(range(0, 60, 5)), 0),
        (3600, {0}, {0}, 0),
        (90, {0, 30}, None, 90),
        (7200, {0}, None, 7200),
    ],
)
def test_cron_schedule(
    interval: int, second: set[int], minute: set[int] | None, due_every: int
) -> None:
    schedule = cron_schedule(interval)
    assert schedule.second == second
    assert schedule.minute == (None if minute is None else frozenset(minute))
    assert schedule.due_every == due_every


def test_ticks_that_are_not_due_do_not_run() -> None:
    schedule = cron_schedule(90)
    ticks = [t for t in range(0, 360, 30) if is_due(schedule, t + 0.123)]
    assert ticks == [0, 90, 180, 270]


def chat_state(
    enabled: bool, *, enabled_at: datetime | None = None, revoked_at: datetime | None = None
) -> ChatSubscriptionState:
    status = None if enabled or revoked_at is None else "authorization_revoked"
    return ChatSubscriptionState("b", enabled, enabled_at, revoked_at, status)


def test_a_revoked_chat_subscription_opens_a_gap_from_the_revocation() -> None:
    opens, closes = plan_chat_gaps([chat_state(False, revoked_at=NOW - 3 * MIN)], {}, NOW)
    assert opens == [GapOpen("b", NOW - 3 * MIN, "chat_subscription_authorization_revoked")]
    assert closes == []


def test_a_missing_chat_subscription_opens_a_gap_from_now_once() -> None:
    opens, _ = plan_chat_gaps([chat_state(False)], {}, NOW)
    assert opens == [GapOpen("b", NOW, "chat_subscription_missing")]
    still_open = {"b": GapHistory(((7, NOW - MIN),), None)}
    assert plan_chat_gaps([chat_state(False)], still_open, NOW) == ([], [])


def test_an_old_revocation_already_covered_starts_no_earlier_gap() -> None:
    covered = {"b": GapHistory((), NOW - 10 * MIN)}
    opens, _ = plan_chat_gaps([chat_state(False, revoked_at=NOW - 60 * MIN)], covered, NOW)
    assert [o.started_at for o in opens] == [NOW]


def test_an_enabled_subscription_closes_open_gaps_when_it_was_enabled() -> None:
    history = {"b": GapHistory(((7, NOW - 30 * MIN), (8, NOW - 20 * MIN)), None)}
    _, closes = plan_chat_gaps([chat_state(True, enabled_at=NOW - 25 * MIN)], history, NOW)
    # Never before a gap's own start.
    assert closes == [GapClose(7, NOW - 25 * MIN), GapClose(8, NOW - 20 * MIN)]


def test_the_cron_job_reads_its_tick_from_arq_s_unique_job_id() -> None:
    assert _tick_seconds({"job_id": "cron:reconcile:1764072090123"}) == 1764072090.123
    assert _tick_seconds({"job_id": "something-else", "score": 5}) is None
