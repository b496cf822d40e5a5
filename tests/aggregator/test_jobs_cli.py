"""``streamfold reconcile`` and ``streamfold jobs``."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import UTC, datetime, timedelta

import httpx

from aggregator.job_runs import Outcomes, RunRow
from streamfold.jobs import describe_result, jobs_report, render, run_reconcile
from tests.aggregator.reconcile_rig import Rig, base_time

T = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def test_the_report_lists_runs_and_the_success_rate_against_the_target() -> None:
    rows = [
        RunRow(3, "reconcile", T, T + timedelta(seconds=2), "success", {"live": 4}, None),
        RunRow(2, "reconcile", T, T, "skipped", {}, "another run was in progress"),
        RunRow(1, "reconcile", T, T + timedelta(seconds=1), "failed", {}, "TwitchUnavailable"),
    ]
    text = render(rows, Outcomes(success=99, failed=1, skipped=1, running=0), T)
    lines = text.splitlines()
    assert lines[1].split()[3:6] == ["success", "2.0s", "live=4"]
    assert "error: TwitchUnavailable" in lines[3]
    assert lines[-1].endswith("success rate 99.0% (meets the 99% target)")
    below = render([], Outcomes(success=9, failed=1, skipped=0, running=0), T)
    assert "(no runs yet)" in below
    assert below.endswith("success rate 90.0% (BELOW the 99% target)")


async def test_reconcile_now_the_jobs_report_and_metrics(
    rig: Rig, receiver: httpx.AsyncClient
) -> None:
    await rig.connect(["100"])
    rig.go_live("100", "s1", base_time() - 5 * timedelta(minutes=1))
    rig.standin.fail("/helix/streams", 503, times=5)

    failed = await run_reconcile(rig.settings)
    result = await run_reconcile(rig.settings)

    assert describe_result(failed).startswith("failed: ")
    assert "error: TwitchUnavailable" in describe_result(failed)
    assert describe_result(result).startswith("success: channels=1 live=1 opened=1 samples=1")
    report = await jobs_report(rig.settings, "reconcile", 10)
    assert [line.split()[3] for line in report.splitlines()[1:3]] == ["success", "failed"]
    assert "1 succeeded, 1 failed" in report
    assert "success rate 50.0% (BELOW the 99% target)" in report
    metrics = (await receiver.get("/metrics")).text
    assert 'streamfold_job_runs_24h{job="reconcile",outcome="failed"} 1.0' in metrics
    assert 'streamfold_job_runs_24h{job="reconcile",outcome="success"} 1.0' in metrics
    assert 'streamfold_job_last_success_timestamp_seconds{job="reconcile"}' in metrics


async def test_the_jobs_command_runs(rig: Rig) -> None:
    env = os.environ | {
        "DATABASE_URL": rig.settings.database_url or "",
        "STREAMFOLD_DATA_DIR": "/nonexistent-streamfold-data",
        "LOG_FORMAT": "console",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streamfold",
        "jobs",
        "--job",
        "reconcile",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    assert "(no runs yet)" in out.decode()
    assert "success rate: no finished runs" in out.decode()
