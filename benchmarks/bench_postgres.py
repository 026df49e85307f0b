"""PostgreSQL: sessiondb's group commit vs one transaction per append vs LangGraph's AsyncPostgresSaver.

Run: ``python -m benchmarks.bench_postgres [--dsn DSN] [--sessions 1000] [--seconds 5]``

S concurrent sessions each run an agent-style loop: append one message, wait
for it to be durable, append the next. All three contenders write to the same
PostgreSQL server (a dedicated database, ``sessiondb_bench``, so its commit
counter is theirs alone), with ``synchronous_commit=on``: an append that
returned is on disk.

- sessiondb: ``Store.append`` over ``PostgresBackend`` (one ``append_batch``
  call = one round trip and one transaction per batch of appends).
- transaction per append, two ways, on a pool of connections (so PostgreSQL's
  own WAL group commit helps): "one statement" is the strongest form, a CTE that
  bumps the session's head and inserts the event in one round trip; "textbook"
  is BEGIN, SELECT ... FOR UPDATE of the head, INSERT, UPDATE, COMMIT.
- LangGraph: ``AsyncPostgresSaver.aput`` of a checkpoint holding the
  conversation (as a LangGraph agent does after each step), with one saver per
  connection of a pool (a single saver serialises every call on its lock).

Reported per contender: durable appends/s, latency p50/p99, the server's
committed transactions per second (``pg_stat_database.xact_commit`` delta) and
transactions per append.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import asyncpg

import sessiondb
from sessiondb import Message, Usage
from sessiondb._backends.postgres import PostgresBackend

DEFAULT_DSN = os.environ.get("SESSIONDB_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
BENCH_DATABASE = "sessiondb_bench"
TEXT = "Here is what I found: the build fails because the lockfile pins an old resolver. " * 3


class Result:
    def __init__(self, name: str, appends: int, seconds: float, latencies: list[float], transactions: int) -> None:
        self.name = name
        self.appends = appends
        self.seconds = seconds
        self.latencies = sorted(latencies)
        self.transactions = transactions

    @property
    def rate(self) -> float:
        return self.appends / self.seconds

    def percentile(self, fraction: float) -> float:
        return self.latencies[min(len(self.latencies) - 1, int(fraction * len(self.latencies)))] * 1000

    def row(self) -> str:
        return (
            f"{self.name:<44} {self.rate:>11,.0f} {self.percentile(0.50):>9.1f} {self.percentile(0.99):>9.1f} "
            f"{self.transactions / self.seconds:>10,.0f} {self.transactions / self.appends:>9.3f}"
        )


async def bench_database(dsn: str) -> str:
    """A DSN for the benchmark's own database (created once), so its commit counter is not shared."""
    conn = await asyncpg.connect(dsn)
    try:
        if not await conn.fetchval("select true from pg_database where datname = $1", BENCH_DATABASE):
            await conn.execute(f"create database {BENCH_DATABASE}")
    finally:
        await conn.close()
    return urlsplit(dsn)._replace(path=f"/{BENCH_DATABASE}").geturl()


async def committed_transactions(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("select pg_stat_clear_snapshot()")
        value = await conn.fetchval("select xact_commit from pg_stat_database where datname = current_database()")
        return int(value)
    finally:
        await conn.close()


async def run_loops(
    sessions: list[str], seconds: float, append: Callable[[str, int], Awaitable[None]]
) -> tuple[int, float, list[float]]:
    """Every session appends in a loop until ``seconds`` pass; return appends, wall time and latencies."""
    latencies: list[float] = []
    stop = time.perf_counter() + seconds
    clock = time.perf_counter

    async def loop(sid: str) -> None:
        turn = 0
        while clock() < stop:
            started = clock()
            await append(sid, turn)
            latencies.append(clock() - started)
            turn += 1

    began = clock()
    await asyncio.gather(*(loop(sid) for sid in sessions))
    return len(latencies), clock() - began, latencies


async def bench_sessiondb(dsn: str, sessions: int, seconds: float) -> Result:
    schema = "bench_sessiondb"
    await _drop_schema(dsn, schema)
    store = sessiondb.open_store(PostgresBackend(dsn, schema=schema))
    async with store:
        sids = [await store.create_session(session_id=f"s{i}", model="m") for i in range(sessions)]
        usage = Usage(1200, 80)

        async def append(sid: str, turn: int) -> None:
            await store.append(sid, Message.assistant(TEXT, usage=usage) if turn % 2 else Message.user(TEXT))

        await run_loops(sids, 0.5, append)  # warm up: prepared statements, caches
        await settle()
        before = await committed_transactions(dsn)
        count, wall, latencies = await run_loops(sids, seconds, append)
    await settle()
    after = await committed_transactions(dsn)
    return Result("sessiondb (group commit)", count, wall, latencies, after - before)


async def bench_per_append_transaction(
    dsn: str, sessions: int, seconds: float, pool_size: int, *, textbook: bool
) -> Result:
    schema = "bench_baseline"
    await _drop_schema(dsn, schema)
    setup = await asyncpg.connect(dsn)
    try:
        await setup.execute(f"create schema {schema}")
        await setup.execute(f"create table {schema}.sessions (id text primary key, version integer not null)")
        await setup.execute(
            f"create table {schema}.events (position bigserial primary key, session_id text not null, "
            "version integer not null, timestamp_ms bigint not null, payload bytea not null, "
            "unique (session_id, version))"
        )
        await setup.executemany(f"insert into {schema}.sessions values ($1, 0)", [(f"s{i}",) for i in range(sessions)])
    finally:
        await setup.close()
    # One statement, one implicit transaction: check and bump the head, insert the event.
    statement = (
        f"with head as (update {schema}.sessions set version = version + 1 where id = $1 returning version) "
        f"insert into {schema}.events (session_id, version, timestamp_ms, payload) "
        "select $1, version, $2, $3 from head returning version"
    )
    # The textbook version: BEGIN; lock the head; insert; bump; COMMIT (five round trips).
    lock_head = f"select version from {schema}.sessions where id = $1 for update"
    insert = f"insert into {schema}.events (session_id, version, timestamp_ms, payload) values ($1, $2, $3, $4)"
    bump = f"update {schema}.sessions set version = $2 where id = $1"
    encode = __import__("msgspec").json.encode
    # No reset query on release: it would add a round trip and a transaction per append.
    pool = await asyncpg.create_pool(dsn, min_size=pool_size, max_size=pool_size, reset=_no_reset)
    try:

        async def append(sid: str, turn: int) -> None:
            message = Message.assistant(TEXT, usage=Usage(1200, 80)) if turn % 2 else Message.user(TEXT)
            async with pool.acquire() as conn:
                if not textbook:
                    await conn.fetchval(statement, sid, int(time.time() * 1000), encode(message))
                    return
                async with conn.transaction():
                    version = await conn.fetchval(lock_head, sid) + 1
                    await conn.execute(insert, sid, version, int(time.time() * 1000), encode(message))
                    await conn.execute(bump, sid, version)

        sids = [f"s{i}" for i in range(sessions)]
        await run_loops(sids, 0.5, append)
        await settle()
        before = await committed_transactions(dsn)
        count, wall, latencies = await run_loops(sids, seconds, append)
    finally:
        await pool.close()
    await settle()
    after = await committed_transactions(dsn)
    name = "tx per append, textbook" if textbook else "tx per append, one statement"
    return Result(f"{name} (pool {pool_size})", count, wall, latencies, after - before)


async def bench_langgraph(dsn: str, sessions: int, seconds: float, savers: int) -> Result:
    from langgraph.checkpoint.base import empty_checkpoint
    from langgraph.checkpoint.base.id import uuid6
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from psycopg.rows import dict_row
    from psycopg_pool import AsyncConnectionPool

    conninfo = dsn
    async with AsyncConnectionPool(
        conninfo,
        min_size=savers,
        max_size=savers,
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
        open=False,
    ) as pool:
        await pool.open()
        async with pool.connection() as conn:
            for table in ("checkpoints", "checkpoint_blobs", "checkpoint_writes", "checkpoint_migrations"):
                await conn.execute(f"drop table if exists {table}")  # type: ignore[arg-type]
        first = AsyncPostgresSaver(pool)  # type: ignore[arg-type]
        await first.setup()
        # One saver per connection: a saver holds a lock around every call.
        pool_savers = [first, *(AsyncPostgresSaver(pool) for _ in range(savers - 1))]  # type: ignore[arg-type]
        state: dict[str, tuple[list[dict[str, Any]], str | None]] = {}

        async def append(sid: str, turn: int) -> None:
            saver = pool_savers[hash(sid) % savers]
            messages, parent = state.get(sid, ([], None))
            role = "assistant" if turn % 2 else "user"
            messages = [*messages, {"role": role, "content": TEXT, "id": str(uuid.uuid4())}]
            checkpoint = empty_checkpoint()
            checkpoint["id"] = str(uuid6(clock_seq=turn))
            checkpoint["channel_values"] = {"messages": messages}
            checkpoint["channel_versions"] = {"messages": turn + 1}
            config: Any = {"configurable": {"thread_id": sid, "checkpoint_ns": ""}}
            if parent is not None:
                config["configurable"]["checkpoint_id"] = parent
            await saver.aput(config, checkpoint, {"source": "loop", "step": turn}, {"messages": turn + 1})
            state[sid] = (messages, checkpoint["id"])

        sids = [f"s{i}" for i in range(sessions)]
        await run_loops(sids, 0.5, append)
        await settle()
        before = await committed_transactions(dsn)
        count, wall, latencies = await run_loops(sids, seconds, append)
    await settle()
    after = await committed_transactions(dsn)
    return Result(f"LangGraph AsyncPostgresSaver (x{savers})", count, wall, latencies, after - before)


async def _no_reset(conn: Any) -> None:
    return None


async def settle() -> None:
    # Server processes publish their commit counts at most once a second while busy.
    await asyncio.sleep(1.5)


async def _drop_schema(dsn: str, schema: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"drop schema if exists {schema} cascade")
    finally:
        await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dsn", default=DEFAULT_DSN)
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--pool", type=int, default=32, help="connections for the two baselines")
    parser.add_argument("--only", choices=["sessiondb", "baseline", "langgraph"], default=None)
    args = parser.parse_args()
    dsn = await bench_database(args.dsn)
    conn = await asyncpg.connect(dsn)
    settings = await conn.fetch(
        "select name, setting from pg_settings where name in ('synchronous_commit', 'fsync', 'wal_sync_method')"
    )
    version = await conn.fetchval("show server_version")
    await conn.close()
    print(
        f"PostgreSQL {version} ({', '.join(f'{r[0]}={r[1]}' for r in settings)}); {args.sessions} concurrent "
        f"sessions, {args.seconds:g} s per contender, {os.cpu_count()} CPUs shared by client and server"
    )
    results: list[Result] = []
    load_before = os.getloadavg()[0]
    if args.only in (None, "sessiondb"):
        results.append(await bench_sessiondb(dsn, args.sessions, args.seconds))
    if args.only in (None, "baseline"):
        for textbook in (False, True):
            results.append(
                await bench_per_append_transaction(dsn, args.sessions, args.seconds, args.pool, textbook=textbook)
            )
    if args.only in (None, "langgraph"):
        results.append(await bench_langgraph(dsn, args.sessions, args.seconds, args.pool))
    print(f"load average (1 min) before and after: {load_before:.1f} -> {os.getloadavg()[0]:.1f}")
    print(f"{'':<44} {'appends/s':>11} {'p50 ms':>9} {'p99 ms':>9} {'server tx/s':>10} {'tx/append':>9}")
    for result in results:
        print(result.row())
    if args.only is None:
        ours = results[0].rate
        for other in results[1:]:
            print(f"sessiondb / {other.name}: {ours / other.rate:.1f}x")


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main())
