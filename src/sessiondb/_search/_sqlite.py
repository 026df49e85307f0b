"""The SQLite FTS5 search index: a sidecar file ``search.sqlite`` in the store directory, or in memory.

One connection, used by one worker thread at a time (``_call``: one hop per chunk
or query, under ``_turn``). A cancelled caller waits for its thread to finish before
it lets go of the turn (``run_to_completion``): closing the connection while an
abandoned thread still wrote through it crashed the process inside libsqlite3. A
closed index never reopens itself. Documents, the position they reach and the fingerprint of the event at
that position are written in one transaction, so a crash leaves the index at a
batch boundary it can continue from. WAL mode with a busy timeout lets several
processes share the file: SQLite's lock serializes their indexers, and each chunk
re-reads the stored position inside its transaction, skipping what another
process already indexed. ``synchronous=NORMAL``: a power loss may cost the last
transactions, never consistency, and the index is rebuilt from the log anyway.

A file SQLite reports as damaged (not a database, malformed) is deleted and
rebuilt, but only under an exclusive ``flock`` of ``search.lock`` (every process
using the sidecar holds it shared), because deleting a database another
connection has open corrupts what that connection writes next; when another
process holds it, the caller falls back to an index in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Callable, Sequence
from typing import TypeVar

import anyio
import msgspec

from .._errors import SessionDBError, StoreClosedError
from .._events import RecordedEvent
from .._threads import run_to_completion
from ._model import Cursor, SearchHit
from ._text import (
    COLUMN_KINDS,
    END_MARK,
    START_MARK,
    Document,
    Filters,
    Query,
    cjk_tokens,
    folded,
    parse_marked,
    plan_chunk,
    snippet,
    tags_document,
)

SIDECAR_NAME = "search.sqlite"
LOCK_NAME = "search.lock"
# 2: CJK characters are words of their own (``_text.cjk_tokens``). 3: words with compatibility characters are
# indexed normalized (``_text.folded``), their text as written kept in ``docs.original``. An older index is
# emptied and rebuilt.
FORMAT = 3
_BUSY_TIMEOUT_MS = 60_000
_SNIPPET_WORDS = 24
# SQLite primary result codes that mean the file itself is damaged.
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26
_T = TypeVar("_T")

_SCHEMA = (
    "create table if not exists meta (key text primary key, value text not null)",
    # original: the document's columns as written (JSON), only when the FTS table holds them folded.
    "create table if not exists docs (position integer primary key, session_id text not null, "
    "version integer not null, timestamp_ms integer not null, kind text not null, original text)",
    "create index if not exists docs_session on docs (session_id, kind)",
    # Labels for the scope and tag filters, folded from SessionStarted.scope and TagsChanged events.
    "create table if not exists scopes (session_id text primary key, scope text not null)",
    "create index if not exists scopes_scope on scopes (scope)",
    "create table if not exists tags (tag text not null, session_id text not null, primary key (tag, session_id)) "
    "without rowid",
    "create index if not exists tags_session on tags (session_id)",
    # No prefix index (FTS5 prefix = '3'): measured +18-20% index bytes and ~3 us CPU per append, for
    # three-letter prefix queries only (100 ms -> 0.1 ms newest-first at 300k events; longer prefixes are fast).
    "create virtual table if not exists fts using fts5(text, thinking, tool_use, tool_result, "
    "tokenize = 'unicode61 remove_diacritics 2')",
)


class SidecarUnusable(Exception):
    """The sidecar cannot be used by this process (damaged while others use it, newer format, no access)."""


class IndexReset(SessionDBError):
    """The index was found damaged and emptied during an operation: catch up again and retry."""


def fts5_available() -> bool:
    """Whether this Python's SQLite has FTS5 compiled in (CPython's builds do)."""
    try:
        sqlite3.connect(":memory:").execute("create virtual table t using fts5(x)")
    except sqlite3.OperationalError:
        return False
    return True


def is_damage(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.DatabaseError) and (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in (
        _SQLITE_CORRUPT,
        _SQLITE_NOTADB,
    )


class SqliteIndex:
    """The FTS5 index of one store; ``directory=None`` keeps it in memory (``:memory:`` stores, fallbacks)."""

    def __init__(self, directory: str | None, *, file_mode: int = 0o600) -> None:
        self.directory = directory
        self.path = os.path.join(directory, SIDECAR_NAME) if directory is not None else ":memory:"
        self.file_mode = file_mode
        self.rebuilds = 0  # how often a damaged or foreign file was emptied
        self._conn: sqlite3.Connection | None = None
        self._lock_fd = -1
        self._turn = anyio.Lock()
        self._closed = False

    @property
    def in_memory(self) -> bool:
        return self.directory is None

    # ------------------------------------------------------------------ lifecycle (worker thread)

    def open_sync(self) -> None:
        if self.directory is not None:
            self._lock_fd = os.open(os.path.join(self.directory, LOCK_NAME), os.O_RDWR | os.O_CREAT, self.file_mode)
            fcntl.flock(self._lock_fd, fcntl.LOCK_SH)
            # Created with the store's mode before SQLite does (its -wal and -shm copy it): the index holds the
            # conversations' text.
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, self.file_mode))
        try:
            self._connect()
        except sqlite3.DatabaseError as exc:
            if not is_damage(exc):
                self.close_sync()
                raise
            self._replace_damaged()

    def _connect(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"pragma busy_timeout = {_BUSY_TIMEOUT_MS}")
            if self.directory is not None:
                conn.execute("pragma journal_mode = wal")
                conn.execute("pragma synchronous = normal")
            conn.execute("begin immediate")
            try:
                for statement in _SCHEMA:
                    conn.execute(statement)
                row = conn.execute("select value from meta where key = 'format'").fetchone()
                if row is None:
                    conn.execute(
                        "insert into meta values ('format', ?), ('position', '0'), ('fingerprint', '')", (str(FORMAT),)
                    )
                elif int(row[0]) > FORMAT:
                    raise SidecarUnusable(f"{self.path} was written by a newer sessiondb (index format {row[0]})")
                elif int(row[0]) < FORMAT:
                    _empty(conn)
                conn.execute("commit")
            except BaseException:
                conn.execute("rollback")
                raise
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _replace_damaged(self) -> None:
        """Delete a damaged sidecar and start an empty one, if no other process has it open."""
        if self.directory is None:
            raise SidecarUnusable("the in-memory index is damaged")
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.close_sync()
            raise SidecarUnusable(f"{self.path} is damaged and another process has it open") from None
        try:
            for suffix in ("-wal", "-shm", ""):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path + suffix)
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, self.file_mode))
            self._connect()
            self.rebuilds += 1
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_SH)

    def close_sync(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    # ------------------------------------------------------------------ the async face

    async def _call(self, operation: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``operation`` in a worker thread, one at a time; a damaged file is replaced (IndexReset)."""
        async with self._turn:
            if self._closed:
                raise StoreClosedError("the store was closed while its search index was in use; open it again")
            return await run_to_completion(self._guarded, operation)

    def _guarded(self, operation: Callable[[sqlite3.Connection], _T]) -> _T:
        if self._conn is None:
            self.open_sync()
        assert self._conn is not None
        try:
            return operation(self._conn)
        except sqlite3.DatabaseError as exc:
            if not is_damage(exc):
                raise
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("rollback")
            self._replace_damaged()
            raise IndexReset(f"the search index {self.path} was damaged ({exc}) and was emptied; retry") from exc

    async def open(self) -> None:
        async with self._turn:
            if self._closed:
                raise StoreClosedError("the store was closed while its search index was opened; open it again")
            try:
                await run_to_completion(self.open_sync)
            except asyncio.CancelledError:
                self.close_sync()  # it opened before the cancellation could stop it: nothing stays open
                raise

    async def aclose(self) -> None:
        """Close the connection once no thread uses it (the turn is held until a thread's work ends)."""
        with anyio.CancelScope(shield=True):
            async with self._turn:
                self._closed = True
                await run_to_completion(self.close_sync)

    def close_orphaned(self) -> None:
        """Close at once, on this thread: the event loop that ran the index's threads is closed, so none runs."""
        self._closed = True
        self.close_sync()

    async def state(self) -> tuple[int, str]:
        """(the position the index reaches, the fingerprint of the event there)."""
        return await self._call(_state)

    async def reset(self) -> None:
        """Empty the index (the log it described is not this one any more)."""

        def run(conn: sqlite3.Connection) -> None:
            conn.execute("begin immediate")
            try:
                _empty(conn)
                conn.execute("commit")
            except BaseException:
                conn.execute("rollback")
                raise

        await self._call(run)
        self.rebuilds += 1

    async def apply(self, after: int, events: Sequence[RecordedEvent]) -> int:
        """Index ``events`` (read from the log after position ``after``); return the stored position now."""
        return await self._call(lambda conn: _apply(conn, after, events))

    async def count(self) -> int:
        return await self._call(lambda conn: conn.execute("select count(*) from docs").fetchone()[0])

    async def query(
        self, query: Query, *, filters: Filters, order: str, limit: int, ceiling: int, cursor: Cursor | None
    ) -> list[SearchHit]:
        return await self._call(lambda conn: _query(conn, query, filters, order, limit, ceiling, cursor))


# ---------------------------------------------------------------- work done in the worker thread


def _empty(conn: sqlite3.Connection) -> None:
    for table in ("fts", "docs", "scopes", "tags"):
        conn.execute(f"drop table if exists {table}")
    conn.execute("drop table if exists meta")
    for statement in _SCHEMA:
        conn.execute(statement)
    conn.execute("insert into meta values ('format', ?), ('position', '0'), ('fingerprint', '')", (str(FORMAT),))


def _state(conn: sqlite3.Connection) -> tuple[int, str]:
    rows = dict(conn.execute("select key, value from meta where key in ('position', 'fingerprint')").fetchall())
    return int(rows.get("position", 0)), rows.get("fingerprint", "")


def fingerprint(event: RecordedEvent) -> str:
    """What identifies the event at a position: a log replaced or cut by repair has another one there."""
    return msgspec.json.encode([event.session_id, event.version, event.timestamp_ms]).decode()


def _apply(conn: sqlite3.Connection, after: int, events: Sequence[RecordedEvent]) -> int:
    if not events:
        return after
    conn.execute("begin immediate")
    try:
        stored = int(conn.execute("select value from meta where key = 'position'").fetchone()[0])
        if stored < after:
            # Emptied by another process since we read the position: start again from there.
            conn.execute("rollback")
            return stored
        fresh = [e for e in events if e.position > stored] if stored > after else events
        plan = plan_chunk(fresh)
        _insert(conn, plan.documents)
        for session_id, title in plan.titles.items():
            _delete_kind(conn, session_id, "title")
            if title is not None:
                _insert(conn, [title])
        for session_id, (change, where) in plan.tags.items():
            before = [row[0] for row in conn.execute("select tag from tags where session_id = ?", (session_id,))]
            tags = change.apply(before)
            conn.execute("delete from tags where session_id = ?", (session_id,))
            conn.executemany("insert into tags values (?, ?)", [(tag, session_id) for tag in tags])
            _delete_kind(conn, session_id, "tags")
            document = tags_document(session_id, where, tags)
            if document is not None:
                _insert(conn, [document])
        conn.executemany("insert or replace into scopes values (?, ?)", list(plan.scopes.items()))
        for session_id in plan.deleted:
            # A deleted session is not found any more (its events stay in the log until compaction).
            conn.execute(
                "delete from fts where rowid in (select position from docs where session_id = ?)", (session_id,)
            )
            conn.execute("delete from docs where session_id = ?", (session_id,))
            conn.execute("delete from scopes where session_id = ?", (session_id,))
            conn.execute("delete from tags where session_id = ?", (session_id,))
        last = events[-1]
        if last.position > stored:
            conn.execute("update meta set value = ? where key = 'position'", (str(last.position),))
            conn.execute("update meta set value = ? where key = 'fingerprint'", (fingerprint(last),))
        conn.execute("commit")
        return max(stored, last.position)
    except BaseException:
        conn.execute("rollback")
        raise


def _insert(conn: sqlite3.Connection, documents: list[Document]) -> None:
    docs: list[tuple[int, str, int, int, str, str | None]] = []
    texts: list[tuple[object, ...]] = []
    for d in documents:
        columns = d.columns
        folds = [folded(column) for column in columns]
        texts.append((d.position, *map(cjk_tokens, folds)))
        # A folded word changes the indexed text: SQLite's snippet would show it folded, so keep the original.
        changed = any(fold is not column for fold, column in zip(folds, columns, strict=True))
        original = msgspec.json.encode(columns).decode() if changed else None
        docs.append((d.position, d.session_id, d.version, d.timestamp_ms, d.kind, original))
    conn.executemany("insert into docs values (?, ?, ?, ?, ?, ?)", docs)
    conn.executemany("insert into fts (rowid, text, thinking, tool_use, tool_result) values (?, ?, ?, ?, ?)", texts)


def _delete_kind(conn: sqlite3.Connection, session_id: str, kind: str) -> None:
    """Remove a session's title or tags document (one each: the newest replaces it)."""
    where = "from docs where session_id = ? and kind = ?"
    conn.execute(f"delete from fts where rowid in (select position {where})", (session_id, kind))
    conn.execute(f"delete {where}", (session_id, kind))


def _query(
    conn: sqlite3.Connection,
    query: Query,
    filters: Filters,
    order: str,
    limit: int,
    ceiling: int,
    cursor: Cursor | None,
) -> list[SearchHit]:
    match = query.fts5()
    sql = ["select fts.rowid, bm25(fts) from fts"]
    params: list[object] = []
    if filters.session_id is not None or filters.scope is not None or filters.tag is not None:
        sql.append("join docs on docs.position = fts.rowid")
        if filters.session_id is not None:
            sql.append("and docs.session_id = ?")
            params.append(filters.session_id)
        if filters.scope is not None:
            sql.append("join scopes on scopes.session_id = docs.session_id and scopes.scope = ?")
            params.append(filters.scope)
        if filters.tag is not None:
            sql.append("join tags on tags.session_id = docs.session_id and tags.tag = ?")
            params.append(filters.tag)
    sql.append("where fts match ? and fts.rowid <= ?")
    params += [match, ceiling]
    if order == "newest":
        if cursor is not None:
            sql.append("and fts.rowid < ?")
            params.append(cursor.position)
        sql.append("order by fts.rowid desc")
    else:
        sql.append("order by bm25(fts), fts.rowid desc")
    sql.append("limit ? offset ?")
    params += [limit, cursor.offset if cursor is not None and order != "newest" else 0]
    ranked = conn.execute(" ".join(sql), params).fetchall()
    if not ranked:
        return []
    # Snippets only for the page: computing them in the ranking query would make one for every match.
    marks = (START_MARK, END_MARK, "…", _SNIPPET_WORDS)
    snippets = ", ".join(f"snippet(fts, {column}, ?, ?, ?, ?)" for column in range(4))
    rows = conn.execute(
        f"select docs.position, docs.session_id, docs.version, docs.timestamp_ms, docs.kind, docs.original, {snippets} "
        f"from fts join docs on docs.position = fts.rowid where fts match ? "
        f"and fts.rowid in ({', '.join('?' * len(ranked))})",
        [*marks * 4, match, *(row[0] for row in ranked)],
    ).fetchall()
    by_position = {row[0]: row for row in rows}
    hits = []
    for position, bm25 in ranked:
        row = by_position[position]
        best_column = 0
        best: tuple[str, tuple[tuple[int, int], ...]] = ("", ())
        best_count = -1
        if row[5] is not None:
            # Indexed folded: the snippet is made from the text as written, as for PostgreSQL.
            for column, content in enumerate(msgspec.json.decode(row[5])):
                if not content:
                    continue
                plain, highlights, count = snippet(content, query, _SNIPPET_WORDS)
                if count > best_count:
                    best_column, best, best_count = column, (plain, highlights), count
        else:
            for column in range(4):
                plain, highlights = parse_marked(row[6 + column])
                if plain and len(highlights) > best_count:
                    best_column, best, best_count = column, (plain, highlights), len(highlights)
        kind = COLUMN_KINDS[best_column] if row[4] == "message" else row[4]
        hits.append(SearchHit(row[1], row[2], position, kind, best[0], -bm25, row[3], best[1]))
    return hits
