"""Pure reconciliation rules: what Helix says and what we hold in, repairs out.

No SQLAlchemy, httpx or arq here; ``repair_store.py`` reads the facts and writes the
repairs. A session's end is never written directly: a repair sets the session's
``reconcile_ended_at`` (our estimate) and the fold's end rule
(``aggregator/sessions.py: session_ends``) decides, so an EventSub offline, even one that
arrives after the repair, always wins over the estimate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

# Helix lags behind EventSub: a new stream shows up about a minute late and an ended one
# stays listed for 5-10 minutes (PROTOCOL.md 6.6). A session younger than this is never
# closed on Helix's word.
DEFAULT_GRACE = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class LiveStream:
    """One entry of Get Streams."""

    stream_id: str
    broadcaster_id: str
    started_at: datetime
    viewer_count: int
    title: str | None
    game_name: str | None
    game_id: str | None = None
    language: str | None = None
    thumbnail_url: str | None = None


@dataclass(frozen=True, slots=True)
class KnownSession:
    """A session of the channel as stored, with the last time a sample saw it live."""

    id: str
    started_at: datetime
    ended_at: datetime | None
    ended_by: str | None
    reconcile_ended_at: datetime | None
    last_sample_at: datetime | None

    @property
    def last_seen_live(self) -> datetime:
        """The last time we knew the stream was live: its newest sample, else its start."""
        if self.last_sample_at is None:
            return self.started_at
        return max(self.started_at, self.last_sample_at)

    @property
    def ended_by_our_estimate(self) -> bool:
        return self.ended_at is not None and self.ended_at == self.reconcile_ended_at


@dataclass(frozen=True, slots=True)
class Sample:
    broadcaster_id: str
    stream_id: str
    viewer_count: int
    interval_seconds: int
    title: str | None
    game_name: str | None
    # The rest of the snapshot the public routes show (one row per channel and poll).
    game_id: str | None = None
    language: str | None = None
    thumbnail_url: str | None = None
    started_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Estimate:
    """Set ``reconcile_ended_at`` of a session (None clears it: the stream is live again)."""

    session_id: str
    ended_at: datetime | None


@dataclass(slots=True)
class ChannelRepairs:
    open: LiveStream | None = None
    estimates: list[Estimate] = field(default_factory=list)
    sample: Sample | None = None
    closed: int = 0
    replaced: int = 0
    reopened: int = 0

    @property
    def writes_sessions(self) -> bool:
        """True when the channel's sessions change (needs the channel's lock)."""
        return self.open is not None or bool(self.estimates)


def sample_interval(interval: timedelta) -> int:
    """Seconds a sample stands for: the sampling interval, by the definition of
    ``hours_watched`` (sum of viewer_count x sampling interval). A run's own timing
    jitter or a stream's start between two polls does not change what a sample is
    worth, so the figure is reproducible from the samples and the configuration."""
    return max(1, int(interval.total_seconds()))


def plan_channel(
    live: LiveStream | None,
    sessions: Sequence[KnownSession],
    *,
    now: datetime,
    grace: timedelta,
    interval: timedelta,
) -> ChannelRepairs:
    """Repairs for one connected channel.

    ``live`` is Helix's current stream of the channel (None: not live). ``sessions`` are
    the channel's open sessions plus the session of ``live``'s stream id, if stored.
    """
    repairs = ChannelRepairs()
    by_id = {s.id: s for s in sessions}
    current = by_id.get(live.stream_id) if live is not None else None
    fresh = live  # Helix's stream, unless Helix is still listing a stream that has ended
    if live is not None and current is not None and current.ended_at is not None:
        if current.ended_by == "reconcile" and current.ended_by_our_estimate:
            # We closed it on Helix's word and it is listed again: our estimate was wrong.
            repairs.estimates.append(Estimate(current.id, None))
            repairs.reopened += 1
        else:
            # An EventSub fact (offline, or a later stream) ended it; Helix lags.
            fresh = None
    if fresh is not None and current is None:
        repairs.open = fresh

    for session in sorted(sessions, key=lambda s: (s.started_at, s.id)):
        if session.ended_at is not None or (fresh is not None and session.id == fresh.stream_id):
            continue
        if repairs.open is not None and repairs.open.started_at > session.started_at:
            # A new stream id: the new session's start closes this one (the end rule);
            # the last sample, when there is one, is the better estimate.
            if session.last_sample_at is not None:
                repairs.estimates.append(Estimate(session.id, session.last_seen_live))
            repairs.replaced += 1
        elif now - session.started_at >= grace:
            repairs.estimates.append(Estimate(session.id, session.last_seen_live))
            repairs.closed += 1

    if fresh is not None:
        repairs.sample = Sample(
            broadcaster_id=fresh.broadcaster_id,
            stream_id=fresh.stream_id,
            viewer_count=max(0, fresh.viewer_count),
            interval_seconds=sample_interval(interval),
            title=fresh.title,
            game_name=fresh.game_name,
            game_id=fresh.game_id,
            language=fresh.language,
            thumbnail_url=fresh.thumbnail_url,
            started_at=fresh.started_at,
        )
    return repairs


# -- chat gaps ------------------------------------------------------------------------------

CHAT_GAP_PREFIX = "chat_subscription_"


@dataclass(frozen=True, slots=True)
class ChatSubscriptionState:
    """A connected channel's chat subscription as we last recorded it."""

    broadcaster_id: str
    enabled: bool
    enabled_at: datetime | None  # when its row last changed while enabled (the challenge)
    revoked_at: datetime | None
    status: str | None  # the newest status that is not "enabled"


@dataclass(frozen=True, slots=True)
class GapHistory:
    """A channel's subscription gaps: the open ones and where the last closed one ended."""

    open: tuple[tuple[int, datetime], ...]  # (id, started_at)
    last_ended_at: datetime | None


@dataclass(frozen=True, slots=True)
class GapOpen:
    broadcaster_id: str
    started_at: datetime
    reason: str


@dataclass(frozen=True, slots=True)
class GapClose:
    gap_id: int
    ended_at: datetime


def plan_chat_gaps(
    states: Sequence[ChatSubscriptionState], history: dict[str, GapHistory], now: datetime
) -> tuple[list[GapOpen], list[GapClose]]:
    """Open a gap for each channel whose chat subscription is not enabled and has none
    open; close open gaps of channels whose subscription is enabled again."""
    opens: list[GapOpen] = []
    closes: list[GapClose] = []
    for state in states:
        past = history.get(state.broadcaster_id, GapHistory((), None))
        if state.enabled:
            end = min(state.enabled_at or now, now)
            closes += [GapClose(gap_id, max(start, end)) for gap_id, start in past.open]
        elif not past.open:
            start = now
            # A revocation older than the last gap's end was already covered by it.
            if state.revoked_at is not None and (
                past.last_ended_at is None or state.revoked_at > past.last_ended_at
            ):
                start = min(state.revoked_at, now)
            reason = (CHAT_GAP_PREFIX + (state.status or "missing"))[:64]
            opens.append(GapOpen(state.broadcaster_id, start, reason))
    return opens, closes
