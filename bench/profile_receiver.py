"""Where the web process spends its CPU under the receiver benchmark's load.

``python -m bench.profile_receiver [--seconds S] [--baseline]`` serves the receiver (or,
with ``--baseline``, the bare verify-and-204 app) exactly as ``bench/receiver_bench.py``
does, samples it with py-spy (``pip install py-spy``; attaching needs root or ptrace
rights) while the load generator keeps 64 requests in flight, and writes
``bench/results/receiver-profile.txt`` (or ``baseline-profile.txt``): the heaviest
stacks, and the functions by their own and their inclusive share of the samples. Only
samples with the GIL held count, so the figures are shares of the process's Python CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.receiver_bench import CONCURRENCY, load, queued_deliveries, summarise
from bench.services import RESULTS, environment, uvicorn

# Frames every stack starts with (the server's loop) say nothing about the request.
_NOISE = ("<module>", "run (", "_run_module_as_main", "_run_code", "main (", "__call__ (click")


def _frame(raw: str) -> str:
    """``name (path:line)`` shortened to ``name (module)``."""
    name, _, where = raw.partition(" (")
    path = where.rstrip(")").split(":")[0]
    parts = Path(path).with_suffix("").parts
    for anchor in ("site-packages", "receiver", "schema", "bench"):
        if anchor in parts:
            index = parts.index(anchor)
            keep = parts[index + 1 :] if anchor == "site-packages" else parts[index:]
            return f"{name} ({'.'.join(keep)})"
    return f"{name} ({Path(path).stem})"


def summarise_profile(collapsed: str, *, top: int = 15, depth: int = 7) -> str:
    """A text flame from py-spy's raw (collapsed) output: the heaviest stacks by their
    last ``depth`` frames, then functions by self and by inclusive share."""
    stacks: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame(f) for f in stack.split(";") if not f.startswith(_NOISE) and "(" in f]
        if not frames:
            continue
        total += count
        stacks[" > ".join(frames[-depth:])] += count
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    out = [f"samples: {total}", "", f"heaviest {top} stacks (last {depth} frames), share:"]
    for stack, count in stacks.most_common(top):
        out.append(f"{count / total:6.1%}  {stack}")
    out += ["", "functions by own time:"]
    out += [f"{c / total:6.1%}  {n}" for n, c in own.most_common(25)]
    out += ["", "functions by inclusive time:"]
    out += [f"{c / total:6.1%}  {n}" for n, c in inclusive.most_common(40)]
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.profile_receiver", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--baseline", action="store_true")
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    factory = "bench.baseline_app:create" if args.baseline else "receiver.app:from_environment"
    name = "baseline" if args.baseline else "receiver"
    count = int(14_000 * args.seconds)
    with environment() as env, uvicorn(factory, env.process_env(), f"{name}-web") as (port, pid):
        load(port, pid, 1.0, count=count, concurrency=CONCURRENCY)  # warm-up
        with tempfile.NamedTemporaryFile(suffix=".txt") as raw:
            # Recording until the load ends (SIGINT makes py-spy write what it has): the
            # load generator first builds and signs its requests, which takes a while.
            command = [spy, "record", "--pid", str(pid), "--format", "raw", "--gil"]
            command += ["--rate", "250", "-o", raw.name]
            recorder = subprocess.Popen(  # noqa: S603
                command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            try:
                result = summarise(
                    load(port, pid, args.seconds, count=count, concurrency=CONCURRENCY)
                )
            finally:
                recorder.send_signal(signal.SIGINT)
                recorder.wait(timeout=60)
            collapsed = Path(raw.name).read_text()
        asyncio.run(queued_deliveries(env.redis_url, env.queue_name))
    heading = (
        f"{name} under c={CONCURRENCY}: {result.accepted_per_s:,.0f} accepted/s, "
        f"p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms, "
        f"{result.cpu_us_per_request:.0f} us CPU per request\n\n"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}-profile.txt"
    path.write_text(heading + summarise_profile(collapsed))
    print(path)


if __name__ == "__main__":
    main()
