"""Fold shards: each worker process folds the shards it holds a Redis lease on.

The receiver routes every delivery to one of ``fold_shards`` queues by its channel
(``schema/shards.py``). A ``ShardedFold`` keeps its worker's name in a sorted set of
live workers, claims shards up to its fair share (``ceil(shards / live workers)``) with
``SET NX PX`` leases and renews them every third of their lifetime; for each shard it
holds it runs an arq ``Worker`` on that shard's queue, all sharing one ``WorkerContext``
(one database pool, one group commit). So a channel's jobs run on one worker at a time,
and every channel-hour row has a single writer.

Moving a shard never loses or doubles a job. Jobs wait in the shard's queue while no
worker holds it. A worker hands a shard over by releasing it: it stops taking jobs from
it, lets the running ones finish, and only then deletes its lease, which a newcomer can
take at its next round. A worker that dies keeps its leases until they expire; the next
owner finds the dead worker's running jobs marked in progress by arq, and runs them
once arq's in-progress mark lapses (the fold timeout + 10 s). A worker that cannot
renew a lease (Redis unreachable) stops taking that shard's jobs and cancels its running
ones before the lease can expire: arq queues them again. Should two workers still
overlap (a process frozen past its lease), the ledger keeps every fold exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from arq.connections import ArqRedis, create_pool
from arq.worker import Worker
from redis.exceptions import RedisError

from aggregator.context import WorkerContext
from schema.logs import get_logger
from schema.settings import Settings
from schema.shards import lease_key, shard_queue, workers_key
from schema.twitch import TwitchClient

log = get_logger("aggregator.shards")

# Renew (or delete) a lease only while this worker still holds it.
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class ShardWorker(Worker):
    """An arq worker for one shard's queue that takes jobs only while its lease holds."""

    def __init__(self, lease_valid: Callable[[], bool], **options: Any) -> None:
        super().__init__(**options)
        self._lease_valid = lease_valid

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        if self._lease_valid():
            await super().start_jobs(job_ids)


@dataclass(slots=True)
class _Held:
    worker: ShardWorker
    run: asyncio.Task[None]
    # Until when this process may trust the lease: the last renewal's send time + the
    # lease's lifetime - a margin for clock skew and a slow reply.
    valid_until: float
    releasing: bool = False


class ShardedFold:
    """The fold side of one ``streamfold worker`` process."""

    def __init__(
        self,
        settings: Settings,
        worker_options: Callable[..., dict[str, Any]],
        twitch: TwitchClient | None = None,
        *,
        name: str | None = None,
        live: bool = True,
    ) -> None:
        self.settings = settings
        self.name = name or worker_name()
        self._options = worker_options
        self._twitch = twitch
        self._live = live
        self._ttl = settings.fold_shard_lease_seconds
        self._held: dict[int, _Held] = {}
        self._releases: set[asyncio.Task[None]] = set()
        self._stopping = False
        self.work: WorkerContext | None = None
        self._redis: ArqRedis | None = None

    # -- what the process sees ---------------------------------------------------------

    @property
    def shards(self) -> list[int]:
        return sorted(s for s, held in self._held.items() if not held.releasing)

    @property
    def workers(self) -> list[Worker]:
        return [held.worker for held in self._held.values()]

    # -- running -----------------------------------------------------------------------

    async def run(self) -> None:
        """Claim, renew and balance shards until ``stop`` (or cancellation)."""
        self._redis = await create_pool(self._options(self.settings)["redis_settings"])
        self.work = WorkerContext.open(self.settings, self._redis, self._twitch)
        if self._live:
            self.work.start_live()
        log.info("shards.started", worker=self.name, shards=self.settings.fold_shards)
        try:
            while not self._stopping:
                started = time.monotonic()
                self._raise_if_a_worker_ended()
                try:
                    await self._round()
                except (RedisError, OSError) as exc:
                    log.warning("shards.round_failed", error=type(exc).__name__)
                await self._drop_expired()
                await asyncio.sleep(max(0.05, self._ttl / 3 - (time.monotonic() - started)))
        finally:
            if not self._stopping:  # cancelled: stop what runs, leave the leases to lapse
                for shard in list(self._held):
                    await self._stop_shard(shard, wait=False)

    def _raise_if_a_worker_ended(self) -> None:
        """A shard's arq worker ends only on a lost Redis connection (arq #386): end
        this too, so ``worker.run`` starts afresh, as it does for a lone worker."""
        for held in self._held.values():
            if held.run.done() and not held.releasing:
                exc = None if held.run.cancelled() else held.run.exception()
                raise exc or RuntimeError("a shard's worker stopped")

    async def _round(self) -> None:
        redis = self._require_redis()
        queue = self.settings.queue_name
        now_ms = int(time.time() * 1000)
        ttl_ms = int(self._ttl * 1000)
        async with redis.pipeline(transaction=False) as pipe:
            pipe.zadd(workers_key(queue), {self.name: now_ms})
            pipe.zremrangebyscore(workers_key(queue), "-inf", now_ms - ttl_ms)
            pipe.zcard(workers_key(queue))
            live = int((await pipe.execute())[2])
        fair = math.ceil(self.settings.fold_shards / max(1, live))
        await self._renew()
        holding = self.shards
        for shard in holding[fair:]:  # more than our share: hand the extras over
            self._held[shard].releasing = True
            release = asyncio.create_task(self._release(shard))
            self._releases.add(release)
            release.add_done_callback(self._releases.discard)
        for shard in self._candidates():
            if len(self.shards) >= fair:
                break
            sent = time.monotonic()
            if await redis.set(lease_key(queue, shard), self.name, nx=True, px=ttl_ms):
                self._start_shard(shard, sent)

    def _candidates(self) -> list[int]:
        """Shards not held here, starting at a place of this worker's own, so workers
        starting together do not all race for shard 0 first."""
        count = self.settings.fold_shards
        offset = sum(self.name.encode()) % count
        order = [(offset + i) % count for i in range(count)]
        return [s for s in order if s not in self._held]

    async def _renew(self) -> None:
        redis = self._require_redis()
        queue = self.settings.queue_name
        for shard, held in list(self._held.items()):
            sent = time.monotonic()
            kept = await redis.eval(  # type: ignore[misc]
                _RENEW, 1, lease_key(queue, shard), self.name, str(int(self._ttl * 1000))
            )
            if kept:
                held.valid_until = sent + self._ttl * 0.8
            elif shard in self._held:
                log.warning("shards.lease_lost", worker=self.name, shard=shard)
                await self._stop_shard(shard, wait=False)

    async def _drop_expired(self) -> None:
        """A lease not renewed in time (Redis unreachable) may be someone else's soon."""
        now = time.monotonic()
        for shard, held in list(self._held.items()):
            if held.valid_until <= now:
                log.warning("shards.lease_expired", worker=self.name, shard=shard)
                await self._stop_shard(shard, wait=False)

    def _start_shard(self, shard: int, sent: float) -> None:
        work = self.work
        assert work is not None
        holder: dict[str, _Held] = {}

        def valid() -> bool:
            held = holder.get("held")
            return held is not None and not held.releasing and time.monotonic() < held.valid_until

        ctx = {"settings": self.settings, "twitch": work.twitch, "shared_state": True}
        work.attach(ctx)
        options = self._options(
            self.settings, queue_name=shard_queue(self.settings.queue_name, shard), ctx=ctx
        )
        options["handle_signals"] = False
        worker = ShardWorker(valid, **options)
        held = _Held(worker, asyncio.create_task(worker.async_run()), sent + self._ttl * 0.8)
        holder["held"] = held
        self._held[shard] = held
        log.info("shards.claimed", worker=self.name, shard=shard)

    async def _release(self, shard: int) -> None:
        """Finish the shard's running jobs, then let another worker have it."""
        await self._stop_shard(shard, wait=True)
        redis = self._require_redis()
        with contextlib.suppress(RedisError, OSError):
            await redis.eval(  # type: ignore[misc]
                _RELEASE, 1, lease_key(self.settings.queue_name, shard), self.name
            )
        log.info("shards.released", worker=self.name, shard=shard)

    async def _stop_shard(self, shard: int, *, wait: bool) -> None:
        held = self._held.get(shard)
        if held is None:
            return
        held.releasing = True
        worker = held.worker
        worker.allow_pick_jobs = False
        if wait:
            timeout = float(self._options(self.settings)["job_timeout"])
            await _finish_running([worker], grace=timeout)
        self._held.pop(shard, None)
        # What still runs is cancelled: arq queues it again (the ledger makes a re-run
        # harmless). Collected here, so that close() does not re-raise it.
        left = [t for t in worker.tasks.values() if not t.done()]
        for task in left:
            task.cancel()
        await asyncio.gather(*left, return_exceptions=True)
        worker.tasks.clear()
        with contextlib.suppress(Exception):
            await worker.close()
        held.run.cancel()
        with contextlib.suppress(BaseException):
            await held.run

    # -- stopping ----------------------------------------------------------------------

    async def stop(self, grace: float) -> None:
        """Stop taking jobs, give the running ones ``grace`` seconds, release every
        lease (so another worker takes the shards at once) and close."""
        self._stopping = True
        await _finish_running(self.workers, grace)
        for shard in list(self._held):
            await self._release(shard)
        await self.close()

    async def close(self) -> None:
        if self._redis is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._redis.zrem(workers_key(self.settings.queue_name), self.name)
        if self.work is not None:
            await self.work.close()
            self.work = None
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    def _require_redis(self) -> ArqRedis:
        assert self._redis is not None, "run() first"
        return self._redis


async def _finish_running(workers: Sequence[Worker], grace: float) -> None:
    """Stop taking jobs and wait up to ``grace`` seconds for the running ones."""
    for worker in workers:
        worker.allow_pick_jobs = False

    def running() -> list[asyncio.Task[Any]]:
        return [t for w in workers for t in w.tasks.values() if not t.done()]

    deadline = time.monotonic() + grace
    while (left := running()) and (remaining := deadline - time.monotonic()) > 0:
        await asyncio.wait(left, timeout=remaining)
