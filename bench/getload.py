"""A GET client for the public routes: raw HTTP/1.1 over kept-alive connections.

Runs in its own process (``python -m bench.getload CONFIG_FILE``, JSON: the plan of
thousands of paths is too long for one argument) like ``loadgen``, so
its CPU is not the server's. Each request is sent on one connection and the next only
after the answer arrived (``concurrency`` connections, default 1), so a latency is the
route's service time at the server, not queueing behind other requests. Writes, per
path label, every latency and the statuses seen.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from bench.loadgen import Connection


def request(port: int, path: str) -> bytes:
    head = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: application/json\r\n\r\n"
    return head.encode()


async def run(config: dict[str, object]) -> dict[str, object]:
    port = int(config["port"])  # type: ignore[call-overload]
    plan: list[list[str]] = config["plan"]  # type: ignore[assignment]  # [label, path] pairs
    concurrency = int(config.get("concurrency", 1))  # type: ignore[call-overload]
    loop = asyncio.get_running_loop()
    conns = [
        (await loop.create_connection(Connection, "127.0.0.1", port))[1] for _ in range(concurrency)
    ]
    requests = [(label, request(port, path)) for label, path in plan]
    latencies: dict[str, list[float]] = {label: [] for label, _ in plan}
    statuses: dict[str, dict[str, int]] = {label: {} for label, _ in plan}
    next_index = 0

    async def drive(conn: Connection) -> None:
        nonlocal next_index
        while next_index < len(requests):
            label, raw = requests[next_index]
            next_index += 1
            sent = time.perf_counter()
            status = await conn.send(raw)
            latencies[label].append(time.perf_counter() - sent)
            seen = statuses[label]
            seen[str(status)] = seen.get(str(status), 0) + 1

    await asyncio.gather(*(drive(c) for c in conns))
    for conn in conns:
        if conn.transport is not None:
            conn.transport.close()
    return {"latencies": latencies, "statuses": statuses}


def main() -> None:
    with open(sys.argv[1]) as file:
        config = json.load(file)
    result = asyncio.run(run(config))
    with open(str(config["out"]), "w") as out:
        json.dump(result, out)


if __name__ == "__main__":
    main()
