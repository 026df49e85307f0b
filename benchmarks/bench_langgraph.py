"""LangGraph checkpointers side by side: SessionDBSaver vs AsyncSqliteSaver vs AsyncPostgresSaver.

Run: ``python -m benchmarks.bench_langgraph [--threads 1,100,1000] [--seconds 5] [--resume-steps 10000]
[--dsn DSN] [--dir DIR] [--systems ...] [--json FILE] [--plot PNG]`` (``--replot JSON --plot PNG``
redraws a saved run).

T concurrent graph threads each run a step loop as a compiled graph with
``durability="sync"`` drives its checkpointer: ``aput_writes`` (the step's task
writes) then ``aput`` (the checkpoint, its changed channels only), each awaited
before the next step. The state is a bounded message window (the last 5
messages, ~1 KB) and a step counter, so a checkpoint's size does not grow with
the thread. Every contender is durable on return:

- ``sessiondb (dir)``: ``SessionDBSaver`` over a store directory (group commit,
  one fdatasync per batch).
- ``AsyncSqliteSaver``: LangGraph's SQLite saver (one connection, WAL, commit per
  call; ``synchronous`` as SQLite defaults it, reported).
- ``sessiondb (pg)``: ``SessionDBSaver`` over PostgreSQL (one transaction per batch).
- ``AsyncPostgresSaver``: LangGraph's PostgreSQL saver on the same server, one saver
  per pooled connection (a saver serialises its calls on a lock).

Reported per contender and thread count: checkpoints/s, step latency p50/p99 (the
writes and the checkpoint), and, once per contender, the time to resume a thread
of ``--resume-steps`` steps: open the store (a fresh process state) and
``aget_tuple`` its newest checkpoint. sessiondb's thread has been compacted (the
background compactor snapshots it every ~1,000 events).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver, empty_checkpoint
from langgraph.checkpoint.base.id import uuid6

import sessiondb
from sessiondb._backends.postgres import PostgresBackend
from sessiondb.integrations.langgraph import SessionDBSaver

DEFAULT_DSN = os.environ.get("SESSIONDB_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
TEXT = "The tool returned 14 rows; the second one matches what the user asked for. " * 3
WINDOW = 5
SYSTEMS = ["sessiondb-dir", "sqlite", "sessiondb-pg", "postgres"]
LABELS = {
    "sessiondb-dir": "sessiondb (dir)",
    "sqlite": "AsyncSqliteSaver",
    "sessiondb-pg": "sessiondb (pg)",
    "postgres": "AsyncPostgresSaver",
}


class Thread:
    """One graph thread's loop state: its window of messages and newest checkpoint id."""

    def __init__(self, thread_id: str) -> None:
        self.thread_id = thread_id
        self.messages: list[dict[str, Any]] = []
        self.parent: str | None = None
        self.step = 0
        self.versions: dict[str, Any] = {}

    def next_step(self, saver: BaseCheckpointSaver[Any]) -> tuple[dict[str, Any], Any, dict[str, Any], dict[str, Any]]:
        """(config, checkpoint, metadata, new_versions) of the next step, as the Pregel loop makes them."""
        self.step += 1
        message = {"role": "assistant" if self.step % 2 else "tool", "content": TEXT, "id": f"m{self.step}"}
        self.messages = [*self.messages[-(WINDOW - 1) :], message]
        new_versions = {
            "messages": saver.get_next_version(self.versions.get("messages"), None),
            "step": saver.get_next_version(self.versions.get("step"), None),
        }
        self.versions.update(new_versions)
        checkpoint = empty_checkpoint()
        checkpoint["id"] = str(uuid6(clock_seq=self.step))
        checkpoint["channel_values"] = {"messages": self.messages, "step": self.step}
        checkpoint["channel_versions"] = dict(self.versions)
        checkpoint["versions_seen"] = {"agent": dict(self.versions)}
        config: dict[str, Any] = {"configurable": {"thread_id": self.thread_id, "checkpoint_ns": ""}}
        if self.parent is not None:
            config["configurable"]["checkpoint_id"] = self.parent
        metadata = {"source": "loop", "step": self.step, "parents": {}, "run_id": "bench"}
        return config, checkpoint, metadata, new_versions

    async def run_step(self, saver: BaseCheckpointSaver[Any]) -> None:
        config, checkpoint, metadata, new_versions = self.next_step(saver)
        if self.parent is not None:
            await saver.aput_writes(config, [("messages", self.messages[-1])], f"task-{self.step}")
        stored = await saver.aput(config, checkpoint, metadata, new_versions)  # type: ignore[arg-type]
        self.parent = stored["configurable"]["checkpoint_id"]


# ---------------------------------------------------------------------------- contenders


@contextlib.asynccontextmanager
async def open_saver(system: str, directory: Path, dsn: str, schema: str, pool_size: int) -> AsyncIterator[Any]:
    """A saver of the contender, over storage ``directory`` / ``schema`` (reopened on the same data)."""
    if system == "sessiondb-dir":
        async with sessiondb.open_store(directory / "store") as store:
            yield SessionDBSaver(store)
    elif system == "sessiondb-pg":
        async with sessiondb.open_store(PostgresBackend(dsn, schema=schema)) as store:
            yield SessionDBSaver(store)
    elif system == "sqlite":
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        directory.mkdir(parents=True, exist_ok=True)
        async with AsyncSqliteSaver.from_conn_string(str(directory / "checkpoints.db")) as saver:
            await saver.setup()
            yield saver
    else:
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
        from psycopg.rows import dict_row
        from psycopg_pool import AsyncConnectionPool

        async with AsyncConnectionPool(
            dsn,
            min_size=pool_size,
            max_size=pool_size,
            kwargs={
                "autocommit": True,
                "prepare_threshold": 0,
                "row_factory": dict_row,
                "options": f"-c search_path={schema}",
            },
            open=False,
        ) as pool:
            await pool.open()
            async with pool.connection() as conn:
                await conn.execute(f"create schema if not exists {schema}")  # type: ignore[arg-type]
            first = AsyncPostgresSaver(pool)  # type: ignore[arg-type]
            await first.setup()
            yield _SaverPool([first, *(AsyncPostgresSaver(pool) for _ in range(pool_size - 1))])  # type: ignore[arg-type]


class _SaverPool:
    """AsyncPostgresSaver instances over one pool, one per connection, picked by thread id."""

    def __init__(self, savers: list[Any]) -> None:
        self.savers = savers

    def _for(self, config: dict[str, Any]) -> Any:
        return self.savers[hash(config["configurable"]["thread_id"]) % len(self.savers)]

    def get_next_version(self, current: Any, channel: None) -> Any:
        return self.savers[0].get_next_version(current, channel)

    async def aput(self, config: dict[str, Any], *args: Any) -> Any:
        return await self._for(config).aput(config, *args)

    async def aput_writes(self, config: dict[str, Any], *args: Any) -> Any:
        return await self._for(config).aput_writes(config, *args)

    async def aget_tuple(self, config: dict[str, Any]) -> Any:
        return await self._for(config).aget_tuple(config)


async def run_loops(saver: Any, threads: list[Thread], seconds: float) -> tuple[int, float, list[float]]:
    """Every thread steps until ``seconds`` pass; returns (checkpoints, wall seconds, step latencies)."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def loop(thread: Thread) -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            await thread.run_step(saver)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(loop(thread) for thread in threads))
    return len(latencies), time.perf_counter() - started, latencies


async def throughput(system: str, count: int, seconds: float, root: Path, dsn: str) -> dict[str, Any]:
    schema = f"lgbench_{uuid.uuid4().hex[:10]}"
    directory = root / f"{system}-{count}"
    try:
        async with open_saver(system, directory, dsn, schema, min(count, 32)) as saver:
            threads = [Thread(f"thread-{i}") for i in range(count)]
            await run_loops(saver, threads, 0.5)  # warm up: first checkpoints, connections
            done, wall, latencies = await run_loops(saver, threads, seconds)
    finally:
        await drop_schema(system, dsn, schema)
        shutil.rmtree(directory, ignore_errors=True)
    latencies.sort()
    return {
        "system": system,
        "threads": count,
        "checkpoints_per_second": done / wall,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "steps": done,
    }


async def resume(system: str, steps: int, root: Path, dsn: str) -> dict[str, Any]:
    """Write one thread of ``steps`` steps, then time opening the saver afresh and reading its newest checkpoint."""
    schema = f"lgbench_{uuid.uuid4().hex[:10]}"
    directory = root / f"{system}-resume"
    try:
        async with open_saver(system, directory, dsn, schema, 1) as saver:
            thread = Thread("long")
            # Steps in waves of concurrent puts (the chain is computed first): one awaited
            # fsync per step would take minutes, and only the stored result matters here.
            for start in range(0, steps, 500):
                calls: list[Callable[[], Awaitable[Any]]] = []
                for _ in range(min(500, steps - start)):
                    config, checkpoint, metadata, new_versions = thread.next_step(saver)
                    if thread.parent is not None:
                        calls.append(_bind(saver.aput_writes, config, [("messages", thread.messages[-1])], "task"))
                    calls.append(_bind(saver.aput, config, checkpoint, metadata, new_versions))
                    thread.parent = checkpoint["id"]
                if system == "sqlite":  # one connection: concurrency buys nothing, order is kept
                    for call in calls:
                        await call()
                else:
                    await asyncio.gather(*(call() for call in calls))
            if isinstance(saver, SessionDBSaver):
                await saver.store.compact()  # what the background compactor does as the thread grows
        timings = []
        for _ in range(3):
            started = time.perf_counter()
            async with open_saver(system, directory, dsn, schema, 1) as saver:
                newest = await saver.aget_tuple({"configurable": {"thread_id": "long", "checkpoint_ns": ""}})
                timings.append(time.perf_counter() - started)
            assert newest is not None and newest.checkpoint["channel_values"]["step"] == steps, newest
    finally:
        await drop_schema(system, dsn, schema)
        shutil.rmtree(directory, ignore_errors=True)
    return {"system": system, "steps": steps, "resume_ms": 1000 * statistics.median(timings)}


def _bind(function: Callable[..., Awaitable[Any]], *args: Any) -> Callable[[], Awaitable[Any]]:
    return lambda: function(*args)


async def drop_schema(system: str, dsn: str, schema: str) -> None:
    if system not in ("sessiondb-pg", "postgres"):
        return
    import asyncpg

    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(f"drop schema if exists {schema} cascade")
    finally:
        await connection.close()


def sqlite_synchronous(root: Path) -> str:
    path = root / "probe.db"
    connection = sqlite3.connect(path)
    try:
        value = connection.execute("PRAGMA synchronous").fetchone()[0]
    finally:
        connection.close()
        path.unlink(missing_ok=True)
    return {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(value, str(value))


def table(rows: list[dict[str, Any]], resumes: list[dict[str, Any]], systems: list[str]) -> str:
    counts = sorted({row["threads"] for row in rows})
    lines = ["| threads | " + " | ".join(LABELS[s] for s in systems) + " |", "|---" * (len(systems) + 1) + "|"]
    for count in counts:
        cells = []
        for system in systems:
            row = next((r for r in rows if r["system"] == system and r["threads"] == count), None)
            cells.append(
                "—"
                if row is None
                else f"{row['checkpoints_per_second']:,.0f}/s, p50 {row['p50_ms']:.1f} ms, p99 {row['p99_ms']:.1f} ms"
            )
        lines.append(f"| {count:,} | " + " | ".join(cells) + " |")
    if resumes:
        cells = []
        for system in systems:
            found = next((r for r in resumes if r["system"] == system), None)
            cells.append("—" if found is None else f"{found['resume_ms']:.1f} ms")
        lines.append(f"| resume {resumes[0]['steps']:,}-step thread | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], systems: list[str], path: str) -> None:
    """Checkpoints/s against concurrent threads, one line per contender (log scales)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.2))
    for system in systems:
        points = sorted((r["threads"], r["checkpoints_per_second"]) for r in rows if r["system"] == system)
        axes.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=LABELS[system])
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("concurrent graph threads (each step awaits its checkpoint)")
    axes.set_ylabel("durable checkpoints / s")
    axes.set_title("LangGraph checkpointers (python -m benchmarks.bench_langgraph)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def from_json(path: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    data = json.loads(Path(path).read_text())
    return data["throughput"], data["resume"]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", default="1,100,1000")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--resume-steps", type=int, default=10_000)
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--dsn", default=DEFAULT_DSN)
    parser.add_argument(
        "--dir", default=None, help="where the directory and SQLite contenders write (default: a temp dir)"
    )
    parser.add_argument("--json", default=None, help="also write the results as JSON to this file")
    parser.add_argument("--plot", default=None, help="also draw checkpoints/s against threads into this PNG")
    parser.add_argument("--replot", default=None, help="only redraw --plot (and the table) from this JSON file")
    args = parser.parse_args()
    if args.replot:
        rows, resumes = from_json(args.replot)
        drawn = [s for s in SYSTEMS if any(r["system"] == s for r in rows)]
        print(table(rows, resumes, drawn))
        if args.plot:
            plot(rows, drawn, args.plot)
        return
    systems = [s for s in args.systems.split(",") if s]
    unknown = set(systems) - set(SYSTEMS)
    if unknown:
        parser.error(f"unknown systems {sorted(unknown)}; choose from {SYSTEMS}")
    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="lgbench-"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"SQLite synchronous={sqlite_synchronous(root)} (journal WAL, set by the saver); PostgreSQL {args.dsn}")
    rows = []
    for count in (int(c) for c in args.threads.split(",")):
        for system in systems:
            row = await throughput(system, count, args.seconds, root, args.dsn)
            rows.append(row)
            print(
                f"{LABELS[system]:>20} {count:>5} threads: {row['checkpoints_per_second']:>9,.0f} checkpoints/s  "
                f"p50 {row['p50_ms']:7.2f} ms  p99 {row['p99_ms']:7.2f} ms",
                flush=True,
            )
    resumes = []
    if args.resume_steps:
        for system in systems:
            found = await resume(system, args.resume_steps, root, args.dsn)
            resumes.append(found)
            print(f"{LABELS[system]:>20} resume of a {args.resume_steps:,}-step thread: {found['resume_ms']:.1f} ms")
    print()
    print(table(rows, resumes, systems))
    if args.json:
        Path(args.json).write_text(json.dumps({"throughput": rows, "resume": resumes}, indent=2))
    if args.plot:
        plot(rows, systems, args.plot)
    if not args.dir:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
