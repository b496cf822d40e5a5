"""Worker log lines carry the job they belong to, and a group commit carries none."""

from __future__ import annotations

import asyncio
from typing import Any

from structlog.contextvars import clear_contextvars, get_contextvars

from aggregator.worker import bind_job
from schema.batching import GroupWriter


async def test_a_job_binds_its_id_for_its_own_task_only() -> None:
    clear_contextvars()

    async def run_job(ctx: dict[str, Any]) -> dict[str, Any]:
        # What arq does: on_job_start, then the job in a task started from there.
        await bind_job(ctx)
        return await asyncio.create_task(asyncio.sleep(0, get_contextvars()))

    seen = await asyncio.create_task(run_job({"job_id": "fold:abc"}))
    assert seen["job_id"] == "fold:abc"
    assert "job_id" not in get_contextvars()


async def test_a_shared_write_carries_no_callers_log_context() -> None:
    seen: list[dict[str, Any]] = []

    async def write(items: list[int]) -> None:
        seen.append(get_contextvars())

    writer: GroupWriter[int] = GroupWriter(write, max_batch=8)

    async def job(job_id: str) -> None:
        await bind_job({"job_id": job_id})
        await writer.submit(1)

    await asyncio.gather(asyncio.create_task(job("a")), asyncio.create_task(job("b")))
    assert seen
    assert all("job_id" not in context for context in seen)
