"""SessionDBSession vs the SDK's SQLiteSession on the same add_items workload.

Run: ``python -m benchmarks.bench_openai_session [--calls N] [--sessions 1,100,1000] [--dir DIR]``

Each of S concurrent conversations calls ``add_items`` with one turn's items
(a user message, a function call, its output and an assistant answer: 4 items,
~0.6 KB) until N calls in total are done. Both stores are durable on return:
sessiondb fdatasyncs each group-committed batch; SQLiteSession runs SQLite in
WAL mode with Python's default ``synchronous=FULL``, which syncs the WAL on
every commit. Reported: add_items calls per second (and items per second),
and per-call latency p50/p99.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import sessiondb
from sessiondb.integrations.openai_agents import SessionDBSession


def turn_items(conversation: int, turn: int) -> list[dict[str, Any]]:
    call_id = f"call_{conversation}_{turn}"
    return [
        {"role": "user", "content": f"Turn {turn}: what is the weather in city number {conversation}?"},
        {
            "type": "function_call",
            "call_id": call_id,
            "name": "get_weather",
            "arguments": '{"city": "Paris"}',
            "id": f"fc_{turn}",
            "status": "completed",
        },
        {"type": "function_call_output", "call_id": call_id, "output": "sunny, 24 degrees, light wind from the west"},
        {
            "id": f"msg_{turn}",
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": "It is sunny in Paris, 24 degrees.", "annotations": []}],
        },
    ]


async def drive(sessions: list[Any], calls: int) -> tuple[float, list[float]]:
    """Run ``calls`` add_items spread over ``sessions`` concurrently; return wall time and latencies."""
    per_session = max(1, calls // len(sessions))
    latencies: list[float] = []

    async def conversation(index: int, session: Any) -> None:
        for turn in range(per_session):
            items = turn_items(index, turn)
            start = time.perf_counter()
            await session.add_items(items)
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(conversation(i, s) for i, s in enumerate(sessions)))
    return time.perf_counter() - start, latencies


async def bench_sessiondb(directory: Path, count: int, calls: int) -> tuple[float, list[float]]:
    async with sessiondb.open_store(directory / "sessiondb") as store:
        sessions = [SessionDBSession(f"conv-{i}", store) for i in range(count)]
        result = await drive(sessions, calls)
        assert len(await sessions[0].get_items()) == 4 * max(1, calls // count)
        return result


async def bench_sqlite(directory: Path, count: int, calls: int) -> tuple[float, list[float]]:
    from agents import SQLiteSession

    path = directory / "sqlite.db"
    sessions = [SQLiteSession(f"conv-{i}", path) for i in range(count)]
    try:
        result = await drive(sessions, calls)
        assert len(await sessions[0].get_items()) == 4 * max(1, calls // count)
        return result
    finally:
        for session in sessions:
            session.close()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def report(name: str, count: int, wall: float, latencies: list[float]) -> dict[str, Any]:
    calls = len(latencies)
    row = {
        "store": name,
        "sessions": count,
        "calls": calls,
        "calls_per_s": calls / wall,
        "items_per_s": 4 * calls / wall,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
    }
    print(
        f"{name:<16} {count:>8} {calls:>7} {row['calls_per_s']:>12,.0f} {row['items_per_s']:>12,.0f}"
        f" {row['p50_ms']:>9.2f} {row['p99_ms']:>9.2f}",
        flush=True,
    )
    return row


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000, help="add_items calls per configuration")
    parser.add_argument("--sessions", default="1,100,1000", help="concurrent sessions, comma-separated")
    parser.add_argument("--dir", default=None, help="directory on the disk to measure (default: a temp dir)")
    args = parser.parse_args()
    import agents

    agents.set_tracing_disabled(True)
    base = Path(tempfile.mkdtemp(prefix="bench-openai-", dir=args.dir))
    print(f"disk: {base}  cpus: {os.cpu_count()}  calls per run: {args.calls}")
    print(f"{'store':<16} {'sessions':>8} {'calls':>7} {'calls/s':>12} {'items/s':>12} {'p50 ms':>9} {'p99 ms':>9}")
    runners: list[tuple[str, Callable[[Path, int, int], Awaitable[tuple[float, list[float]]]]]] = [
        ("SessionDBSession", bench_sessiondb),
        ("SQLiteSession", bench_sqlite),
    ]
    try:
        for count in (int(c) for c in args.sessions.split(",")):
            calls = max(args.calls, 5 * count)  # at least 5 turns per conversation
            for name, runner in runners:
                directory = base / f"{name}-{count}"
                directory.mkdir()
                wall, latencies = await runner(directory, count, calls)
                report(name, count, wall, latencies)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
