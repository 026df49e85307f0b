"""Session listings: a page of 50 from a 10,000-session store, with and without filters, on both backends.

Run: ``python -m benchmarks.bench_listing [--sessions 10000] [--scopes 100] [--repeat 200] [--dsn DSN]``
(``--no-postgres`` for the directory store only).

The store holds ``--sessions`` sessions spread over ``--scopes`` scopes (100 each by
default), each with a title, every tenth with the tag ``hot``. Timed, per call (median
and p99 of ``--repeat`` calls, each a fresh awaited call through the public ``Store``):

- ``page_sessions(limit=50)``: the first page, newest updated first, no filter;
- ``page_sessions(scope=S, limit=50)``: a scope of 100 sessions, from the scope index;
- ``page_sessions(tag="hot", limit=50)``: 1,000 sessions, from the tag index;
- ``page_sessions(title="…", limit=50)``: a title substring (no index: a filter over titled sessions);
- the second page of the scope listing, through its cursor;
- and for comparison what a caller did before scopes: ``list_sessions()`` of everything,
  then a filter on the id prefix in Python.

Side by side in one run, so compare ratios: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import sessiondb
from sessiondb import Store

DEFAULT_DSN = os.environ.get("SESSIONDB_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")


async def fill(store: Store, sessions: int, scopes: int) -> None:
    """Create the sessions concurrently (group commit), then label them."""
    chunk = 500
    ids = [f"s{n // (sessions // scopes):03d}-{n:05d}" for n in range(sessions)]
    for start in range(0, sessions, chunk):
        part = ids[start : start + chunk]
        await asyncio.gather(*(store.create_session(session_id=sid, scope=f"scope-{sid[1:4]}") for sid in part))
        await asyncio.gather(
            *(store.set_title(sid, f"Conversation {sid} about topic {hash(sid) % 97}") for sid in part)
        )
        await asyncio.gather(*(store.add_tags(sid, "hot") for sid in part if int(sid[-5:]) % 10 == 0))


async def timed(call: Callable[[], Awaitable[Any]], repeat: int) -> tuple[float, float]:
    await call()  # warm
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - start)
    samples.sort()
    return statistics.median(samples) * 1000, samples[min(len(samples) - 1, int(0.99 * len(samples)))] * 1000


async def measure(store: Store, repeat: int) -> list[tuple[str, float, float, int]]:
    scope = "scope-042"
    first = await store.page_sessions(scope=scope, limit=50)
    cursor = first.next_cursor
    cases: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
        ("page of 50, no filter", lambda: store.page_sessions(limit=50)),
        ("page of 50, scope (100 sessions)", lambda: store.page_sessions(scope=scope, limit=50)),
        ("page 2 of the scope, by cursor", lambda: store.page_sessions(scope=scope, limit=50, cursor=cursor)),
        ("page of 50, tag (1,000 sessions)", lambda: store.page_sessions(tag="hot", limit=50)),
        ("page of 50, title substring", lambda: store.page_sessions(title="topic 13", limit=50)),
        ("before scopes: list all + id prefix", lambda: _scan(store, "s042-")),
    ]
    rows = []
    for name, call in cases:
        result = await call()
        count = len(result.sessions) if hasattr(result, "sessions") else len(result)
        median, p99 = await timed(call, repeat)
        rows.append((name, median, p99, count))
    return rows


async def _scan(store: Store, prefix: str) -> list[Any]:
    return [info for info in await store.list_sessions() if info.session_id.startswith(prefix)]


def report(title: str, rows: list[tuple[str, float, float, int]]) -> None:
    base = rows[0][1]
    print(f"\n{title}")
    print(f"{'call':<40} {'median ms':>10} {'p99 ms':>9} {'rows':>6} {'vs no filter':>13}")
    for name, median, p99, count in rows:
        print(f"{name:<40} {median:>10.3f} {p99:>9.3f} {count:>6} {median / base:>12.2f}x")


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="sessiondb-bench-listing-") as directory:
        async with sessiondb.open_store(os.path.join(directory, "store")) as store:
            started = time.perf_counter()
            await fill(store, args.sessions, args.scopes)
            print(f"directory store: {args.sessions:,} sessions in {time.perf_counter() - started:.1f} s")
            report(f"directory store, {args.sessions:,} sessions", await measure(store, args.repeat))
    if args.no_postgres:
        return
    import asyncpg  # the PostgreSQL half only

    schema = f"bench_listing_{uuid.uuid4().hex[:8]}"
    try:
        async with sessiondb.open_store(sessiondb.PostgresBackend(args.dsn, schema=schema)) as store:
            started = time.perf_counter()
            await fill(store, args.sessions, args.scopes)
            print(f"\nPostgreSQL: {args.sessions:,} sessions in {time.perf_counter() - started:.1f} s")
            report(f"PostgreSQL, {args.sessions:,} sessions", await measure(store, args.repeat))
    finally:
        conn = await asyncpg.connect(args.dsn)
        try:
            await conn.execute(f"drop schema if exists {schema} cascade")
        finally:
            await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--scopes", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--dsn", default=DEFAULT_DSN)
    parser.add_argument("--no-postgres", action="store_true")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
