"""Several writing processes on one store: throughput, latency, CPU per append, cross-process delivery.

Run: ``python -m benchmarks.bench_multiprocess [--processes 1,2,4] [--sessions 1000] [--seconds 5] [--postgres]``

For each store kind (a directory; PostgreSQL with ``--postgres``) and each
process count P, the parent creates ``--sessions`` sessions (untimed), starts
P writer processes and one subscriber process, then lets them run a measured
window. Each writer runs sessions/P agent-loop tasks, each owning one of the
shared sessions and awaiting every append (durable on return) before the
next. The subscriber follows ``subscribe_all`` in its own process, so every
delivery it times crossed a process boundary.

Reported per configuration: total durable appends/s in the window; p50/p99
append latency; CPU per append (user+system time of all writer processes in
the window, ``getrusage(RUSAGE_SELF)`` in each, over the appends they
completed; PostgreSQL's own server CPU is not included); and the subscriber's
delivery latency p50/p99 (the event's append timestamp to its delivery).
On a directory every process is a writer of its own (docs/multiprocess.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import sessiondb
from sessiondb import Message
from sessiondb.testing._mpcampaign import drop_schema

DEFAULT_DSN = os.environ.get("SESSIONDB_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
TEXT = "Here is what I found: the build fails because the lockfile pins an old resolver. " * 4  # ~330 B


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def session_ids(count: int) -> list[str]:
    return [f"bench-{n}" for n in range(count)]


# ------------------------------------------------------------------ children


async def writer(target: str, index: int, processes: int, sessions: int) -> None:
    mine = session_ids(sessions)[index::processes]
    async with sessiondb.open_store(target) as store:
        print("READY", flush=True)
        start, end = (float(x) for x in (await asyncio.to_thread(sys.stdin.readline)).split()[1:3])
        latencies: list[float] = []
        cpu: list[float] = []
        stop = False

        async def loop(session_id: str) -> None:
            n = 0
            while not stop:
                n += 1
                began = time.monotonic()
                await store.append(session_id, Message.user(f"p{index} {n} {TEXT}"))
                done = time.monotonic()
                if start <= began and done <= end:
                    latencies.append(done - began)

        async def clock() -> None:
            nonlocal stop
            await asyncio.sleep(max(0.0, start - time.monotonic()))
            cpu.append(cpu_seconds())
            await asyncio.sleep(max(0.0, end - time.monotonic()))
            cpu.append(cpu_seconds())
            stop = True

        await asyncio.gather(clock(), *(loop(sid) for sid in mine))
    result = {"appends": len(latencies), "latencies": latencies, "cpu": cpu[1] - cpu[0]}
    print("RESULT " + json.dumps(result))


async def follow_window(store: sessiondb.Store, start: float, end: float) -> list[float]:
    """Delivery latencies (ms) of the events appended in the window [start, end] (monotonic clock)."""
    latencies: list[float] = []
    subscription = store.subscribe_all()
    wall_start = (time.time() + (start - time.monotonic())) * 1000
    wall_end = wall_start + (end - start) * 1000

    async def follow() -> None:
        async for recorded in subscription:
            now = time.time() * 1000
            if wall_start <= recorded.timestamp_ms <= wall_end:
                latencies.append(now - recorded.timestamp_ms)

    follower = asyncio.create_task(follow())
    # Events appended in the window may arrive a little after it: follow one more second.
    await asyncio.sleep(max(0.0, end - time.monotonic()) + 1.0)
    follower.cancel()
    await subscription.aclose()
    return latencies


async def subscriber(target: str) -> None:
    async with sessiondb.open_store(target) as store:
        print("READY", flush=True)
        start, end = (float(x) for x in (await asyncio.to_thread(sys.stdin.readline)).split()[1:3])
        before = cpu_seconds()
        latencies = await follow_window(store, start, end)
    print("RESULT " + json.dumps({"latencies_ms": latencies, "cpu": cpu_seconds() - before}))


# ------------------------------------------------------------------ parent


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks.bench_multiprocess", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    )


def _line(process: subprocess.Popen[str], prefix: str) -> str:
    assert process.stdout is not None and process.stderr is not None
    for line in process.stdout:
        if line.startswith(prefix):
            return line[len(prefix) :]
    process.wait()
    errors = process.stderr.read()
    raise RuntimeError(f"a benchmark child exited ({process.returncode}) before {prefix.strip()}: {errors[-2000:]}")


async def prepare(target: str, sessions: int) -> None:
    async with sessiondb.open_store(target) as store:
        existing = {info.session_id for info in await store.list_sessions()}
        for session_id in session_ids(sessions):
            if session_id in existing:
                continue
            await store.create_session(session_id=session_id, model="bench")


def run_config(target: str, processes: int, sessions: int, seconds: float, warmup: float) -> dict[str, Any]:
    """One configuration: ``processes`` writers and one subscriber process over a measured window."""
    asyncio.run(prepare(target, sessions))
    children = [_start("--writer", target, str(i), str(processes), str(sessions)) for i in range(processes)]
    children.append(_start("--subscriber", target))
    try:
        for child in children:
            _line(child, "READY")
        start = time.monotonic() + warmup
        for child in children:
            assert child.stdin is not None
            child.stdin.write(f"GO {start} {start + seconds}\n")
            child.stdin.flush()
        results = [json.loads(_line(child, "RESULT ")) for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
            child.wait()
            for stream in (child.stdin, child.stdout, child.stderr):
                if stream is not None:
                    stream.close()
    writers, watched = results[:-1], results[-1]
    latencies = [x for r in writers for x in r["latencies"]]
    appends = sum(r["appends"] for r in writers)
    cpu = sum(r["cpu"] for r in writers)
    return {
        "processes": processes,
        "appends_per_s": appends / seconds,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "cpu_us_per_append": cpu / appends * 1e6 if appends else float("nan"),
        "cpu_cores_busy": cpu / seconds,
        "delivery_p50_ms": percentile(watched["latencies_ms"], 0.5),
        "delivery_p99_ms": percentile(watched["latencies_ms"], 0.99),
        "delivered": len(watched["latencies_ms"]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", default="1,2,4", help="comma-separated writer process counts")
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0, help="measured window")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--postgres", action="store_true", help="also run on PostgreSQL (--dsn)")
    parser.add_argument("--no-directory", dest="directory", action="store_false", help="skip the directory store")
    parser.add_argument("--dsn", default=DEFAULT_DSN)
    parser.add_argument("--dir", help="where to make the directory stores (default: a temporary directory)")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument(
        "--writer", nargs=4, metavar=("TARGET", "INDEX", "PROCESSES", "SESSIONS"), help=argparse.SUPPRESS
    )
    parser.add_argument("--subscriber", metavar="TARGET", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.writer:
        target, index, processes, sessions = args.writer
        asyncio.run(writer(target, int(index), int(processes), int(sessions)))
        return 0
    if args.subscriber:
        asyncio.run(subscriber(args.subscriber))
        return 0

    counts = [int(n) for n in args.processes.split(",")]
    kinds = (["directory"] if args.directory else []) + (["postgresql"] if args.postgres else [])
    root = Path(args.dir or tempfile.mkdtemp(prefix="bench-multiprocess-"))
    print(
        f"multi-process benchmark: {args.sessions} sessions shared by P writer processes "
        f"(sessions/P agent loops each, one awaited append at a time), {args.seconds} s window, "
        f"{os.cpu_count()} CPUs\n"
    )
    header = (
        f"{'store':<11} {'P':>2} {'appends/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'CPU µs/append':>14} "
        f"{'cores busy':>10} {'delivery p50':>13} {'p99 ms':>8}"
    )
    print(header)
    rows: list[dict[str, Any]] = []
    try:
        for kind in kinds:
            for processes in counts:
                schema = f"bench_mp_{uuid.uuid4().hex[:10]}"
                if kind == "directory":
                    target = str(root / f"store-{processes}")
                else:
                    target = f"{args.dsn}{'&' if '?' in args.dsn else '?'}schema={schema}"
                config = (target, processes, args.sessions, args.seconds, args.warmup)
                try:
                    row = {"store": kind, **run_config(*config)}
                finally:
                    if kind == "directory":
                        shutil.rmtree(target, ignore_errors=True)
                    else:
                        asyncio.run(drop_schema(args.dsn, schema))
                rows.append(row)
                print(
                    f"{kind:<11} {processes:>2} {row['appends_per_s']:>10,.0f} {row['p50_ms']:>8.1f} "
                    f"{row['p99_ms']:>8.1f} {row['cpu_us_per_append']:>14.0f} {row['cpu_cores_busy']:>10.2f} "
                    f"{row['delivery_p50_ms']:>13.1f} {row['delivery_p99_ms']:>8.1f}",
                    flush=True,
                )
    finally:
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"cpus": os.cpu_count(), "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
