"""The benchmark's own pure parts: percentiles, the table, the load generator's parser."""

from __future__ import annotations

import asyncio

from bench.cli import FAILED, exit_code
from bench.loadgen import Connection, build
from bench.stats import Row, percentile, render
from receiver.signature import verify


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([3.0], 99) == 3.0
    assert percentile([], 50) == 0.0


def test_row_ratio_and_table_show_median_spread_baseline_and_verdict() -> None:
    row = Row("fold", "messages/s", "msg/s", [9_000, 10_000, 12_000], 20_000, "raw", ">= 0.25")
    row.met = True
    missing = Row("reconcile", "run time", "s", note="not available: no stand-in")
    assert row.median == 10_000
    assert row.ratio == 0.5
    table = render([row, missing])
    for cell in ("10,000", "9,000-12,000", "0.50"):
        assert cell in table
    assert ">= 0.25 ok" in table
    assert "n/a" in table
    assert "not available: no stand-in" in table


def test_a_failed_section_fails_the_run_and_a_complete_one_does_not() -> None:
    measured = Row("fold", "messages/s", "msg/s", [9_000.0])
    assert exit_code([measured]) == 0
    assert exit_code([measured, Row("live", FAILED, "", note="RuntimeError: boom")]) == 1


def test_prebuilt_requests_carry_valid_signatures() -> None:
    (request,) = build(b"secret-0123456789", 1, channels=1, chatters=1, port=8000)
    head, body = request.raw.split(b"\r\n\r\n", 1)
    headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:] if ": " in line)
    assert int(headers["Content-Length"]) == len(body)
    verify(
        [b"secret-0123456789"],
        headers["Twitch-Eventsub-Message-Id"],
        headers["Twitch-Eventsub-Message-Timestamp"],
        body,
        headers["Twitch-Eventsub-Message-Signature"],
    )


async def test_response_parser_handles_split_and_back_to_back_answers() -> None:
    conn = Connection()
    loop = asyncio.get_running_loop()
    first = conn.waiter = loop.create_future()
    conn.data_received(b"HTTP/1.1 204 No Content\r\nserver: x\r")
    assert not first.done()
    conn.data_received(b"\n\r\n")
    assert await first == 204
    second = conn.waiter = loop.create_future()
    conn.data_received(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 5\r\n\r\nab")
    assert not second.done()
    conn.data_received(b"cde")
    assert await second == 503
    assert conn.buffer == bytearray()


def test_live_bench_reads_sse_events_and_counts_the_unseen_at_the_end() -> None:
    from bench.live_bench import lags, sse_events

    lines = [": connected", "", "id: 7", "event: online", 'data: {"broadcaster_id": "1"}', ""]
    lines += [": keep-alive", "", "event: offline", "data: {}"]  # the last one is incomplete
    assert sse_events(lines) == [("online", {"broadcaster_id": "1"})]
    assert lags({"1": 10.0, "2": 11.0}, {"1": 10.5}, end=20.0) == [0.5, 9.0]
