"""The fold path, one transaction per batch: decode → ``fold.plan`` → ``store``.

``fold_deliveries`` decodes (``schema.events.decode``), ledgers the message ids
(``store.claim_ids``: the only read, and it is the ledger's insert), plans the changes
purely (``fold.plan``) and writes them (``store.write_plan``). Jobs running at the same
time in one process are committed together by a ``Folder`` (a ``GroupWriter``), so a
worker does one transaction per poll's worth of jobs rather than one per job, and each
job still finishes only after its own effects committed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from aggregator import store
from aggregator.fold import FoldPlan, plan
from aggregator.metrics import observe_commit
from schema.batching import GroupWriter
from schema.db import is_transient
from schema.events import AuthorizationRevoke, Delivery, decode
from schema.logs import get_logger
from schema.partitions import HORIZON

log = get_logger("aggregator.pipeline")

# Largest number of deliveries committed in one transaction (~1 KiB each). LIMITS.md:
# batches of 1,000 reach 25-35k upserts/s on one connection; bigger gains little.
MAX_DELIVERIES_PER_COMMIT = 2000


@dataclass(frozen=True, slots=True)
class FoldStats:
    deliveries: int
    duplicates: int
    chat_messages: int
    stream_events: int
    dead_letters: int


@dataclass(frozen=True, slots=True)
class Folded:
    plan: FoldPlan
    stats: FoldStats
    # The deliveries this transaction ledgered first (the others were folded before).
    fresh: list[Delivery]


async def fold_deliveries(
    session: AsyncSession, deliveries: Sequence[Delivery], *, horizon: timedelta = HORIZON
) -> Folded:
    """Fold ``deliveries`` into the caller's transaction (the caller commits); ``horizon``
    is ``DEDUPE_HORIZON_SECONDS`` (``schema/partitions.py``)."""
    unique = list({d.message_id: d for d in reversed(deliveries)}.values())  # first wins
    notifications = [decode(d) for d in unique]
    fresh = await store.claim_ids(session, unique, horizon=horizon)
    folded = plan(
        notifications,
        folded_before={d.message_id for d in unique if d.message_id not in fresh},
        bodies={d.message_id: d.body for d in unique if d.message_id in fresh},
    )
    received = {d.message_id: d.timestamp for d in unique}
    await store.write_plan(session, folded, received, horizon=horizon)
    stats = FoldStats(
        deliveries=len(deliveries),
        duplicates=len(deliveries) - len(fresh),
        chat_messages=len(folded.chat),
        stream_events=len(folded.onlines) + len(folded.offlines),
        dead_letters=len(folded.dead),
    )
    return Folded(folded, stats, [d for d in unique if d.message_id in fresh])


@dataclass(slots=True)
class FoldBatch:
    """One job's deliveries, and after the commit, the revocations they carried."""

    deliveries: Sequence[Delivery]
    disconnects: list[AuthorizationRevoke] = field(default_factory=list)


class Folder:
    """Commits the batches of concurrently running jobs together."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, horizon: timedelta = HORIZON
    ) -> None:
        self._sessions = sessions
        self.horizon = horizon
        self._writer: GroupWriter[FoldBatch] = GroupWriter(
            self._commit, max_batch=64, isolate=lambda exc: not is_transient(exc)
        )

    async def fold(self, deliveries: Sequence[Delivery]) -> list[AuthorizationRevoke]:
        """Fold one job's deliveries; return the revocations among them (folded now or
        before), whose follow-up the job sends once the fold committed."""
        batch = FoldBatch(deliveries)
        if len(deliveries) > MAX_DELIVERIES_PER_COMMIT:
            await self._commit([batch])
        else:
            await self._writer.submit(batch)
        return batch.disconnects

    async def _commit(self, batches: list[FoldBatch]) -> None:
        deliveries = [d for batch in batches for d in batch.deliveries]
        async with self._sessions.begin() as session:
            folded = await fold_deliveries(session, deliveries, horizon=self.horizon)
        observe_commit(deliveries, folded.fresh, (d.message_id for d in folded.plan.dead))
        for batch in batches:
            ids = {d.message_id for d in batch.deliveries}
            batch.disconnects = [r for r in folded.plan.disconnects if r.message_id in ids]
        stats = folded.stats
        log.debug(
            "fold.committed",
            jobs=len(batches),
            deliveries=stats.deliveries,
            duplicates=stats.duplicates,
            dead_letters=stats.dead_letters,
        )
