"""Reconciliation of 10,000 connected channels against the Helix stand-in (800 points
per minute): run time, calls made, 429s. Reported as not available until the pieces it
drives (``aggregator/reconcile.py``, ``tests/twitch_standin.py``) can run it."""

from __future__ import annotations

from bench.stats import Row


def run(env: object, *, quick: bool, repetitions: int) -> list[Row]:
    return [
        Row(
            "reconcile",
            "10,000 channels vs stand-in (800 points/min)",
            "s",
            note="not available: not measured in this version",
        )
    ]
