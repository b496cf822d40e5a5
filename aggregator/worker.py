"""The arq worker: job functions, start-up and shutdown.

A fold job carries a batch of deliveries (the receiver batches across concurrent
requests) and goes decode → ``fold.plan`` → ``store`` in one transaction
(``pipeline.py``); then it sends the follow-ups of the revocations the plan carried
(``disconnects.py``). Every job reads what it may use from ``state(ctx)``
(``context.py``), and every line it logs carries its ``job_id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import pickle
import signal
import time
from collections.abc import Sequence
from typing import Any

import structlog
from arq import Retry
from arq.connections import RedisSettings
from arq.worker import Worker, func
from redis.asyncio import Redis
from redis.exceptions import RedisError

from aggregator.chatter_rollup import rollup_cron
from aggregator.collector import collect_cron
from aggregator.context import WorkerContext, job_id, job_try, state
from aggregator.disconnects import DISCONNECT_MAX_TRIES, disconnect_user, enqueue_disconnects
from aggregator.metrics import (
    PARKED,
    count_dead_letter,
    instrumented,
    observe_commit,
    serve_metrics,
)
from aggregator.pipeline import fold_deliveries
from aggregator.reconcile import reconcile_cron
from aggregator.retention import retention_cron
from aggregator.shards import ShardedFold
from aggregator.store import claim_ids, record_dead_letters
from aggregator.token_upkeep import check_user_tokens, upkeep_cron
from schema.db import is_transient
from schema.events import AuthorizationRevoke, Delivery, MessageId, Unfoldable
from schema.jobs import FOLD_JOB, decode_batch, failed_batches_key
from schema.logs import get_logger
from schema.metrics import refresh_queue_gauges
from schema.settings import Settings
from schema.twitch import TwitchClient
from schema.twitch.channels import CHECK_USER_TOKENS_JOB, DISCONNECT_USER_JOB

log = get_logger("aggregator.worker")

# A job's Redis keys say "in progress" for job_timeout + 10 s after a worker dies, so a
# short timeout bounds how long a killed batch waits before it is folded again.
FOLD_TIMEOUT_SECONDS = 30
# Retries with backoff capped at 60 s: 40 tries ride out a PostgreSQL outage of about
# 35 minutes before a batch is parked in the failed-batches list (never dropped).
FOLD_MAX_TRIES = 40


def retry_delay(tries: int) -> float:
    return float(min(60, 2 ** min(tries, 6)))


async def fold_notifications(ctx: dict[str, Any], payload: bytes) -> int:
    """Fold one batch of verified deliveries; return how many it carried."""
    deliveries = decode_batch(payload)
    work = state(ctx)
    try:
        # arq treats its own job timeout as a terminal failure (the batch would be
        # dropped); the whole fold, fallback included, times out first and retries.
        async with asyncio.timeout(FOLD_TIMEOUT_SECONDS - 5):
            try:
                revoked = await work.folder.fold(deliveries)
            except Exception as exc:
                if is_transient(exc):
                    raise
                # Not an outage: one delivery's data broke the transaction. Fold the
                # batch one delivery at a time and dead-letter the ones that still fail.
                revoked = await _fold_one_by_one(work, deliveries)
    except Exception as exc:
        if is_transient(exc):
            return await _retry_later(ctx, work, payload, exc)
        raise
    try:
        await enqueue_disconnects(work, revoked)
    except RedisError as exc:  # folded already: the retry only re-sends the follow-ups
        raise Retry(defer=retry_delay(job_try(ctx))) from exc
    return len(deliveries)


async def _retry_later(
    ctx: dict[str, Any], work: WorkerContext, payload: bytes, exc: Exception
) -> int:
    tries = job_try(ctx)
    if tries >= FOLD_MAX_TRIES:
        # arq would drop the job after this try; park it where an operator finds it
        # (`streamfold requeue-failed`) instead of losing accepted notifications.
        await work.redis.rpush(failed_batches_key(work.settings.queue_name), payload)  # type: ignore[misc]
        PARKED.inc()
        log.error("fold.parked", error=type(exc).__name__)
        return 0
    delay = retry_delay(tries)
    log.warning("fold.retry", job_try=tries, defer_s=delay, error=type(exc).__name__)
    raise Retry(defer=delay) from exc


async def _fold_one_by_one(
    work: WorkerContext, deliveries: Sequence[Delivery]
) -> list[AuthorizationRevoke]:
    """Transient errors propagate (the caller retries the job); a delivery that still
    fails on its own is dead-lettered and ledgered together, so a re-run of the job
    neither folds it nor records it twice."""
    revoked: list[AuthorizationRevoke] = []
    for delivery in deliveries:
        try:
            async with work.sessions.begin() as session:
                folded = await fold_deliveries(session, [delivery], horizon=work.folder.horizon)
            observe_commit([delivery], folded.fresh, (d.message_id for d in folded.plan.dead))
            revoked += folded.plan.disconnects
        except Exception as exc:
            if is_transient(exc):
                raise
            reason = f"fold failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
            log.error(
                "fold.dead_letter",
                message_id=delivery.message_id,
                subscription_type=delivery.subscription_type,
                reason=reason,
            )
            letter = Unfoldable(
                MessageId(delivery.message_id), delivery.subscription_type, reason, delivery.body
            )
            async with work.sessions.begin() as session:
                fresh = await claim_ids(session, [delivery], horizon=work.folder.horizon)
                if fresh:
                    await record_dead_letters(session, [letter], {})
            if fresh:
                count_dead_letter(delivery.subscription_type)
    return revoked


async def startup(ctx: dict[str, Any]) -> None:
    """Build the worker's context once; ``twitch`` in ``ctx`` is the process's client
    when ``run`` starts two workers."""
    settings: Settings = ctx["settings"]
    if ctx.get("shared_state"):  # a shard's worker: the process's context is in ctx
        return
    work = WorkerContext.open(settings, ctx["redis"], ctx.get("twitch"))
    work.attach(ctx)
    if ctx.get("live", True):
        work.start_live()
    log.info("worker.started", queue=settings.queue_name)


async def bind_job(ctx: dict[str, Any]) -> None:
    """Every line logged while a job runs carries its id: arq runs this in the task that
    then starts the job, whose log context is that task's copy and ends with the job."""
    structlog.contextvars.bind_contextvars(job_id=job_id(ctx))


async def shutdown(ctx: dict[str, Any]) -> None:
    if "state" in ctx and not ctx.get("shared_state"):
        await state(ctx).close()


class _Payload(bytes):
    """A job's bytes argument as the worker sees it: arq logs every job start with the
    ``repr`` of its arguments, built even when the line is not logged; for a fold batch
    (tens of KiB) that cost 5 % of the worker's CPU."""

    def __repr__(self) -> str:
        return f"<{len(self)} bytes>"


def _deserialize_job(data: bytes) -> dict[str, Any]:
    job: dict[str, Any] = pickle.loads(data)  # noqa: S301 - arq's own format, private Redis
    args = job.get("a")
    if isinstance(args, tuple | list) and any(isinstance(a, bytes) for a in args):
        job["a"] = tuple(_Payload(a) if isinstance(a, bytes) else a for a in args)
    return job


def redis_settings(redis_url: str) -> RedisSettings:
    settings = RedisSettings.from_dsn(redis_url)
    # Keep retrying after a Redis blip instead of letting the poll loop exit (arq #386).
    settings.retry_on_timeout = True
    settings.conn_retries = 30
    return settings


def worker_options(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """Everything arq's ``Worker`` needs, for ``streamfold worker`` and for tests."""
    settings.require("database_url", "redis_url")
    options: dict[str, Any] = {
        "functions": [
            func(
                instrumented(FOLD_JOB, fold_notifications),
                name=FOLD_JOB,
                timeout=FOLD_TIMEOUT_SECONDS,
                max_tries=FOLD_MAX_TRIES,
                keep_result=0,
            ),
            func(
                instrumented(DISCONNECT_USER_JOB, disconnect_user),
                name=DISCONNECT_USER_JOB,
                max_tries=DISCONNECT_MAX_TRIES,
                keep_result=0,
            ),
            func(
                instrumented(CHECK_USER_TOKENS_JOB, check_user_tokens),
                name=CHECK_USER_TOKENS_JOB,
                max_tries=5,
                keep_result=0,
            ),
        ],
        "queue_name": settings.queue_name,
        "redis_settings": redis_settings(settings.redis_url or ""),
        "job_deserializer": _deserialize_job,
        "on_startup": startup,
        "on_shutdown": shutdown,
        "on_job_start": bind_job,
        "ctx": {"settings": settings},
        # Jobs are retried by our own rules; a result key would only block a job id
        # from being enqueued again (RELIABILITY.md 2).
        "keep_result": 0,
        "max_jobs": 64,
        # arq starts every job id one poll read (default 5 x max_jobs) even after a
        # SIGTERM; reading no more than it may run keeps a stopping worker's tail short.
        "queue_read_limit": 64,
        "poll_delay": 0.05,
        "job_timeout": FOLD_TIMEOUT_SECONDS,
        "max_tries": FOLD_MAX_TRIES,
        "health_check_interval": 15,
        "job_completion_wait": 10,
    }
    options.update(overrides)
    return options


def periodic_queue(settings: Settings) -> str:
    return f"{settings.queue_name}:periodic"


def periodic_worker_options(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """The cron jobs (reconciliation, token upkeep) run in a worker of their own queue.

    arq keeps a killed job "in progress" for the largest timeout of all the functions
    its worker knows, plus 10 s. Periodic jobs need minutes; a fold batch should be
    re-run within seconds. Separate workers keep the fold's 30 s + 10 s.
    """
    options = worker_options(settings)
    options.update(
        {
            "functions": [],
            "cron_jobs": [
                dataclasses.replace(c, coroutine=instrumented(c.name, c.coroutine))
                for c in (
                    reconcile_cron(settings),
                    collect_cron(settings),
                    upkeep_cron(),
                    rollup_cron(),
                    retention_cron(),
                )
            ],
            "queue_name": periodic_queue(settings),
            "max_jobs": 4,
            "queue_read_limit": 4,
            "poll_delay": 0.5,
            "health_check_interval": 60,
            # The fold worker listens for follows and publishes live status; one is enough.
            "ctx": {**options["ctx"], "live": False},
        }
    )
    options.update(overrides)
    return options


def create_worker(settings: Settings, **overrides: Any) -> Worker:
    return Worker(**worker_options(settings, **overrides))


def create_periodic_worker(settings: Settings, **overrides: Any) -> Worker:
    return Worker(**periodic_worker_options(settings, **overrides))


def run(settings: Settings) -> None:
    """Run the fold worker (and, with Twitch credentials, the periodic one) until
    SIGINT/SIGTERM; jobs that had to be cancelled are re-queued by arq.

    A lost Redis connection ends arq's poll loop and, with it, the process (arq #386).
    Instead, start fresh workers after a pause, so a Redis restart costs seconds rather
    than a dead worker; jobs it was running stay queued and re-run (the ledger makes that
    harmless)."""
    pause = 1.0
    while True:
        try:
            asyncio.run(_run_workers(settings))
            return  # stopped by a signal
        except (RedisError, OSError) as exc:
            log.warning("worker.redis_lost", error=type(exc).__name__, restart_in_s=pause)
            time.sleep(pause)
            pause = min(pause * 2, 30.0)


async def _run_workers(settings: Settings) -> None:
    # One Twitch client for the process (one connection pool, one app token), which
    # both workers' contexts share; each worker keeps its own ctx dict and database pool.
    redis = Redis.from_url(settings.redis_url or "")
    metrics = None
    if settings.worker_metrics_port:
        metrics = await serve_metrics(
            settings.worker_metrics_port,
            lambda: refresh_queue_gauges(redis, settings.queue_name, settings.fold_shards),
        )
    try:
        async with TwitchClient(settings, redis) as twitch:
            await _run_until_stopped(settings, twitch)
    finally:
        if metrics is not None:
            metrics.close()
        await redis.aclose()


async def _let_jobs_finish(workers: Sequence[Worker], grace: float) -> None:
    """Stop taking jobs and give the running ones ``grace`` seconds to finish. A job
    cut short afterwards is cancelled and stays queued (arq re-runs it; the ledger makes
    a re-run harmless), so nothing a worker took is lost either way."""
    for worker in workers:
        worker.allow_pick_jobs = False

    def running() -> list[asyncio.Task[Any]]:
        # Jobs arq fetched just before the signal may still start: look again each time.
        return [t for w in workers for t in w.tasks.values() if not t.done()]

    log.info("worker.stopping", running_jobs=len(running()), grace_s=grace)
    deadline = time.monotonic() + grace
    while (left := running()) and (remaining := deadline - time.monotonic()) > 0:
        await asyncio.wait(left, timeout=remaining)
    if left:
        log.warning("worker.jobs_cancelled_at_shutdown", jobs=len(left))
        for task in left:
            task.cancel()
        # A job cancelled in arq's finishing step ends in CancelledError: collect it here,
        # so arq's close() does not re-raise it and skip closing the connections.
        await asyncio.gather(*left, return_exceptions=True)
    for worker in workers:
        worker.tasks.clear()


async def _run_until_stopped(settings: Settings, twitch: TwitchClient) -> None:
    def ctx(**extra: Any) -> dict[str, Any]:
        return {"settings": settings, "twitch": twitch, **extra}

    # The fold: the shards this process holds a lease on, an arq worker for each.
    fold = ShardedFold(settings, worker_options, twitch)
    workers = []
    if settings.twitch_client_secret is not None:  # nothing to poll without credentials
        workers.append(create_periodic_worker(settings, handle_signals=False, ctx=ctx(live=False)))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runs = [asyncio.create_task(fold.run()), *(asyncio.create_task(w.async_run()) for w in workers)]
    stopped = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([*runs, stopped], return_when=asyncio.FIRST_COMPLETED)
    if stopped in done:
        grace = settings.worker_shutdown_grace_seconds
        await asyncio.gather(fold.stop(grace), _let_jobs_finish(workers, grace))
    else:
        runs[0].cancel()
        with contextlib.suppress(BaseException):
            await runs[0]
        await fold.close()
    for worker in workers:
        # Cancels jobs still running (arq re-queues them) and closes the connections.
        with contextlib.suppress(Exception):
            await worker.close()
    for task in [*runs, stopped]:
        task.cancel()
    for task in done:
        if task is not stopped and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
