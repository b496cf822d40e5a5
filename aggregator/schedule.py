"""When the reconciliation cron fires, from ``RECONCILE_INTERVAL_SECONDS``. Pure.

arq's cron takes sets of seconds and minutes, not a period. A period that divides a
minute or an hour maps onto those sets exactly. Any other period (90 s, 7 minutes, two
hours) fires on a finer grid aligned to the Unix epoch and each tick runs only when it
is due, so ticks stay at the same instants on every worker and arq's unique cron job
ids still deduplicate them.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import gcd


@dataclass(frozen=True, slots=True)
class CronSchedule:
    second: frozenset[int]
    minute: frozenset[int] | None
    # Seconds between ticks that run; 0 when every tick arq enqueues is due.
    due_every: int = 0


def cron_schedule(interval_seconds: int) -> CronSchedule:
    if interval_seconds <= 0:
        raise ValueError("the interval must be positive")
    if 60 % interval_seconds == 0:
        return CronSchedule(second=frozenset(range(0, 60, interval_seconds)), minute=None)
    if interval_seconds % 60 == 0 and 3600 % interval_seconds == 0:
        minutes = frozenset(range(0, 60, interval_seconds // 60))
        return CronSchedule(second=frozenset({0}), minute=minutes)
    step = gcd(interval_seconds, 60)
    return CronSchedule(
        second=frozenset(range(0, 60, step)), minute=None, due_every=interval_seconds
    )


def is_due(schedule: CronSchedule, tick_epoch_seconds: float) -> bool:
    """Whether the tick scheduled at this Unix time should run."""
    if schedule.due_every == 0:
        return True
    return int(tick_epoch_seconds) % schedule.due_every == 0
