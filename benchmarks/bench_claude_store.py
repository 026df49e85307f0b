"""SessionDBSessionStore vs the SDK's InMemorySessionStore vs a file-per-session JSONL mirror.

Run: ``python -m benchmarks.bench_claude_store [--batches 1,10,100] [--sessions 1,100,1000] [--rounds R]
[--load-entries 10000] [--dir DIR]``

Each of S concurrent sessions appends R batches of B transcript entries (Claude Code
``assistant`` lines, ~0.7 KB each, every one with a uuid) to its own key, as the SDK's
mirror does. Systems:

- ``sessiondb``: ``SessionDBSessionStore`` over a store directory (every append
  durable on return: group commit, one fdatasync per batch of appends).
- ``in-memory``: the SDK's ``InMemorySessionStore`` (not durable: the ceiling).
- ``jsonl``: one JSONL file per key, written the obvious way: per ``append``, open
  for append, write the lines, fsync (a new file also fsyncs its directory), in a
  worker thread so sessions overlap.

Reported: entries per second, ``append`` latency p50/p99, and the time to ``load`` one
session of ``--load-entries`` entries (written in batches of 100).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from claude_agent_sdk import InMemorySessionStore

import sessiondb
from sessiondb.integrations.claude_agent_sdk import SessionDBSessionStore

PROJECT = "-home-bench-app"


_MESSAGE = {
    "id": "msg_01",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "content": [{"type": "text", "text": "I read the file and the tests pass. " * 4}],
    "stop_reason": None,
    "stop_sequence": None,
    "usage": {"input_tokens": 120, "output_tokens": 80, "cache_read_input_tokens": 4000},
}
_ENTRY = {
    "parentUuid": None,
    "isSidechain": False,
    "userType": "external",
    "cwd": "/home/bench/app",
    "sessionId": "",
    "version": "2.0.0",
    "gitBranch": "main",
    "type": "assistant",
    "uuid": "",
    "timestamp": "2026-03-01T10:00:00.000Z",
    "requestId": "req_01",
    "message": _MESSAGE,
}


def entry(session: int, n: int) -> dict[str, Any]:
    """One Claude Code assistant line (~0.7 KB as JSON); a copy of a template, so building it costs little."""
    uuid = f"00000000-0000-4000-8000-{session:06d}{n:06d}"
    return {**_ENTRY, "sessionId": f"session-{session}", "uuid": uuid, "message": {**_MESSAGE, "id": f"msg_{n}"}}


class JsonlMirror:
    """A file per key; each append writes its lines and fsyncs before returning (the obvious durable mirror)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: dict[str, str]) -> Path:
        return self.root / key["project_key"] / f"{key['session_id']}.jsonl"

    def _append(self, key: dict[str, str], data: bytes) -> None:
        path = self._path(key)
        new = not path.exists()
        if new:
            path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        if new:
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    async def append(self, key: dict[str, str], entries: list[dict[str, Any]]) -> None:
        data = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in entries).encode()
        await asyncio.to_thread(self._append, key, data)

    async def load(self, key: dict[str, str]) -> list[dict[str, Any]] | None:
        def read() -> list[dict[str, Any]] | None:
            try:
                text = self._path(key).read_text()
            except FileNotFoundError:
                return None
            return [json.loads(line) for line in text.splitlines()]

        return await asyncio.to_thread(read)


async def drive(store: Any, sessions: int, rounds: int, batch: int) -> tuple[float, list[float]]:
    latencies: list[float] = []

    async def session(s: int) -> None:
        key = {"project_key": PROJECT, "session_id": f"session-{s}"}
        for r in range(rounds):
            entries = [entry(s, r * batch + i) for i in range(batch)]
            started = time.perf_counter()
            await store.append(key, entries)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(session(s) for s in range(sessions)))
    return time.perf_counter() - started, latencies


async def timed_load(store: Any, entries: int) -> float:
    key = {"project_key": PROJECT, "session_id": "session-big"}
    for start in range(0, entries, 100):
        await store.append(key, [entry(999_999, n) for n in range(start, min(entries, start + 100))])
    started = time.perf_counter()
    loaded = await store.load(key)
    elapsed = time.perf_counter() - started
    assert loaded is not None and len(loaded) == entries
    return elapsed


async def with_system(name: str, root: Path, body: Callable[[Any], Awaitable[Any]]) -> Any:
    if name == "sessiondb":
        async with sessiondb.open_store(root / "sessiondb") as store:
            return await body(SessionDBSessionStore(store))
    if name == "in-memory":
        return await body(InMemorySessionStore())
    return await body(JsonlMirror(root / "jsonl"))


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def main_async(args: argparse.Namespace) -> None:
    systems = ["sessiondb", "in-memory", "jsonl"]
    print(f"{'system':<10} {'sessions':>8} {'batch':>5} {'entries/s':>11} {'p50 ms':>8} {'p99 ms':>8}")
    for sessions in args.sessions:
        for batch in args.batches:
            for name in systems:
                root = Path(tempfile.mkdtemp(dir=args.dir))
                try:
                    wall, latencies = await with_system(
                        name, root, lambda store, s=sessions, b=batch: drive(store, s, args.rounds, b)
                    )
                finally:
                    shutil.rmtree(root, ignore_errors=True)
                total = sessions * args.rounds * batch
                print(
                    f"{name:<10} {sessions:>8} {batch:>5} {total / wall:>11,.0f} "
                    f"{statistics.median(latencies) * 1e3:>8.2f} {percentile(latencies, 0.99) * 1e3:>8.2f}",
                    flush=True,
                )
    for name in systems:
        root = Path(tempfile.mkdtemp(dir=args.dir))
        try:
            elapsed = await with_system(name, root, lambda store: timed_load(store, args.load_entries))
        finally:
            shutil.rmtree(root, ignore_errors=True)
        print(f"load of a {args.load_entries:,}-entry session, {name}: {elapsed * 1e3:.1f} ms", flush=True)


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=_ints, default=[1, 10, 100])
    parser.add_argument("--sessions", type=_ints, default=[1, 100, 1000])
    parser.add_argument("--rounds", type=int, default=3, help="appends per session")
    parser.add_argument("--load-entries", type=int, default=10_000)
    parser.add_argument("--dir", default=None, help="where the stores live (default: the system temp dir)")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
