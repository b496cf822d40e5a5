"""Group commit: many concurrent callers, one write, each caller told its own outcome.

Both hot paths need it. The receiver may answer Twitch only after Redis took the
notification, but one Redis write per request caps a process near a fifth of its HTTP
ceiling (LIMITS.md). The worker must commit a job's effects before the job finishes, but
a transaction per job caps it near arq's own ~1 ms per job. So callers ``submit`` and
wait; one flusher writes everything pending in one go, and while it writes, the next
batch gathers. Under light load a batch is one item and adds no delay; under heavy load
batches grow to the concurrency, which is exactly when batching pays.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class GroupWriter(Generic[T]):
    def __init__(
        self,
        write: Callable[[list[T]], Awaitable[None]],
        *,
        max_batch: int,
        linger: float = 0.0,
        linger_below: int = 1 << 30,
        isolate: Callable[[BaseException], bool] = lambda exc: False,
    ) -> None:
        """``write`` must write all items or none. When it fails and ``isolate(exc)`` says
        the failure may belong to one item (bad data, not an outage), each item is
        written again on its own so one poison item cannot fail its neighbours.

        ``linger`` seconds: when a write starts from idle and the previous write carried
        fewer than ``linger_below`` items, wait this long first so that items arriving
        at a steady, moderate rate share a write: a few milliseconds per caller for far
        fewer, larger writes. Under heavy load writes are large already and nobody
        waits."""
        self._write = write
        self._max_batch = max_batch
        self._linger = linger
        self._linger_below = linger_below
        self._last_size = 0
        self._isolate = isolate
        self._pending: list[tuple[T, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> None:
        """Return once ``item`` is written; raise what its write raised."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._flusher is None or self._flusher.done():
            # A write serves many callers: it carries none of their log context.
            self._flusher = asyncio.create_task(self._flush(), context=contextvars.Context())
        # Not shielded: a caller cancelled while it waits cancels only its own future
        # (the flusher skips futures already done), never the write of its neighbours.
        await future

    async def _flush(self) -> None:
        batch: list[tuple[T, asyncio.Future[None]]] = []
        try:
            if self._linger > 0 and self._last_size < self._linger_below:
                await asyncio.sleep(self._linger)
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                self._last_size = len(batch)
                await self._write_batch(batch)
        except asyncio.CancelledError:
            # Shutting down mid-write: nobody may be told "written" without knowing it.
            for _, future in batch + self._pending:
                if not future.done():
                    future.set_exception(ConnectionAbortedError("writer stopped"))
            self._pending.clear()
            raise

    async def _write_batch(self, batch: list[tuple[T, asyncio.Future[None]]]) -> None:
        try:
            await self._write([item for item, _ in batch])
        except Exception as exc:
            if len(batch) > 1 and self._isolate(exc):
                for single in batch:
                    await self._write_batch([single])
                return
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for _, future in batch:
            if not future.done():
                future.set_result(None)
