"""Helix rate-limit headers and retry delays (PROTOCOL.md 6.5). Pure."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass

# A bounded wait: Twitch's bucket refills within a minute, so a reset further away than
# this is a clock problem, not a reason to block a job for longer.
MAX_RESET_WAIT = 65.0
# Jitter after the reset so processes sharing one bucket do not all retry at once.
RESET_JITTER = 0.25
BACKOFF_BASE = 0.2
BACKOFF_CAP = 5.0


@dataclass(frozen=True, slots=True)
class RateLimit:
    limit: int
    remaining: int
    reset_at: float  # Unix epoch seconds when the bucket is full again


def parse_headers(headers: Mapping[str, str]) -> RateLimit | None:
    try:
        return RateLimit(
            limit=int(headers["ratelimit-limit"]),
            remaining=int(headers["ratelimit-remaining"]),
            reset_at=float(headers["ratelimit-reset"]),
        )
    except (KeyError, ValueError):
        return None


def wait_for_reset(reset_at: float | None, now: float, rng: random.Random) -> float:
    """Seconds to wait after a 429: until the reset, plus a little jitter."""
    base = 1.0 if reset_at is None else max(0.0, reset_at - now)
    return min(MAX_RESET_WAIT, base) + rng.uniform(0.0, RESET_JITTER)


def backoff(attempt: int, rng: random.Random) -> float:
    """Full-jitter exponential backoff for 5xx and network errors (attempt counts from 1)."""
    return rng.uniform(0.0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1)))
