"""The worker's Prometheus metrics and the small HTTP server that serves them.

The worker is not a web server, so it serves the shared registry
(``schema/metrics.py``) on its own port, ``WORKER_METRICS_PORT`` (default 9100, 0 for
none). Prometheus scrapes it as a second target beside the web's ``/metrics``. A busy
port costs the metrics, never the folding: the worker logs it and runs on.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from arq import Retry
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

from schema.events import Delivery, parse_instant
from schema.logs import get_logger
from schema.metrics import REGISTRY, RETENTION_REMOVED, count_notification

log = get_logger("aggregator.metrics")

FOLD_LAG = Histogram(
    "streamfold_fold_lag_seconds",
    "From a notification's event time (its first delivery's timestamp) to the commit that"
    " folded it",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
    registry=REGISTRY,
)
COMMIT_DELIVERIES = Histogram(
    "streamfold_fold_commit_deliveries",
    "Deliveries folded per transaction (the jobs running together commit together)",
    buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 2000, 5000),
    registry=REGISTRY,
)
JOBS = Counter(
    "streamfold_jobs",
    "Worker jobs by function and how the run ended: success, retry (arq runs it again),"
    " cancelled (shutdown; arq re-queues it) or failed",
    ["function", "outcome"],
    registry=REGISTRY,
)
PARKED = Counter(
    "streamfold_fold_batches_parked",
    "Fold batches that ran out of retries and were parked for `streamfold requeue-failed`",
    registry=REGISTRY,
)
PERIODIC_RUNS = Counter(
    "streamfold_periodic_runs",
    "Periodic job runs (the job_runs rows) by job and outcome",
    ["job", "outcome"],
    registry=REGISTRY,
)
REPAIRS = Counter(
    "streamfold_reconcile_repairs",
    "What reconciliation changed, by kind (its job_runs counts)",
    ["kind"],
    registry=REGISTRY,
)

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def observe_commit(
    deliveries: Sequence[Delivery], fresh: Iterable[Delivery], dead: Iterable[str] = ()
) -> None:
    """After a fold transaction committed: lag per newly folded delivery, the batch's
    size, and by type what was folded, dead-lettered (``dead``: their message ids) and
    what the ledger had folded before."""
    now = time.time()
    dead_ids = set(dead)
    folded: Tally[str] = Tally()
    for delivery in fresh:
        if delivery.message_id in dead_ids:
            count_dead_letter(delivery.subscription_type)
            continue
        folded[delivery.subscription_type] += 1
        with contextlib.suppress(ValueError):
            FOLD_LAG.observe(max(0.0, now - parse_instant(delivery.timestamp).timestamp()))
    duplicates = Tally(d.subscription_type for d in deliveries)
    duplicates.subtract(folded)
    duplicates.subtract(d.subscription_type for d in fresh if d.message_id in dead_ids)
    for subscription_type, n in folded.items():
        count_notification(subscription_type, "folded", n=n)
    for subscription_type, n in duplicates.items():
        if n > 0:
            count_notification(subscription_type, "duplicate", "ledger", n=n)
    COMMIT_DELIVERIES.observe(len(deliveries))


def count_dead_letter(subscription_type: str) -> None:
    count_notification(subscription_type, "dead_lettered")


def count_run(job: str, outcome: str, counts: Mapping[str, Any] | None = None) -> None:
    PERIODIC_RUNS.labels(job=job, outcome=outcome).inc()
    if job != "reconcile" or not counts:
        return
    for kind, value in counts.items():
        if isinstance(value, int) and value > 0 and not kind.endswith("_ms"):
            REPAIRS.labels(kind=kind).inc(value)


def count_retention_removed(table: str, rows: int) -> None:
    RETENTION_REMOVED.labels(table=table).inc(rows)


def instrumented(name: str, job: F) -> F:
    """``job`` counting how each run ended under ``name``."""

    @functools.wraps(job)
    async def run(*args: Any, **kwargs: Any) -> Any:
        try:
            result = await job(*args, **kwargs)
        except Retry:
            JOBS.labels(function=name, outcome="retry").inc()
            raise
        except asyncio.CancelledError:
            JOBS.labels(function=name, outcome="cancelled").inc()
            raise
        except Exception:
            JOBS.labels(function=name, outcome="failed").inc()
            raise
        JOBS.labels(function=name, outcome="success").inc()
        return result

    return run  # type: ignore[return-value]


async def serve_metrics(
    port: int,
    refresh: Callable[[], Awaitable[None]],
    host: str = "0.0.0.0",  # noqa: S104
) -> asyncio.Server | None:
    """Serve ``GET /metrics`` on ``port`` until the server is closed; None if it cannot
    listen (logged once). ``refresh`` updates the scrape-time gauges first."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                request_line = await reader.readline()
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
                parts = request_line.split()
                path = parts[1].split(b"?")[0] if len(parts) > 1 else b""
                if path == b"/metrics":
                    with contextlib.suppress(Exception):
                        async with asyncio.timeout(2):
                            await refresh()
                    body, status, kind = generate_latest(REGISTRY), "200 OK", CONTENT_TYPE_LATEST
                else:
                    body, status, kind = b"not found\n", "404 Not Found", "text/plain"
                head = (
                    f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                )
                writer.write(head.encode() + body)
                await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    try:
        server = await asyncio.start_server(handle, host, port)
    except OSError as exc:
        log.warning("worker.metrics_unavailable", port=port, error=str(exc))
        return None
    log.info("worker.metrics_listening", port=port)
    return server
