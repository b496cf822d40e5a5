"""/metrics of the web and of a real worker process parse with prometheus-client's own
parser, list every family, and move when a notification is received and folded."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Mapping

import httpx
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from receiver.app import create_app
from schema.settings import Settings
from streamfold.eventsub_sender import chat_message_body, signed
from tests.conftest import SECRET, Clock, eventually, free_port, serve
from tests.processes import answers, service_env, start

SHARED = [
    "streamfold_eventsub_messages",
    "streamfold_queue_jobs",
    "streamfold_queue_oldest_job_age_seconds",
    "streamfold_twitch_requests",
    "streamfold_twitch_ratelimit_remaining",
    "streamfold_retention_removed_rows",
]
WEB = [
    *SHARED,
    "streamfold_http_request_duration_seconds",
    "streamfold_queue_job_deliveries",
    "streamfold_dead_letters",
    "streamfold_job_runs_24h",
]
WORKER = [
    *SHARED,
    "streamfold_fold_lag_seconds",
    "streamfold_fold_commit_deliveries",
    "streamfold_jobs",
    "streamfold_fold_batches_parked",
    "streamfold_periodic_runs",
    "streamfold_reconcile_repairs",
]


def parse(exposition: str) -> dict[str, Metric]:
    return {family.name: family for family in text_string_to_metric_families(exposition)}


def value(families: Mapping[str, Metric], family: str, sample: str, **labels: str) -> float:
    """Sum of the family's samples named ``sample`` whose labels include ``labels``."""
    return sum(
        s.value
        for s in families[family].samples
        if s.name == sample and labels.items() <= s.labels.items()
    )


async def scrape(url: str) -> dict[str, Metric]:
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


async def test_web_and_worker_metrics_parse_and_move_after_a_fold(
    settings: Settings, clock: Clock, sessions: async_sessionmaker[AsyncSession], redis: object
) -> None:
    port = free_port()
    worker_url = f"http://127.0.0.1:{port}/metrics"
    worker = await start(service_env(settings, WORKER_METRICS_PORT=str(port)), "worker")
    try:
        await eventually(lambda: answers(worker_url), within=30)
        async with serve(create_app(settings, clock=clock)) as base:
            web_before = await scrape(base + "/metrics")
            worker_before = await scrape(worker_url)
            for name in WEB:
                assert name in web_before, name
            for name in WORKER:
                assert name in worker_before, name

            message = signed(
                SECRET.encode(),
                chat_message_body("42", "u1", "metrics-chat-1"),
                "channel.chat.message",
                sent_at=clock.now,
            )
            async with httpx.AsyncClient(base_url=base, timeout=10) as client:
                answer = await client.post(
                    "/eventsub/callback", content=message.body, headers=message.headers()
                )
                assert answer.status_code == 204
                forged = await client.post(
                    "/eventsub/callback",
                    content=message.body + b" ",
                    headers=message.headers(),
                )
                assert forged.status_code == 403

            async def folded() -> bool:
                async with sessions() as session:
                    n = await session.scalar(
                        text("SELECT count(*) FROM chat_messages WHERE NOT is_copy")
                    )
                return n == 1

            await eventually(folded, within=30)
            web = await scrape(base + "/metrics")
            chat = {"type": "channel.chat.message"}
            # The web app runs in this process, whose registry earlier tests also counted
            # into: what this test did is the difference.
            accepted = ("streamfold_eventsub_messages", "streamfold_eventsub_messages_total")
            assert (
                value(web, *accepted, outcome="accepted", **chat)
                - value(web_before, *accepted, outcome="accepted", **chat)
                == 1
            )
            refused = [
                s.labels
                for s in web["streamfold_eventsub_messages"].samples
                if s.labels.get("outcome") == "refused"
            ]
            assert refused
            assert all(r["reason"] for r in refused)
            callback = {"route": "/eventsub/callback"}
            durations = (
                "streamfold_http_request_duration_seconds",
                "streamfold_http_request_duration_seconds_count",
            )
            assert (
                value(web, *durations, status="204", **callback)
                - value(web_before, *durations, status="204", **callback)
                == 1
            )
            assert value(
                web, "streamfold_queue_job_deliveries", "streamfold_queue_job_deliveries_count"
            ) > value(
                web_before,
                "streamfold_queue_job_deliveries",
                "streamfold_queue_job_deliveries_count",
            )

            async def worker_counted() -> bool:
                after = await scrape(worker_url)
                return (
                    value(after, "streamfold_fold_lag_seconds", "streamfold_fold_lag_seconds_count")
                    >= 1
                )

            await eventually(worker_counted, within=10)
            after = await scrape(worker_url)
            assert (
                value(
                    after,
                    "streamfold_eventsub_messages",
                    "streamfold_eventsub_messages_total",
                    outcome="folded",
                    **chat,
                )
                == 1
            )
            assert (
                value(
                    after,
                    "streamfold_jobs",
                    "streamfold_jobs_total",
                    function="fold_notifications",
                    outcome="success",
                )
                >= 1
            )
            assert (
                value(
                    after,
                    "streamfold_fold_commit_deliveries",
                    "streamfold_fold_commit_deliveries_count",
                )
                >= 1
            )
            assert value(after, "streamfold_queue_jobs", "streamfold_queue_jobs") == 0
    finally:
        worker.send_signal(signal.SIGTERM)
        await asyncio.wait_for(worker.wait(), 30)
    assert worker.returncode == 0
