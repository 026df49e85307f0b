"""The PostgreSQL backend: sessions shared by many processes and hosts through one database.

A batch from the writer becomes one call of the ``append_batch`` function: one
round trip, one transaction, whatever the number of appends and sessions. The
database checks expected versions and event ids per append, so a stale append
fails alone. asyncpg is imported here only, when this backend is used.

Larger than the ~400-line aim: the commit path (connection loss, resolving
whether a batch committed, resubmitting) and the pools it shares with reads and
the notify/listen wake-ups are one piece of connection state; snapshots, batch
arrays and the schema live in their own modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
import zlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import msgspec

from ..._errors import (
    BackendUnavailableError,
    InvalidInputError,
    SchemaVersionError,
    SessionDBError,
    SessionNotFoundError,
)
from ..._events import Event, Fork, RecordedEvent
from ..._values import decode_deep
from .._base import REOPENED, AppendRequest, Backend, SessionInfo
from .._listing import SessionQuery, SortKey
from ._batch import BatchArrays, apply_outcomes, build_batch, placeholders, split_batch
from ._schema import (
    MAX_EVENTS_PER_TRANSACTION,
    MIGRATION_LOCK_KEY,
    MIGRATIONS,
    POSITION_SHIFT,
    SCHEMA_VERSION,
    check_schema_name,
    listener_lock_key,
)
from ._snapshots import PostgresSnapshots

# asyncpg ships no type information: its objects are typed loosely here.
_Connection = Any
_Pool = Any
DEFAULT_SCHEMA = "sessiondb"
DEFAULT_MAX_EVENT_BYTES = 16 * 1024 * 1024
_T = TypeVar("_T")
# A rolled-back batch (deadlock, a unique violation from a writer that bypassed the
# session locks) is simply run again: nothing of it was kept.
_MAX_ROLLBACK_RETRIES = 8
# A batch's outcome row is needed only while its connection's loss is being resolved
# (at most reconnect_timeout): old rows are deleted every _PRUNE_EVERY transactions.
_PRUNE_EVERY = 1_000
_KEEP_OUTCOMES_SECONDS = 600.0

_SESSION_COLUMNS = (
    "session_id, created_at_ms, updated_at_ms, version, message_count, input_tokens, output_tokens, "
    "cache_creation_input_tokens, cache_read_input_tokens, model, workspace_root, parent_session_id, "
    "branch_name, base, deleted, compacted, scope, title, tags, pinned, item_count, checkpoint_count"
)
# The SQL of each listing order's key (strings compare by code point: COLLATE "C").
_ORDER_KEYS = {
    "updated": "updated_at_ms",
    "created": "created_at_ms",
    "version": "version",
    "title": "coalesce(title, '') collate \"C\"",
}


def _info_from_row(row: Any) -> SessionInfo:
    parent = row[11]
    return SessionInfo(
        row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8], row[9], row[10],
        Fork(parent, row[12], row[13]) if parent is not None else None,
        row[14], row[15], row[16], row[17], tuple(row[18]), row[19], row[20], row[21],
    )  # fmt: skip


class PostgresBackend(Backend):
    """Sessions in a PostgreSQL database (one schema per store), for many processes and hosts."""

    def __init__(
        self,
        dsn: str,
        *,
        schema: str | None = None,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        pool_size: int = 8,
        connect_timeout: float = 10.0,
        reconnect_timeout: float = 10.0,
        poll_interval: float = 1.0,
        notify: bool = True,
        read_only: bool = False,
    ) -> None:
        _check_options(
            dsn, max_event_bytes, pool_size, connect_timeout, reconnect_timeout, poll_interval, notify, read_only
        )
        dsn, schema_in_dsn = _split_schema(dsn)
        # Read-only: the schema must exist already (never created nor migrated) and appends are refused.
        self.read_only = read_only
        self.dsn = dsn
        self.schema = check_schema_name(schema or schema_in_dsn or DEFAULT_SCHEMA)
        self.max_event_bytes = max_event_bytes
        self.pool_size = pool_size
        self.connect_timeout = connect_timeout
        self.reconnect_timeout = reconnect_timeout
        self.poll_interval = poll_interval
        self.notify = notify
        self.channel = f"{self.schema}_events"
        self._lock_class = zlib.crc32(self.schema.encode()) & 0x7FFFFFFF
        s = self.schema
        self._append_sql = (
            f"select codes, versions, base, listened from {s}.append_batch($1, $2, $3, {placeholders(4)})"
        )
        self._horizon = f"(pg_snapshot_xmin(pg_current_snapshot())::text::bigint << {POSITION_SHIFT})"
        self._read_all_sql = (
            f"select session_id, version, position, timestamp_ms, event_id, payload from {s}.events "
            f"where position > $1 and position < {self._horizon} order by position limit $2"
        )
        self._decoder = msgspec.json.Decoder(Event)  # type: ignore[arg-type]
        self._encode = msgspec.json.Encoder().encode
        self._asyncpg: Any = None
        self._writer: _Connection | None = None
        self._writer_identity: tuple[int, Any] | None = None
        self._pool: _Pool | None = None
        self._listener: _Connection | None = None
        self._waiters: set[asyncio.Future[None]] = set()
        self._notify_task: asyncio.Task[None] | None = None
        self._notify_again = False
        self._prune_task: asyncio.Task[int] | None = None
        self._since_prune = 0
        self._last_position = 0
        self._opened = False
        self._closed = False
        self._stats = {
            "batches": 0,
            "transactions": 0,
            "appends": 0,
            "events": 0,
            "rollback_retries": 0,
            "connection_losses": 0,
            "resolved_committed": 0,
            "resubmitted": 0,
            "unavailable": 0,
            "snapshots_written": 0,
            "snapshots_damaged": 0,
            "events_deleted": 0,
            "notifies": 0,
        }
        # Snapshots and storage compaction: a part of its own, over this backend's read pool.
        self.snapshots = PostgresSnapshots(self.schema, self._read, self.prune_batch_outcomes, self._stats)

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        if self._opened or self._closed:  # its connections, caches and counters belong to the store it served
            raise InvalidInputError(REOPENED.format(name=type(self).__name__))
        try:
            import asyncpg  # type: ignore[import-untyped]
        except ImportError:  # pragma: no cover - depends on the environment
            raise BackendUnavailableError(
                "the PostgreSQL backend needs asyncpg: pip install asyncpg (or '.[postgres]' from a sessiondb checkout)"
            ) from None
        self._asyncpg = asyncpg
        try:
            self._writer = await self._connect()
            await self._migrate(self._writer)
            await self.snapshots.load_snapshot_map(self._writer)
            self._pool = await asyncpg.create_pool(
                self.dsn,
                min_size=1,
                max_size=self.pool_size,
                timeout=self.connect_timeout,
                server_settings={"application_name": "sessiondb"},
                # Reads leave no session state behind, so the default reset (a round
                # trip and a transaction on every release) is skipped.
                reset=_no_reset,
                init=_durable_commits,
            )
        except BaseException as exc:
            await self._release()
            if isinstance(exc, SessionDBError):
                raise
            if self._is_connection_error(exc) or isinstance(exc, OSError | asyncio.TimeoutError):
                raise BackendUnavailableError(
                    f"cannot reach PostgreSQL at {redact_dsn(self.dsn)} ({exc!r}); check that the server is "
                    "running and the DSN is right, then open the store again"
                ) from exc
            raise
        self._opened = True

    async def _connect(self) -> _Connection:
        asyncpg = self._asyncpg
        conn: _Connection = await asyncpg.connect(
            self.dsn,
            timeout=self.connect_timeout,
            server_settings={"application_name": "sessiondb-writer", "jit": "off"},
        )
        await _durable_commits(conn)
        row = await conn.fetchrow(
            "select pg_backend_pid(), backend_start from pg_stat_activity where pid = pg_backend_pid()"
        )
        self._writer_identity = (row[0], row[1]) if row is not None else None
        return conn

    async def _migrate(self, conn: _Connection) -> None:
        s = self.schema
        if self.read_only:
            await self._check_schema(conn)
            return
        async with conn.transaction():
            await conn.execute("select pg_advisory_xact_lock($1, $2)", MIGRATION_LOCK_KEY, self._lock_class)
            await conn.execute(f"create schema if not exists {s}")
            await conn.execute(f"create table if not exists {s}.schema_version (version integer not null)")
            current = await conn.fetchval(f"select max(version) from {s}.schema_version")
            current = 0 if current is None else current
            if current > SCHEMA_VERSION:
                raise SchemaVersionError(
                    f"the PostgreSQL schema {s!r} at {redact_dsn(self.dsn)} has sessiondb schema version {current}, "
                    f"newer than this sessiondb understands ({SCHEMA_VERSION}); upgrade sessiondb to open it"
                )
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[version](s):
                    await conn.execute(statement)
                await conn.execute(f"delete from {s}.schema_version")
                await conn.execute(f"insert into {s}.schema_version (version) values ($1)", version)

    async def _check_schema(self, conn: _Connection) -> None:
        """A read-only open: the store's schema must be there at this version; nothing is created."""
        s = self.schema
        # to_regclass is NULL for a missing schema or table, without an error that would abort anything.
        current = None
        if await conn.fetchval("select to_regclass($1)", f"{s}.schema_version") is not None:
            current = await conn.fetchval(f"select max(version) from {s}.schema_version")
        if current is None:
            raise SessionDBError(
                f"no sessiondb store in schema {s} at {redact_dsn(self.dsn)}: create it by opening it for writing "
                "(open_store(url) without read_only, or a writing command such as `sessiondb import`)"
            )
        if current != SCHEMA_VERSION:
            newer = current > SCHEMA_VERSION
            raise SchemaVersionError(
                f"the PostgreSQL schema {s!r} at {redact_dsn(self.dsn)} has sessiondb schema version {current}; this "
                f"sessiondb uses {SCHEMA_VERSION}: "
                + ("upgrade sessiondb to open it" if newer else "open it for writing once to migrate it, then read it")
            )

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._release()

    async def _release(self) -> None:
        for task in (self._notify_task, self._prune_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._notify_task = self._prune_task = None
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        for conn in (self._listener, self._writer):
            if conn is not None:
                await _close_quietly(conn)
        self._listener = self._writer = None
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), 5)
            except BaseException:
                pool.terminate()

    def release_orphaned(self) -> None:
        """The loop the connections belong to is closed: drop them (the server ends their sessions when they close).

        Their transports cannot be closed without that loop (asyncpg's ``terminate`` needs it);
        dropping the last reference closes each socket.
        """
        if self._closed:
            return
        self._closed = True
        for conn in (self._listener, self._writer):
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.terminate()
        self._listener = self._writer = None
        self._notify_task = self._prune_task = None
        pool, self._pool = self._pool, None
        if pool is not None:
            with contextlib.suppress(Exception):
                pool.terminate()

    # ------------------------------------------------------------------ writing

    async def commit(self, batch: Sequence[AppendRequest]) -> None:
        if self.read_only:
            for request in batch:  # each refused append fails alone, as on a read-only directory store
                request.error = InvalidInputError(
                    f"store schema {self.schema} at {redact_dsn(self.dsn)} was opened read-only; open it for writing "
                    f"to append to session {request.session_id!r}"
                )
            return
        for chunk in split_batch(batch, MAX_EVENTS_PER_TRANSACTION):
            arrays = build_batch(chunk, self.max_event_bytes, self._encode)
            if arrays.sent:
                await self._commit_arrays(arrays)
        self._stats["batches"] += 1

    async def _commit_arrays(self, arrays: BatchArrays) -> None:
        """Run one batch; on connection loss find out whether it committed, and run it again if not."""
        deadline = time.monotonic() + self.reconnect_timeout
        rollbacks = 0
        resubmitted = False
        while True:
            token = uuid.uuid4()
            try:
                conn = await self._write_connection(deadline)
                row = await conn.fetchrow(self._append_sql, self._lock_class, token, *arrays.arguments())
            except BaseException as exc:
                if self._is_rolled_back(exc) and rollbacks < _MAX_ROLLBACK_RETRIES:
                    rollbacks += 1
                    self._stats["rollback_retries"] += 1
                    continue
                if not self._is_connection_error(exc):
                    if isinstance(exc, self._asyncpg.PostgresError):
                        # The server refused the statement, so its transaction rolled back:
                        # nothing is in doubt, and the store need not break over it.
                        self._fail(arrays, exc, written_maybe=False, refused=True)
                        return
                    raise
                self._stats["connection_losses"] += 1
                resolved = await self._resolve(token, deadline)
                if resolved is _UNREACHABLE:
                    self._fail(arrays, exc, written_maybe=True)
                    return
                if resolved is None:  # certainly not committed: safe to run again, once
                    if resubmitted or time.monotonic() >= deadline:
                        self._fail(arrays, exc, written_maybe=False)
                        return
                    resubmitted = True
                    self._stats["resubmitted"] += 1
                    continue
                row = resolved
                self._stats["resolved_committed"] += 1
            break
        codes, versions, base = row[0], row[1], row[2]
        # A batch resolved after a lost connection has no answer to "does anyone listen?": assume so.
        listened = row[3] if len(row) > 3 else True
        last = apply_outcomes(arrays, codes, versions, base)
        self.snapshots.note_committed(arrays)
        self._stats["transactions"] += 1
        self._stats["appends"] += len(arrays.sent)
        if last:
            self._stats["events"] += sum(len(r.events) for r in arrays.sent if r.error is None and not r.duplicate)
            if last > self._last_position:
                self._last_position = last
            self._wake_waiters()
            if self.notify and listened:
                self._send_notify()
        self._since_prune += 1
        if self._since_prune >= _PRUNE_EVERY and (self._prune_task is None or self._prune_task.done()):
            self._since_prune = 0
            self._prune_task = asyncio.get_running_loop().create_task(self.prune_batch_outcomes())

    async def prune_batch_outcomes(self) -> int:
        """Delete stored batch outcomes old enough that no lost connection can still ask for them."""
        query = f"delete from {self.schema}.batches where created_at < now() - make_interval(secs => $1)"
        try:
            status = await self._read(lambda conn: conn.execute(query, _KEEP_OUTCOMES_SECONDS))
        except Exception:
            return 0  # housekeeping: the next attempt will do it
        return int(status.split()[-1])

    async def _write_connection(self, deadline: float) -> _Connection:
        if self._writer is not None and not self._writer.is_closed():
            return self._writer
        self._writer = None
        self._writer = await asyncio.wait_for(self._connect(), max(0.1, deadline - time.monotonic()))
        return self._writer

    async def _resolve(self, token: uuid.UUID, deadline: float) -> Any:
        """After a lost connection: the stored outcome of the batch ``token``, None if it did not commit.

        The old server process may still be running the batch (a network drop
        is not noticed at once), so it is terminated and waited for first; only
        then is a missing batch row proof that nothing was written.
        """
        old = self._writer_identity
        if self._writer is not None:
            await _close_quietly(self._writer)
        self._writer = None
        while True:
            try:
                conn = await self._write_connection(deadline)
                if old is not None:
                    await self._end_old_backend(conn, old, deadline)
                return await conn.fetchrow(
                    f"select codes, versions, base from {self.schema}.batches where token = $1", token
                )
            except BaseException as exc:
                if not (self._is_connection_error(exc) or isinstance(exc, OSError | asyncio.TimeoutError)):
                    raise
                self._writer = None
                if time.monotonic() >= deadline:
                    return _UNREACHABLE
                await asyncio.sleep(min(0.2, max(0.0, deadline - time.monotonic())))

    async def _end_old_backend(self, conn: _Connection, old: tuple[int, Any], deadline: float) -> None:
        pid, started = old
        query = "select count(*) from pg_stat_activity where pid = $1 and backend_start = $2"
        if await conn.fetchval(query, pid, started):
            await conn.execute("select pg_terminate_backend($1)", pid)
        while await conn.fetchval(query, pid, started):
            if time.monotonic() >= deadline:
                raise TimeoutError(f"server process {pid} of the lost connection did not end")
            await asyncio.sleep(0.01)

    def _fail(self, arrays: BatchArrays, exc: BaseException, *, written_maybe: bool, refused: bool = False) -> None:
        self._stats["unavailable"] += 1
        if refused:
            error = BackendUnavailableError(
                f"PostgreSQL at {redact_dsn(self.dsn)} refused the batch ({exc!r}); nothing of this append was "
                "written; it is safe to retry once the cause is fixed"
            )
            for request in arrays.sent:
                request.error = error
            return
        if written_maybe:
            detail = (
                "the batch may or may not have been written; retry with the same event_ids so a retry "
                "that was in fact written is recognised"
            )
        else:
            detail = "nothing of this append was written; it is safe to retry"
        error = BackendUnavailableError(
            f"PostgreSQL at {redact_dsn(self.dsn)} became unreachable during the commit ({exc!r}); {detail}"
        )
        for request in arrays.sent:
            request.error = error

    def _is_connection_error(self, exc: BaseException) -> bool:
        asyncpg = self._asyncpg
        if asyncpg is None:
            return False
        return isinstance(
            exc,
            asyncpg.PostgresConnectionError
            | asyncpg.exceptions.OperatorInterventionError
            | asyncpg.InterfaceError
            # A connection cut while a statement was being prepared is left in a state
            # where the next step fails this way.
            | asyncpg.exceptions.InternalClientError
            | asyncpg.exceptions.InsufficientResourcesError
            | ConnectionError
            | OSError
            | asyncio.TimeoutError,
        ) and not isinstance(exc, asyncpg.exceptions.QueryCanceledError)

    def _is_rolled_back(self, exc: BaseException) -> bool:
        exceptions = self._asyncpg.exceptions
        # A statement_timeout or lock_timeout of the server's configuration rolls back too.
        return isinstance(
            exc,
            exceptions.TransactionRollbackError
            | exceptions.UniqueViolationError
            | exceptions.QueryCanceledError
            | exceptions.LockNotAvailableError,
        )

    # ------------------------------------------------------------------ live wake-ups

    def _send_notify(self) -> None:
        """NOTIFY other processes, outside the append transaction: a hint, so failures are ignored."""
        if self._notify_task is not None and not self._notify_task.done():
            self._notify_again = True
            return
        self._notify_task = asyncio.get_running_loop().create_task(self._notify_loop())

    async def _notify_loop(self) -> None:
        self._notify_again = True
        while self._notify_again and self._pool is not None:
            self._notify_again = False
            try:
                await self._pool.execute("select pg_notify($1, $2)", self.channel, str(self._last_position))
                self._stats["notifies"] += 1
            except Exception:
                return  # subscribers poll as well

    def _wake_waiters(self) -> None:
        waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _ensure_listener(self) -> None:
        if self._listener is not None and not self._listener.is_closed():
            return
        self._listener = None
        conn = None
        try:
            conn = await self._asyncpg.connect(
                self.dsn, timeout=self.connect_timeout, server_settings={"application_name": "sessiondb-listener"}
            )
            await conn.add_listener(self.channel, lambda *_: self._wake_waiters())
            # Tells writers (of every process) that someone listens; taking it waits for a
            # writer that found it free to commit, so the first read below sees that commit.
            await conn.execute("select pg_advisory_lock_shared($1)", listener_lock_key(self._lock_class))
        except BaseException as exc:
            # A subscriber cancelled mid-connect (its subscription closed) must not leak the connection.
            if conn is not None:
                conn.terminate()
            if isinstance(exc, Exception):
                return  # polling still works
            raise
        if self._closed or self._listener is not None:  # closed, or another waiter won the race meanwhile
            conn.terminate()
            return
        self._listener = conn

    @property
    def has_other_writers(self) -> bool:
        return True  # other processes and hosts share the database

    async def wait_for_new_events(self, after_position: int, timeout: float) -> int:
        """Wait until ``read_all(after_position, ...)`` has something to return, at most ``timeout`` s.

        Returns the newest readable position, which is greater than
        ``after_position`` unless the timeout passed first (then it returns
        ``after_position``). NOTIFY from any process (and this process's own
        commits) wake it; it also polls every ``poll_interval`` seconds, so a
        lost notification or a listener that cannot connect only costs latency.
        """
        self._check_open()
        deadline = time.monotonic() + timeout
        await self._ensure_listener()
        loop = asyncio.get_running_loop()
        backoff = 0.005
        hinted = False
        while True:
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.add(waiter)
            try:
                newest = await self._newest_readable(after_position)
                if newest > after_position:
                    return newest
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return after_position
                # After a hint, a commit is known but an older transaction may still hold the
                # horizon back: look again after a growing pause, not only at the next NOTIFY
                # (which may never come) or a full poll interval.
                pause = min(backoff, self.poll_interval) if hinted else self.poll_interval
                try:
                    await asyncio.wait_for(asyncio.shield(waiter), min(remaining, pause))
                    hinted = True
                except TimeoutError:
                    pass
            finally:
                self._waiters.discard(waiter)
            if hinted:
                backoff = min(backoff * 2, self.poll_interval)

    async def _newest_readable(self, after_position: int) -> int:
        query = (
            f"select position from {self.schema}.events where position > $1 and position < {self._horizon} "
            "order by position desc limit 1"
        )
        newest = await self._read(lambda conn: conn.fetchval(query, after_position))
        return after_position if newest is None else int(newest)

    # ------------------------------------------------------------------ reading

    def _check_open(self) -> None:
        if not self._opened or self._closed or self._pool is None:
            raise BackendUnavailableError("the PostgreSQL backend is not open")

    async def _read(self, operation: Callable[[_Connection], Awaitable[_T]]) -> _T:
        self._check_open()
        assert self._pool is not None
        try:
            # No timeout on the wait for a pooled connection: a thousand concurrent readers
            # queue for the pool's few connections (backpressure), which is no sign the
            # server is unreachable. A new connection is still bounded by connect_timeout
            # (the pool's own setting), so a dead server fails as before.
            async with self._pool.acquire() as conn:
                return await operation(conn)
        except BaseException as exc:
            if self._is_connection_error(exc):
                raise BackendUnavailableError(
                    f"reading from PostgreSQL at {redact_dsn(self.dsn)} failed ({exc!r}); retry"
                ) from exc
            raise

    async def with_connection(self, operation: Callable[[_Connection], Awaitable[_T]]) -> _T:
        """Run ``operation(connection)`` on a pooled connection (the search index keeps its tables here)."""
        return await self._read(operation)

    async def readable_below(self) -> int:
        """The horizon: every position below it that will ever commit has committed (``read_all`` stops there)."""
        return int(await self._read(lambda conn: conn.fetchval(f"select {self._horizon}")))

    async def info(self, session_id: str) -> SessionInfo | None:
        if "\x00" in session_id:
            return None  # no session has it (text cannot hold NUL); the store then says why the id is invalid
        query = f"select {_SESSION_COLUMNS} from {self.schema}.sessions where session_id = $1"
        row = await self._read(lambda conn: conn.fetchrow(query, session_id))
        return _info_from_row(row) if row is not None else None

    async def list_sessions(self) -> list[SessionInfo]:
        query = f"select {_SESSION_COLUMNS} from {self.schema}.sessions where not deleted"
        rows = await self._read(lambda conn: conn.fetch(query))
        return [_info_from_row(row) for row in rows]

    async def page_sessions(
        self, query: SessionQuery, limit: int | None, after: SortKey | None = None
    ) -> list[SessionInfo]:
        sql, arguments = self._listing_sql(query, after is not None, limit is not None)
        arguments += [*(after or ()), *_limit(limit)]
        return [_info_from_row(row) for row in await self._fetch(sql, arguments)]

    async def _fetch(self, sql: str, arguments: list[Any]) -> list[Any]:
        rows: list[Any] = await self._read(lambda conn: conn.fetch(sql, *arguments))
        return rows

    def _listing_sql(self, query: SessionQuery, after: bool, limited: bool) -> tuple[str, list[Any]]:
        """The SELECT of a listing: filters as parameters, then the keyset (2) and the limit (1) when used."""
        where = ["not deleted"]
        arguments: list[Any] = []
        if query.scope is not None:
            arguments.append(query.scope)
            where.append(f"scope = ${len(arguments)}")
        if query.tag is not None:
            arguments.append([query.tag])
            where.append(f"tags @> ${len(arguments)}::text[]")
        if query.pinned is not None:
            arguments.append(query.pinned)
            where.append(f"pinned = ${len(arguments)}")
        if query.title is not None:
            # The same rule as everywhere: a substring of str.casefold() of the title (folded by the writer).
            arguments.append(query.title.casefold())
            where.append(f"strpos(title_folded, ${len(arguments)}) > 0")
        key = _ORDER_KEYS[query.order]
        direction = "desc" if query.descending else "asc"
        if after:
            n = len(arguments)
            cast = "::text" if query.order == "title" else "::bigint"
            where.append(f"({key}, session_id) {'<' if query.descending else '>'} (${n + 1}{cast}, ${n + 2}::text)")
        sql = (
            f"select {_SESSION_COLUMNS} from {self.schema}.sessions where {' and '.join(where)} "
            f"order by {key} {direction}, session_id {direction}"
        )
        if limited:
            sql += f" limit ${len(arguments) + (3 if after else 1)}"
        return sql, arguments

    async def read_session(self, session_id: str, after_version: int, up_to_version: int | None) -> list[RecordedEvent]:
        s = self.schema
        query = (
            f"select session_id, version, position, timestamp_ms, event_id, payload from {s}.events "
            "where session_id = $1 and version > $2 and version <= $3 order by version"
        )
        upper = 2**31 - 1 if up_to_version is None else up_to_version

        async def run(conn: _Connection) -> tuple[list[Any], bool]:
            rows = await conn.fetch(query, session_id, after_version, upper)
            if rows:
                return rows, True
            exists = await conn.fetchval(f"select true from {s}.sessions where session_id = $1", session_id)
            return rows, bool(exists)

        rows, exists = await self._read(run)
        if not exists:
            raise SessionNotFoundError(session_id)
        return self._decode_rows(rows)

    async def read_all(self, after_position: int, limit: int) -> list[RecordedEvent]:
        if limit <= 0:
            return []
        rows = await self._read(lambda conn: conn.fetch(self._read_all_sql, after_position, limit))
        events = self._decode_rows(rows)
        if events and events[-1].position > self._last_position:
            self._last_position = events[-1].position
        return events

    def _decode_rows(self, rows: Sequence[Any]) -> list[RecordedEvent]:
        decode = self._decoder.decode
        try:
            return [RecordedEvent(row[0], row[1], row[2], row[3], decode(row[5]), row[4]) for row in rows]
        except RecursionError:  # deep data on a deep stack is intact: decode it on a fresh one
            return [
                RecordedEvent(row[0], row[1], row[2], row[3], decode_deep(decode, row[5], self._where(row)), row[4])
                for row in rows
            ]

    def _where(self, row: Any) -> str:
        return f"session {row[0]!r} version {row[1]} in schema {self.schema}"

    @property
    def last_position(self) -> int:
        return self._last_position

    def statistics(self) -> dict[str, Any]:
        return {**self._stats, "last_position": self._last_position, "schema": self.schema}

    # ------------------------------------------------------------------ snapshots and storage compaction

    @property
    def supports_snapshots(self) -> bool:
        return not self.read_only

    async def begin_maintenance(self) -> bool:
        return not self.read_only

    async def write_snapshot(
        self, session_id: str, version: int, data: bytes, holds: frozenset[str] | None = None
    ) -> bool:
        # ``holds`` is not kept: this backend never removes a live session's history (compact_storage),
        # so a snapshot without some projection's state only costs that projection a replay.
        if self.read_only:
            return False
        return await self.snapshots.write_snapshot(session_id, version, data)

    async def read_snapshot(self, session_id: str, max_version: int) -> tuple[int, bytes] | None:
        return await self.snapshots.read_snapshot(session_id, max_version)

    def snapshot_versions(self) -> dict[str, tuple[int, int]]:
        return self.snapshots.snapshot_versions()

    def snapshot_candidates(self, min_events: int, min_bytes: int, state_ratio: float) -> list[tuple[str, int]]:
        return self.snapshots.snapshot_candidates(min_events, min_bytes, state_ratio)

    def retention_needs(self, keep_segments: int, keep_seconds: float | None) -> dict[str, int]:
        return self.snapshots.retention_needs(keep_segments, keep_seconds)

    async def compact_storage(self, settings: Any) -> dict[str, Any]:
        return await self.snapshots.compact_storage(settings)


async def _durable_commits(conn: _Connection) -> None:
    # Durability is the point: never let a server default of synchronous_commit=off make an
    # acknowledged append (or a snapshot retention relies on) losable. Stronger settings stay.
    if await conn.fetchval("select current_setting('synchronous_commit')") in ("off", "local"):
        await conn.execute("set synchronous_commit = on")


async def _no_reset(conn: _Connection) -> None:
    return None


class _Unreachable:
    pass


_UNREACHABLE = _Unreachable()


async def _close_quietly(conn: _Connection) -> None:
    try:
        await asyncio.wait_for(conn.close(), 2)
    except BaseException:
        conn.terminate()


def _limit(limit: int | None) -> tuple[int, ...]:
    return () if limit is None else (limit,)


def _split_schema(dsn: str) -> tuple[str, str | None]:
    """Take a ``schema=`` query parameter out of the DSN (asyncpg would send it to the server as a setting)."""
    parts = urlsplit(dsn)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((value for key, value in query if key == "schema"), None)
    if schema is None:
        return dsn, None
    rest = urlencode([(key, value) for key, value in query if key != "schema"])
    return urlunsplit(parts._replace(query=rest)), schema


def redact_dsn(dsn: str) -> str:
    """The URL with its password, if any, shown as ``***`` (for messages and banners)."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def _check_options(
    dsn: object,
    max_event_bytes: object,
    pool_size: object,
    connect_timeout: object,
    reconnect_timeout: object,
    poll_interval: object,
    notify: object,
    read_only: object,
) -> None:
    """Wrong types and values are refused here (``InvalidInputError``), not found at open or in a background task."""
    if type(dsn) is not str:
        raise InvalidInputError(f"PostgresBackend takes a postgresql:// URL as a str, got {type(dsn).__name__}")
    for name, value in (("max_event_bytes", max_event_bytes), ("pool_size", pool_size)):
        if type(value) is not int or value < 1:
            raise InvalidInputError(f"PostgresBackend({name}=...) must be a positive int, got {value!r}")
    for name, value in (
        ("connect_timeout", connect_timeout),
        ("reconnect_timeout", reconnect_timeout),
        ("poll_interval", poll_interval),
    ):
        if type(value) not in (int, float) or not 0 < value < float("inf"):  # type: ignore[operator]
            raise InvalidInputError(f"PostgresBackend({name}=...) must be a number of seconds > 0, got {value!r}")
    for name, value in (("notify", notify), ("read_only", read_only)):
        if type(value) is not bool:
            raise InvalidInputError(f"PostgresBackend({name}=...) must be True or False, got {value!r}")


__all__ = ["DEFAULT_SCHEMA", "PostgresBackend", "redact_dsn"]
