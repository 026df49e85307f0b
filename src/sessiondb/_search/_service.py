"""``SearchService``: keeps a store's search index following its log, and answers ``Store.search``.

The index is derived data. It follows the store-wide position with
``Backend.read_all(after=...)``, one chunk per transaction of the index, never on
an append's path: a batch listener only wakes a background task. ``search()``
first catches the index up to the log's end (so it sees every append that
returned before it), then queries. The background task runs once this process
has searched, or from the open when the store already has an index (someone
searches it): stores nobody searches pay nothing.

On first use in a process the index's fingerprint (the event at the position it
reaches) is checked against the log; a log cut by ``repair`` or replaced makes the
index start over.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import sqlite3
import time
from collections.abc import Sequence
from typing import Any, Protocol

import anyio

from .._backends._base import AppendRequest, Backend, recorded_events
from .._backends._fs import FileSystem
from .._backends.local import LocalBackend
from .._backends.postgres import PostgresBackend
from .._errors import HistoryUnavailableError, InvalidInputError, SessionDBError, StoreClosedError
from .._events import RecordedEvent
from ._model import ORDERS, Cursor, SearchHit, SearchPage, decode_cursor, encode_cursor, search_key
from ._sqlite import SIDECAR_NAME, IndexReset, SidecarUnusable, SqliteIndex, fingerprint
from ._text import Filters, Query, parse_query

CHUNK_EVENTS = 2_000
MAX_LIMIT = 1_000
# Background passes wait this long after a wake-up, so one pass indexes many batches.
_BACKGROUND_PAUSE = 0.1
# Appends kept for the indexer (their events are in memory anyway until it runs).
_MAX_KEPT_APPENDS = 100_000
# At most this long a search waits for PostgreSQL's read horizon to pass this process's own appends.
_HORIZON_WAIT = 10.0
_logger = logging.getLogger("sessiondb")


class SearchIndex(Protocol):
    """What the service needs of an index (SQLite FTS5, PostgreSQL text search)."""

    rebuilds: int

    async def open(self) -> None: ...
    async def aclose(self) -> None: ...
    async def state(self) -> tuple[int, str]: ...
    async def reset(self) -> None: ...
    async def apply(self, after: int, events: Sequence[RecordedEvent]) -> int: ...
    async def count(self) -> int: ...
    async def query(
        self, query: Query, *, filters: Filters, order: str, limit: int, ceiling: int, cursor: Cursor | None
    ) -> list[SearchHit]: ...


class SearchService:
    """The search side of one open store."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._index: SearchIndex | None = None
        self._verified = False
        self._position = 0
        self._catching_up = anyio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._keep_batches = isinstance(backend, LocalBackend)
        self._batches: collections.deque[Sequence[AppendRequest]] = collections.deque()
        self._kept = 0
        self.stats = {"search_events_indexed": 0, "search_events_from_batches": 0, "search_background_errors": 0}

    # ------------------------------------------------------------------ lifecycle

    def sidecar_directory(self) -> str | None:
        """The directory of the on-disk index, or None when this store keeps it in memory."""
        backend = self.backend
        if isinstance(backend, LocalBackend) and type(backend.fs) is FileSystem and os.path.isdir(backend.path):
            return backend.path
        return None

    def start(self) -> None:
        """At the store's open: keep an existing index current in the background (nothing else is done)."""
        directory = self.sidecar_directory()
        if directory is None or getattr(self.backend, "read_only", False):
            return  # a read-only open appends nothing: its searches catch up themselves
        if os.path.exists(os.path.join(directory, SIDECAR_NAME)):
            self._start_background()

    def _start_background(self) -> None:
        if self._task is None and not self._closed:
            self._task = asyncio.get_running_loop().create_task(self._background(), name="sessiondb-search-indexer")
            self._wake.set()

    def after_batch(self, batch: Sequence[AppendRequest]) -> None:
        """The store's batch listener: wake the background indexer, and keep the batch for it.

        On the append's path only a list append and an ``Event.set()``. The indexer takes
        this process's events from these batches instead of reading and decoding them back
        from the log (positions are gapless in the local backend, so a gap, such as another
        process's events, shows and is read from the log).
        """
        if self._task is not None:
            self._wake.set()
            if self._keep_batches:
                self._batches.append(batch)
                self._kept += len(batch)
                if self._kept > _MAX_KEPT_APPENDS:  # the indexer fell behind: it reads the log instead
                    self._batches.clear()
                    self._kept = 0

    async def aclose(self) -> None:
        """Stop the indexer and close the index. The indexer's task ends only once its worker
        thread did (``run_to_completion``), and the index closes only when no thread uses it."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._index is not None:
            with anyio.CancelScope(shield=True):
                await self._index.aclose()
            self._index = None

    def close_orphaned(self) -> None:
        """The store's event loop is closed (its tasks and their threads ended with it): close the index now."""
        self._closed = True
        self._task = None
        index, self._index = self._index, None
        if isinstance(index, SqliteIndex):
            index.close_orphaned()

    async def _background(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.catch_up()
            except asyncio.CancelledError:
                raise
            except Exception:
                # Never the appends' problem: search() catches up (and reports) on its own.
                self.stats["search_background_errors"] += 1
                _logger.exception("the search index could not follow the log; search() will catch up itself")
            await asyncio.sleep(_BACKGROUND_PAUSE)

    async def _get_index(self) -> SearchIndex:
        if self._closed:
            raise StoreClosedError("the store was closed while this search ran; open it again")
        if self._index is None:
            index = await self._open_index()
            if self._closed:  # closed while it opened: aclose() found no index to close
                with anyio.CancelScope(shield=True):
                    await index.aclose()
                raise StoreClosedError("the store was closed while this search ran; open it again")
            self._index = index
        return self._index

    async def _open_index(self) -> SearchIndex:
        backend = self.backend
        if isinstance(backend, PostgresBackend):
            from ._postgres import PostgresIndex

            index: SearchIndex = PostgresIndex(backend)
            await index.open()
            return index
        directory = self.sidecar_directory()
        if directory is not None:
            mode = backend.fs.file_mode if isinstance(backend, LocalBackend) else 0o600
            disk = SqliteIndex(directory, file_mode=mode)
            try:
                await disk.open()
                return disk
            except (OSError, SidecarUnusable, sqlite3.Error) as exc:
                # A read-only directory, a newer sessiondb's index, a damaged file others hold open.
                _logger.warning("search index %s not usable (%s); this process indexes in memory", disk.path, exc)
        memory = SqliteIndex(None)
        await memory.open()
        return memory

    # ------------------------------------------------------------------ following the log

    async def catch_up(self) -> int:
        """Index everything the log holds now; return the position the index reaches."""
        async with self._catching_up:
            for _ in range(3):
                index = await self._get_index()
                try:
                    return await self._catch_up(index)
                except IndexReset:
                    self._verified = False  # the index was emptied: start over
                except SidecarUnusable as exc:
                    await self._fall_back_to_memory(exc)
            return await self._catch_up(await self._get_index())

    async def _fall_back_to_memory(self, exc: Exception) -> None:
        """The sidecar turned out damaged while other processes hold it open: index in memory instead."""
        _logger.warning("the search index file is not usable (%s); this process indexes in memory", exc)
        if self._index is not None:
            with anyio.CancelScope(shield=True):
                await self._index.aclose()
            self._index = None
        if self._closed:
            raise StoreClosedError("the store was closed while this search ran; open it again")
        memory = SqliteIndex(None)
        await memory.open()
        self._index = memory
        self._verified = False

    async def _catch_up(self, index: SearchIndex) -> int:
        position = await self._follow(index)
        backend = self.backend
        if isinstance(backend, PostgresBackend) and position < backend.last_position:
            # This process's own commits must be searchable at once, but PostgreSQL's read_all stops
            # at the oldest open transaction on the server: wait (a little) for that horizon to pass them.
            mine = backend.last_position
            deadline = time.monotonic() + _HORIZON_WAIT
            pause = 0.005
            while await backend.readable_below() <= mine and time.monotonic() < deadline:
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.1)
            position = await self._follow(index)
        return position

    async def _follow(self, index: SearchIndex) -> int:
        position, print_ = await index.state()
        if not self._verified:
            if position and not await self._same_log(position, print_):
                _logger.warning("the search index describes another log (repaired or replaced); rebuilding it")
                await index.reset()
                position = 0
            self._verified = True
        stalled = 0  # passes in a row that did not move the index forward
        removed = 0  # positions up to here were removed by retention (nothing there to index)
        while True:
            if stalled > 2:
                # Never spin: a pass that cannot advance the index is a fault to report.
                raise SessionDBError(
                    f"the search index cannot advance past position {position} of the log; delete the store's "
                    "search.sqlite* files while no process has the store open, and the next search rebuilds it"
                )
            kept = self._kept_events(position)
            if kept:
                stored = await index.apply(position, kept)
                self.stats["search_events_indexed"] += len(kept)
                self.stats["search_events_from_batches"] += len(kept)
                stalled = 0 if stored > position else stalled + 1
                if stored < position:
                    self._verified = False
                    position, print_ = await index.state()
                    continue
                position = stored
                continue
            try:
                events = await self.backend.read_all(position, CHUNK_EVENTS)
            except HistoryUnavailableError:
                # Retention removed old segments: index from the first readable position. The
                # chunk is applied after the index's own position, so the index jumps the gap.
                first = self.backend.first_available_position() if isinstance(self.backend, LocalBackend) else 0
                if first - 1 <= position:
                    raise
                removed = first - 1
                events = await self.backend.read_all(first - 1, CHUNK_EVENTS)
            if not events:
                break
            stored = await index.apply(position, events)
            self.stats["search_events_indexed"] += len(events)
            stalled = 0 if stored > position else stalled + 1
            if stored < position:
                self._verified = False  # another process emptied it
                position, print_ = await index.state()
                continue
            position = stored
            if len(events) < CHUNK_EVENTS:
                break
        self._position = max(position, removed)
        return self._position

    def _kept_events(self, position: int) -> list[RecordedEvent]:
        """This process's committed events right after ``position``, from the kept batches (up to a chunk)."""
        events: list[RecordedEvent] = []
        batches = self._batches
        while batches:
            batch = batches[0]
            for request in batch:
                if request.error is not None or request.duplicate or not request.events:
                    continue
                last = request.first_position + len(request.events) - 1
                if last <= position:
                    continue  # indexed already (from the log, or by another process)
                if request.first_position != position + 1:
                    if events:
                        return events  # a gap: index what is contiguous, then look again
                    batches.clear()  # not where the index is: the log is read instead
                    self._kept = 0
                    return events
                events += recorded_events(request)
                position = last
            batches.popleft()
            self._kept -= len(batch)
            if len(events) >= CHUNK_EVENTS:
                break
        return events

    async def _same_log(self, position: int, print_: str) -> bool:
        """Whether the event at ``position`` is the one the index saw there."""
        try:
            events = await self.backend.read_all(position - 1, 1)
        except HistoryUnavailableError:
            return True  # retention removed it: nothing to compare, keep what is indexed
        if not events:
            return self.backend.last_position >= position
        if events[0].position != position:
            return True  # a gap (PostgreSQL: removed by storage compaction)
        return fingerprint(events[0]) == print_

    # ------------------------------------------------------------------ searching

    async def search(
        self,
        query: str,
        *,
        scope: str | None,
        tag: str | None,
        session_id: str | None,
        order: str,
        limit: int,
        cursor: str | None,
    ) -> SearchPage:
        parsed = parse_query(query)
        if order not in ORDERS:
            raise InvalidInputError(f"search() order must be 'relevance' or 'newest', got {order!r}")
        if type(limit) is not int or not 1 <= limit <= MAX_LIMIT:
            raise InvalidInputError(f"search() limit must be an int in 1..{MAX_LIMIT}, got {limit!r}")
        for name, value in (("scope", scope), ("tag", tag), ("session_id", session_id)):
            if value is not None and type(value) is not str:
                raise InvalidInputError(f"search() {name} must be a str or None, got {type(value).__name__}")
        key = search_key(query, order, scope, tag, session_id)
        previous = decode_cursor(cursor, key) if cursor is not None else None
        self._start_background()
        try:
            hits, ceiling = await self._query(parsed, Filters(session_id, scope, tag), order, limit, previous)
        except (sqlite3.Error, OSError) as exc:
            raise SessionDBError(
                f"the search index failed ({exc!r}); it is derived data: retry, or delete the store's "
                "search.sqlite* files while no process has the store open, and the next search rebuilds it"
            ) from exc
        except Exception as exc:
            if type(exc).__module__.startswith("asyncpg"):
                raise SessionDBError(f"the PostgreSQL search index failed ({exc!r}); retry") from exc
            raise
        next_cursor = None
        if len(hits) > limit:
            hits = hits[:limit]
            last = hits[-1]
            offset = (previous.offset if previous is not None else 0) + limit
            next_cursor = encode_cursor(Cursor(key, ceiling, offset, last.position))
        return SearchPage(hits, next_cursor)

    async def _query(
        self, parsed: Query, filters: Filters, order: str, limit: int, previous: Cursor | None
    ) -> tuple[list[SearchHit], int]:
        for attempt in range(2):
            ceiling = await self.catch_up() if previous is None else previous.ceiling
            index = await self._get_index()
            try:
                hits = await index.query(
                    parsed, filters=filters, order=order, limit=limit + 1, ceiling=ceiling, cursor=previous
                )
                return hits, ceiling
            except IndexReset:
                if attempt:
                    raise
                self._verified = False
                if previous is not None:
                    await self.catch_up()
            except SidecarUnusable as exc:
                if attempt:
                    raise SessionDBError(f"the search index is not usable ({exc}); retry") from exc
                async with self._catching_up:
                    await self._fall_back_to_memory(exc)
                if previous is not None:
                    await self.catch_up()
        raise AssertionError("unreachable")

    def statistics(self) -> dict[str, Any]:
        rebuilds = self._index.rebuilds if self._index is not None else 0
        return {**self.stats, "search_rebuilds": rebuilds, "search_position": self._position}
