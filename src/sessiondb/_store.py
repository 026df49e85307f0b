"""Store: the public API over a backend: lifecycle, append, read, load, fork, projections.

Larger than the ~400-line aim: ``Store`` is the one facade users call, and each of
its public methods is short (validate, then delegate to the writer, the backend,
the compactor or the subscriptions, which live in their own modules). Splitting the
class itself would spread one public type across files.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import anyio

from ._backends._base import (
    REOPENED,
    AppendRequest,
    Backend,
    SessionInfo,
    SessionPage,
    compaction_error,
    recorded_events,
)
from ._backends._fs import FileSystem
from ._backends._listing import check_limit, decode_cursor, encode_cursor, session_query
from ._backends._memory import MemoryFileSystem
from ._backends._snapshot_payload import SnapshotPayload, decode_projection_state
from ._backends.local import DEFAULT_MAX_EVENT_BYTES, DEFAULT_SEGMENT_BYTES, LocalBackend
from ._compactor import CompactionSettings, Compactor, decode_or_none
from ._conversation import TokenThresholdPolicy, local_summary, plan_compaction
from ._errors import (
    ConflictError,
    HistoryUnavailableError,
    InvalidInputError,
    SessionDBError,
    SessionDeletedError,
    SessionExistsError,
    SessionNotFoundError,
    StoreClosedError,
    StoreNotStartedError,
    refused_because_broken,
)
from ._events import (
    Compacted,
    Custom,
    Event,
    Fork,
    Inherited,
    Message,
    PinChanged,
    PromptRecorded,
    RecordedEvent,
    SessionDeleted,
    SessionStarted,
    TagsChanged,
    Text,
    Thinking,
    TitleChanged,
    ToolResult,
    ToolUse,
)
from ._gcpause import gc_paused
from ._handoff import StoreLoop, iterated_on_store_loop, on_store_loop
from ._ids import generate_session_id, now_ms, validate_session_id
from ._labels import MAX_TAGS, check_scope, check_tag, check_title
from ._paths import user_path
from ._projection import Projection, Session, is_continuation_message, replay_session
from ._search import SearchPage, SearchService
from ._subscriptions import DEFAULT_BUFFER_EVENTS, Subscription, subscribe_every_session, subscribe_session
from ._threads import run_to_completion
from ._values import MAX_EVENT_ID_CHARS, MAX_METADATA_CHARS, check_event, check_text, plain_message
from ._writer import Writer

DEFAULT_MAX_PENDING = 16_384
DEFAULT_FILE_MODE = FileSystem.file_mode
DEFAULT_DIR_MODE = FileSystem.dir_mode
# Appends per batch: large enough to amortise the fsync, small enough that one
# batch's appenders run while the next is synced. MAX_BATCH env var for experiments.
DEFAULT_MAX_BATCH = int(os.environ.get("SESSIONDB_MAX_BATCH", "512"))
DEFAULT_MAX_EVENTS_PER_APPEND = 10_000
DEFAULT_PROJECTION_CACHE = 4_096
_READ_PAGE = 10_000
_MAX_INT64 = 2**63 - 1
_running_loop = asyncio.get_running_loop
_time_ns = time.time_ns
# A label change re-reads and decides again when another append lands between its read and its write.
_LABEL_ATTEMPTS = 1_000
_CLOSED = "the store is closed; open it again with sessiondb.open_store()"
_RESYNC_ATTEMPTS = 16
_USER_EVENT_TYPES = (Message, PromptRecorded, Compacted, Custom)
_BLOCK_TYPES = frozenset((Text, Thinking, ToolUse, ToolResult))

BatchListener = Callable[[Sequence[AppendRequest]], None]
_logger = logging.getLogger("sessiondb")


class Store:
    """An open session store. Get one from ``open_store``; every method is a coroutine.

    Appends from any number of tasks and sessions are group-committed: an
    ``append`` that returned is durable.

    The store lives on the event loop that opened it. Its coroutines (and the
    iteration of ``read`` and of subscriptions) may be awaited from any other
    thread's loop: the call is handed off to the store's loop and awaited there.
    A call that cannot be served (that loop is closed, stopped or blocked) raises
    ``StoreLoopError``; in a process forked after the store was opened, every
    call raises ``StoreForkedError``.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        max_pending: int = DEFAULT_MAX_PENDING,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_events_per_append: int = DEFAULT_MAX_EVENTS_PER_APPEND,
        projection_cache_size: int = DEFAULT_PROJECTION_CACHE,
        redact: Callable[[Event], Event] | None = None,
        compaction: CompactionSettings | None = None,
    ) -> None:
        for name, value in (
            ("max_pending", max_pending),
            ("max_batch", max_batch),
            ("max_events_per_append", max_events_per_append),
        ):
            _require_positive_option(name, value)
        if type(projection_cache_size) is not int or projection_cache_size < 0:
            raise InvalidInputError(f"projection_cache_size must be an int >= 0, got {projection_cache_size!r}")
        if not isinstance(backend, Backend):
            raise InvalidInputError(f"Store() takes a Backend (open_store() makes one), got {type(backend).__name__}")
        if redact is not None and not callable(redact):
            raise InvalidInputError(f"redact must be a function Event -> Event (or None), got {type(redact).__name__}")
        if compaction is not None and not isinstance(compaction, CompactionSettings):
            raise InvalidInputError(
                "compaction must be a sessiondb.CompactionSettings (e.g. CompactionSettings(keep_segments=1)) "
                f"or None, got {type(compaction).__name__}"
            )
        self.backend = backend
        self._compactor = Compactor(self, compaction if compaction is not None else CompactionSettings())
        self._max_events_per_append = max_events_per_append
        self._redact = redact
        self._projections: dict[str, Projection[Any]] = {}
        self._unrecorded: frozenset[str] = frozenset()  # registered with record=False
        self._projection_cache: OrderedDict[tuple[str, str], list[Any]] = OrderedDict()
        self._projection_cache_size = projection_cache_size
        self._batch_listeners: list[BatchListener] = []
        self._listener_errors = 0
        self._writer = Writer(backend, max_pending=max_pending, max_batch=max_batch, on_batch=self._after_batch)
        self._search = SearchService(backend)
        self._batch_listeners.append(self._search.after_batch)  # wakes the background indexer, nothing more
        self._open = False
        self._starting = False
        self._closed = False
        self._fully_closed = asyncio.Event()
        self._writer_task: asyncio.Task[None] | None = None
        self._home = StoreLoop()  # the loop start() runs on; calls from other loops are handed off to it

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Open the backend (recovering it) and start the writer task, on the running loop (the store's home).

        Once per store: a closed store is not started again (open a new one with ``open_store``).
        If the open fails, nothing stays open and ``start()`` may be called again. A backend instance
        serves one store, once: one that served (or serves) another is refused (``InvalidInputError``).
        """
        if self._closed:
            raise StoreClosedError(_CLOSED)
        if self._open or self._starting:
            raise SessionDBError(
                "the store is already started: `async with store:` starts it, so do not also call start()"
            )
        backend = self.backend
        if backend._claimed:
            raise InvalidInputError(REOPENED.format(name=type(backend).__name__))
        self._starting = True
        try:
            self._home.bind()
            backend._claimed = True
            try:
                await backend.open()
            except BaseException:
                backend._claimed = False  # nothing stayed open: it may be started again
                raise
            try:
                self._record_projections(list(self._projections.values()))
            except BaseException:
                # The backend is open (its locks taken): nothing may stay open behind a failed start.
                self._closed = True
                with anyio.CancelScope(shield=True):
                    await self.backend.aclose()
                raise
            # A plain task rather than a task group: errors raised in the user's
            # ``async with`` body must reach them unwrapped, not in an ExceptionGroup.
            self._writer_task = self._writer.start()
            self._open = True
        finally:
            self._starting = False
        self._search.start()  # keeps an existing search index current, off the append path
        self._compactor.start()  # background storage compaction (see CompactionSettings)

    async def aclose(self) -> None:
        """Commit what is pending, stop the writer and release the backend. Idempotent.

        A second call waits for the first to finish: on return the store is closed
        (its directory lock released), whichever call returns first. In a process
        forked after the store was opened it only marks this copy closed and drops
        its descriptors (``Backend.abandon``): the files, locks and connections are
        the parent's, and nothing is unlocked or closed on its behalf.

        When the event loop the store was started on is closed (``store =
        asyncio.run(opener())``, then ``asyncio.run(store.aclose())``), it closes
        the store from here: the search index, locks and descriptors are released
        (``Backend.release_orphaned``) and the store is marked closed. Its tasks
        ended with that loop, so nothing pending can be acknowledged any more;
        whatever was durable stays.
        """
        if self._home.forked:
            self._closed = True
            # The descriptors are the parent's, flock locks included (they belong to the open file
            # description fork shares): drop them without unlocking, or the parent's write lock goes too.
            self.backend.abandon()
            return
        home = self._home.loop
        if home is not None and home.is_closed():
            self._close_orphaned()
            return
        await self._aclose()

    def _close_orphaned(self) -> None:
        """``aclose`` of a store whose event loop is closed: release what it holds, on this thread."""
        self._closed = True
        # asyncio.run ended every task of that loop before closing it, and each waited for its worker
        # thread (run_to_completion): no thread uses the index or the descriptors any more.
        try:
            self._search.close_orphaned()
        finally:
            self.backend.release_orphaned()

    @on_store_loop
    async def _aclose(self) -> None:
        if self._closed:
            await self._fully_closed.wait()
            return
        self._closed = True
        try:
            with anyio.CancelScope(shield=True):
                await self._compactor.stop()  # a pass in flight leaves only whole files behind
            self._writer.close()
            with anyio.CancelScope(shield=True):
                try:
                    if self._writer_task is not None:
                        await self._writer_task
                finally:
                    try:
                        await self._search.aclose()
                    finally:
                        await self.backend.aclose()
        finally:
            self._fully_closed.set()

    async def __aenter__(self) -> Store:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _check_open(self) -> None:
        if self._closed or not self._open:
            raise self._unusable()
        if self._writer.broken is not None:
            raise refused_because_broken(self._writer.broken) from self._writer.broken

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def broken(self) -> bool:
        return self._writer.broken is not None

    # ------------------------------------------------------------------ writing

    async def _submit(self, request: AppendRequest) -> AppendRequest:
        try:
            return await (await self._writer.submit(request))
        except (SessionNotFoundError, SessionExistsError):
            await self._raise_if_deleted(request.session_id)
            raise

    async def _raise_if_deleted(self, session_id: str) -> None:
        """The one rule for a deleted session's id, whatever the backend said: ``SessionDeletedError``."""
        if type(session_id) is str:
            info = await self.backend.info(session_id)
            if info is not None and info.deleted:
                raise SessionDeletedError(session_id, version=info.version, deleted_at_ms=info.updated_at_ms) from None

    @on_store_loop
    async def create_session(
        self,
        *,
        session_id: str | None = None,
        model: str | None = None,
        workspace_root: str | None = None,
        scope: str | None = None,
    ) -> str:
        """Create a session and return its id (generated unless given).

        ``scope`` (a project, a tenant; see ``sessiondb._labels`` for what it may hold) is
        fixed for the session's life; ``list_sessions(scope=...)`` and ``page_sessions``
        find a scope's sessions from an index.
        """
        self._check_open()
        if session_id is None:
            session_id = generate_session_id()
            with _unnamed("create_session", session_id):  # not the id of a session that was never made
                _check_metadata(session_id, model, workspace_root, None)
                check_scope(scope, session_id, new=True)
        else:
            validate_session_id(session_id)
            _check_metadata(session_id, model, workspace_root, None)
            check_scope(scope, session_id, new=True)
        started = SessionStarted(now_ms(), model, workspace_root, scope=scope)
        await self._submit(
            AppendRequest(session_id, (started,), timestamp_ms=started.created_at_ms, creates=True, full_check=True)
        )
        return session_id

    async def append(
        self,
        session_id: str,
        *events: Event,
        expected_version: int | None = None,
        event_ids: Sequence[str | None] | None = None,
        timestamp_ms: int | None = None,
    ) -> int:
        """Append events to a session atomically; return its version after them.

        Durable on return. With ``expected_version`` the append fails with
        ``ConflictError`` unless the session is at exactly that version. With
        ``event_ids`` (one per event, ``None`` for none, no id twice) a retried
        append is recognised and not stored twice: the call returns the version
        the first attempt produced.
        """
        home = self._home
        if home.loop is not _running_loop():
            # @on_store_loop, inlined: its wrapper coroutine cost ~9% of an append's CPU. Anywhere
            # but the home loop, the call is handed off there (or refused: closed, forked, ...).
            return await home.run(
                functools.partial(self._append_on_home, session_id, events, expected_version, event_ids, timestamp_ms)
            )
        if self._closed or not self._open or self._writer.broken is not None:
            self._check_open()
        if len(events) == 1 and self._redact is None and type(events[0]) is Message and plain_message(events[0]):
            pass  # the common case, checked in one pass (every block a block type, every str ASCII)
        else:
            compacts = self._check_events(session_id, events)
            if self._redact is not None:
                events = self._redacted(session_id, events)
                compacts = any(type(event) is Compacted for event in events)
            _check_values(session_id, events)
            if compacts:
                return await self._append_compacting(session_id, events, expected_version, event_ids, timestamp_ms)
        if expected_version is not None or event_ids is not None or timestamp_ms is not None:
            event_ids = _checked_append_options(session_id, events, expected_version, event_ids, timestamp_ms)
        elif type(session_id) is not str:
            validate_session_id(session_id)
        request = AppendRequest(  # positional: msgspec parses keywords more slowly (hot path)
            session_id,
            events,
            expected_version,
            event_ids,
            _time_ns() // 1_000_000 if timestamp_ms is None else timestamp_ms,  # now_ms(), inlined
        )
        writer = self._writer
        future = writer.offer(request)
        if future is None:  # the pending list is full: backpressure
            future = await writer.submit(request)
        try:
            return (await future).version
        except SessionNotFoundError:
            validate_session_id(session_id)  # an id no session can have gets the clearer error
            await self._raise_if_deleted(session_id)
            raise

    async def _append_compacting(
        self,
        session_id: str,
        events: tuple[Event, ...],
        expected_version: int | None,
        event_ids: Sequence[str | None] | None,
        timestamp_ms: int | None,
    ) -> int:
        """``append`` of checked events holding a ``Compacted``: the backend checks what it removes.

        The check of ``removed_message_count`` against the live messages must be atomic
        with the commit (checked here against ``info()``, two concurrent compactions
        would both pass): ``full_check`` makes the backend do it while it plans the batch,
        against its own summary and the earlier appends of the same batch. A refused
        compaction fails alone with ``InvalidInputError``, never the batch. Plain appends
        never come here, so they pay nothing for it.
        """
        if expected_version is not None or event_ids is not None or timestamp_ms is not None:
            event_ids = _checked_append_options(session_id, events, expected_version, event_ids, timestamp_ms)
        elif type(session_id) is not str:
            validate_session_id(session_id)
        request = AppendRequest(
            session_id,
            events,
            expected_version,
            event_ids,
            now_ms() if timestamp_ms is None else timestamp_ms,
            full_check=True,
        )
        try:
            return (await self._submit(request)).version
        except SessionNotFoundError:
            validate_session_id(session_id)  # an id no session can have gets the clearer error
            raise

    async def _append_on_home(
        self,
        session_id: str,
        events: tuple[Event, ...],
        expected_version: int | None,
        event_ids: Sequence[str | None] | None,
        timestamp_ms: int | None,
    ) -> int:
        """``append`` where ``StoreLoop.run`` runs it: on the home loop, or right away before start()."""
        if self._home.loop is None:
            self._check_open()  # never started: refused (append's test would send it back here)
        return await self.append(
            session_id, *events, expected_version=expected_version, event_ids=event_ids, timestamp_ms=timestamp_ms
        )

    def _check_events(self, session_id: str, events: tuple[Event, ...]) -> bool:
        """The event count and types (values are ``_check_values``'s); whether a ``Compacted`` is among them."""
        compacts = False
        if not events:
            raise InvalidInputError("append() needs at least one event")
        if len(events) > self._max_events_per_append:
            raise InvalidInputError(
                f"append() got {len(events)} events for session {session_id!r}; the limit for one "
                f"atomic append is {self._max_events_per_append}"
            )
        for event in events:
            if type(event) is Message:
                _check_message(event)
            elif type(event) is Compacted:
                compacts = True
            elif not isinstance(event, _USER_EVENT_TYPES):
                raise InvalidInputError(_wrong_event_message(session_id, event))
        return compacts

    @staticmethod
    def _check_compactions(session_id: str, events: Sequence[Event], live: int) -> None:
        """Refuse a ``Compacted`` of an imported history that removes more than the ``live`` messages before it.

        Appends to an existing session are checked by the backend instead, atomically with
        the commit (``_append_compacting``); an import creates its session, so nothing races it.
        """
        error = compaction_error(session_id, live, False, events)
        if error is not None:
            raise error

    def _redacted(self, session_id: str, events: tuple[Event, ...]) -> tuple[Event, ...]:
        """The events as the redaction hook rewrote them (checked: a hook must return an event)."""
        assert self._redact is not None
        redacted = tuple(self._redact(event) for event in events)
        for event in redacted:
            if type(event) is not Message and not isinstance(event, _USER_EVENT_TYPES):
                raise InvalidInputError(
                    f"the store's redact hook returned {type(event).__name__} for an append to session "
                    f"{session_id!r}; it must return an event of the type it was given"
                )
        return redacted

    @on_store_loop
    async def _import_session(
        self,
        session_id: str,
        started: SessionStarted,
        events: Sequence[Event],
        *,
        timestamp_ms: int,
        event_ids: Sequence[str | None] | None = None,
    ) -> int:
        """Create a session with a given start and history as ONE atomic append; return its version.

        For importers and integrations (claw-code files, the OpenAI Agents session):
        nothing is half-created. No per-append event limit: an imported file is atomic.
        ``event_ids`` (one per event of ``events``) are stored as ``append`` stores them.
        """
        self._check_open()
        validate_session_id(session_id)
        if not isinstance(started, SessionStarted):
            raise InvalidInputError(f"_import_session needs a SessionStarted, got {type(started).__name__}")
        for event in events:
            if not isinstance(event, _USER_EVENT_TYPES):
                raise InvalidInputError(_wrong_event_message(session_id, event))
        if type(timestamp_ms) is not int or timestamp_ms < 0:
            raise InvalidInputError(f"timestamp_ms must be a non-negative int, got {timestamp_ms!r}")
        if self._redact is not None:  # imported history is redacted like any append
            events = self._redacted(session_id, tuple(events))
        branch = started.fork.branch_name if started.fork is not None else None
        _check_metadata(session_id, started.model, started.workspace_root, branch)
        _check_values(session_id, events)
        if any(type(event) is Compacted for event in events):
            inherited = started.inherited
            live = inherited.message_count - (1 if inherited.compacted else 0) if inherited is not None else 0
            self._check_compactions(session_id, events, max(live, 0))
        ids: list[str | None] | None = None
        if event_ids is not None:
            ids = [None, *_checked_event_ids(session_id, event_ids, len(events), "import")]
        request = AppendRequest(
            session_id, (started, *events), timestamp_ms=timestamp_ms, creates=True, full_check=True, event_ids=ids
        )
        return (await self._submit(request)).version

    @on_store_loop
    async def record_prompt(self, session_id: str, text: str) -> int:
        """Add ``text`` to the session's prompt history."""
        return await self.append(session_id, PromptRecorded(text, now_ms()))

    @on_store_loop
    async def record_compaction(self, session_id: str, *, summary: str, removed_message_count: int) -> int:
        """Record a compaction your agent already did: ``summary`` replaces the oldest ``removed_message_count``
        live messages. Returns the session's new version.

        Use it when the agent loop (or a model call of yours) chose what to drop and wrote
        the summary itself, and you only record the outcome, as the reference records it.
        To have sessiondb choose the cut (keeping the last ``keep_last`` messages, never
        separating a tool call from its result) and build a local summary if you give
        none, call ``compact_conversation`` instead. ``InvalidInputError`` (nothing written)
        if ``removed_message_count`` exceeds the live messages (an earlier summary not counted).
        """
        return await self.append(session_id, Compacted(summary, removed_message_count))

    @on_store_loop
    async def fork(
        self,
        parent: str,
        /,
        *,
        branch_name: str | None = None,
        at_version: int | None = None,
        session_id: str | None = None,
        scope: str | None = None,
    ) -> str:
        """Start a new session that shares ``parent``'s history up to ``at_version``; return its id.

        ``session_id`` names the new session, as in ``create_session`` (default: a
        generated id). Nothing is copied: the child's log starts with one event that
        points at the parent and version; reads stitch the two together. The child
        has the parent's scope unless ``scope`` names another, and starts without a
        title, tags or pin (the parent's history keeps its own).
        """
        self._check_open()
        # Not while a compaction pass runs: the pass decides which history retention may
        # delete from the forks that exist, so a fork committed mid-pass could lose its parent's.
        async with self._compactor.pass_lock:
            info = await self._info(parent)
            if at_version is None:
                # The latest version, as load sees it: another process's compaction may have moved
                # the head past ``info`` and removed the history below it meanwhile.
                state = await self.load(parent)
                version = state.version
            else:
                version = self._check_version(info, at_version)
                state = await self.load(parent, at_version=version)
            compacted = bool(state.messages) and is_continuation_message(state.messages[0])
            if branch_name is not None and type(branch_name) is not str:
                raise InvalidInputError(f"fork() takes a str branch_name (or None), got {type(branch_name).__name__}")
            branch = branch_name.strip() or None if branch_name is not None else None
            child_id = generate_session_id() if session_id is None else validate_session_id(session_id)
            with _unnamed(f"fork of session {parent!r}", child_id if session_id is None else None):
                _check_metadata(child_id, None, None, branch)
                child_scope = info.scope if scope is None else check_scope(scope, child_id, new=True)
            started = SessionStarted(
                now_ms(),
                # From the summary, not the replay: a fork at version 0 keeps the parent's model and workspace.
                info.model,
                info.workspace_root,
                Fork(parent, branch, version),
                Inherited(len(state.messages), state.usage, compacted, state.item_count, state.checkpoint_count),
                child_scope,
            )
            await self._submit(
                AppendRequest(child_id, (started,), timestamp_ms=started.created_at_ms, creates=True, full_check=True)
            )
            return child_id

    @on_store_loop
    async def delete_session(self, session_id: str) -> None:
        """Delete a session: it disappears at once; the compactor frees its space later."""
        await self._info(session_id)
        await self._submit(AppendRequest(session_id, (SessionDeleted(),), timestamp_ms=now_ms()))

    # ------------------------------------------------------------------ labels

    @on_store_loop
    async def set_title(self, session_id: str, title: str | None) -> int:
        """Set the session's title (``None`` clears it); return the session's version after it.

        One durable ``TitleChanged`` event, so the history keeps every title
        (``load(at_version=...)`` shows the one of that time). Setting the title it
        already has writes nothing and returns the current version. A title is one
        line of at most 500 characters; ``InvalidInputError`` otherwise.
        """
        self._check_open()
        check_title(title, session_id, new=True)
        return await self._change_label(session_id, lambda info: None if info.title == title else TitleChanged(title))

    @on_store_loop
    async def add_tags(self, session_id: str, *tags: str) -> int:
        """Add tags to the session; return its version after the ``TagsChanged`` event.

        A tag is 1-64 letters, digits or ``_ - . : / @ #``, starting with a letter, a digit
        or ``_``; a session holds at most 64 (``InvalidInputError`` beyond, naming the
        session). Tags it already has are left out; if none is new, nothing is written.
        The count is checked against the session's current tags with ``expected_version``,
        so concurrent writers (other tasks, processes or hosts) cannot exceed it.
        """
        self._check_open()
        wanted = _check_tag_arguments(session_id, tags)

        def decide(info: SessionInfo) -> Event | None:
            added = [tag for tag in wanted if tag not in info.tags]
            if not added:
                return None
            if len(info.tags) + len(added) > MAX_TAGS:
                raise InvalidInputError(
                    f"session {session_id!r} has {len(info.tags)} tags; adding {len(added)} would pass the limit of "
                    f"{MAX_TAGS}; remove some first (nothing was written)"
                )
            return TagsChanged(added=added)

        return await self._change_label(session_id, decide)

    @on_store_loop
    async def remove_tags(self, session_id: str, *tags: str) -> int:
        """Remove tags from the session; return its version after the ``TagsChanged`` event.

        Tags it does not have are ignored; if it has none of them, nothing is written.
        """
        self._check_open()
        wanted = _check_tag_arguments(session_id, tags)

        def decide(info: SessionInfo) -> Event | None:
            removed = [tag for tag in wanted if tag in info.tags]
            return TagsChanged(removed=removed) if removed else None

        return await self._change_label(session_id, decide)

    @on_store_loop
    async def set_pinned(self, session_id: str, pinned: bool = True) -> int:
        """Pin (or with ``False`` unpin) the session; return its version after the ``PinChanged`` event.

        Already in that state: nothing is written and the current version is returned.
        """
        self._check_open()
        if type(pinned) is not bool:
            raise InvalidInputError(f"session {session_id!r}: set_pinned takes a bool, got {pinned!r}")
        return await self._change_label(session_id, lambda info: None if info.pinned == pinned else PinChanged(pinned))

    async def _change_label(self, session_id: str, decide: Callable[[SessionInfo], Event | None]) -> int:
        """Read the session, let ``decide`` pick the label event (None: nothing to change), append it.

        The append carries ``expected_version``: if another task, process or host
        appended since the read, the session is read again and ``decide`` runs again on
        what it holds now. So a change that another writer already made writes nothing
        ("a call that changes nothing writes nothing" holds under concurrency too).
        """
        for _ in range(_LABEL_ATTEMPTS):
            info = await self._info(session_id)
            event = decide(info)
            if event is None:
                return info.version
            request = AppendRequest(session_id, (event,), expected_version=info.version, timestamp_ms=now_ms())
            try:
                return (await self._submit(request)).version
            except ConflictError:
                continue  # another append landed since the read: decide again on what is there now
        raise ConflictError(session_id, info.version, (await self._info(session_id)).version)  # pragma: no cover

    # ------------------------------------------------------------------ reading

    async def _info(self, session_id: str) -> SessionInfo:
        self._check_readable()
        if type(session_id) is not str:
            validate_session_id(session_id)
        info = await self.backend.info(session_id)
        if info is None:
            validate_session_id(session_id)  # an id no session can have gets the clearer error
            raise SessionNotFoundError(session_id)
        if info.deleted:
            raise SessionDeletedError(session_id, version=info.version, deleted_at_ms=info.updated_at_ms)
        return info

    @on_store_loop
    async def _lookup(self, session_id: str) -> SessionInfo | None:
        """The summary of ``session_id`` as the backend holds it: None if unknown, a deleted one too.

        For integrations that walk a key's generations: the backend read behind the Store's
        checks (not started, closed), on the store's loop, so they raise what every call raises.
        """
        self._check_readable()
        return await self.backend.info(session_id)

    def _check_readable(self) -> None:
        if self._closed or not self._open:
            raise self._unusable()

    def _unusable(self) -> StoreClosedError:
        """Why a store that is not open refuses a call: closed, or never started."""
        if self._closed:
            return StoreClosedError(_CLOSED)
        return StoreNotStartedError(
            "the store is not started: use `async with store:` (`async with sessiondb.open_store(...) as store:`), "
            "or `await store.start()`, before calling it"
        )

    @staticmethod
    def _check_version(info: SessionInfo, version: object) -> int:
        if type(version) is not int or not 0 <= version <= info.version:
            raise InvalidInputError(f"session {info.session_id!r} has versions 0..{info.version}; got {version!r}")
        return version

    @on_store_loop
    async def session_info(self, session_id: str) -> SessionInfo:
        """The summary of one session (what ``list_sessions`` shows for it)."""
        return await self._info(session_id)

    @on_store_loop
    async def list_sessions(
        self,
        *,
        scope: str | None = None,
        tag: str | None = None,
        title: str | None = None,
        pinned: bool | None = None,
        order: str = "updated",
        descending: bool = True,
    ) -> list[SessionInfo]:
        """Every live session matching the filters, sorted; with no arguments, all, most recently updated first.

        Filters (combined with AND): ``scope`` (exact), ``tag`` (the session has it),
        ``title`` (a case-insensitive substring of the title, by ``str.casefold``; sessions
        without a title never match), ``pinned`` (True or False). ``order`` is one of
        ``"updated"`` (``updated_at_ms``), ``"created"`` (``created_at_ms``), ``"title"``
        (code-point order, untitled as ``""``) or ``"version"``; ties are broken by
        session id, in the same direction. A scope or tag filter is served from an index.
        Bad arguments raise ``InvalidInputError``. For large stores page with ``page_sessions``.
        """
        self._check_readable()
        query = session_query(scope=scope, tag=tag, title=title, pinned=pinned, order=order, descending=descending)
        return await self.backend.page_sessions(query, None, None)

    @on_store_loop
    async def page_sessions(
        self,
        *,
        scope: str | None = None,
        tag: str | None = None,
        title: str | None = None,
        pinned: bool | None = None,
        order: str = "updated",
        descending: bool = True,
        limit: int = 50,
        cursor: str | None = None,
    ) -> SessionPage:
        """One page of ``list_sessions`` (same filters and order): ``SessionPage(sessions, next_cursor)``.

        ``limit`` is 1..10,000. Pass ``next_cursor`` back as ``cursor`` (with the same
        filters and order) for the next page; it is None after the last. The cursor is
        opaque: the last session's sort key (keyset paging, as SQL's ``WHERE (key, id) <
        (last_key, last_id)``), so appends between pages neither repeat nor skip the
        sessions whose sort key did not change. A session whose key changes while you
        page (``order="updated"`` and it was appended to) moves: in the default newest-
        updated-first order it moves ahead of the cursor, so it is not shown again (and,
        if not yet shown, it is not shown in this pass). A cursor that is not one, or that
        came from other filters or another order, raises ``InvalidInputError``.
        """
        self._check_readable()
        query = session_query(scope=scope, tag=tag, title=title, pinned=pinned, order=order, descending=descending)
        check_limit(limit)
        after = decode_cursor(cursor, query) if cursor is not None else None
        sessions = await self.backend.page_sessions(query, limit + 1, after)
        if len(sessions) <= limit:
            return SessionPage(sessions, None)
        del sessions[limit:]
        return SessionPage(sessions, encode_cursor(query, query.sort_key()(sessions[-1])))

    async def _events(self, info: SessionInfo, after: int, up_to: int) -> list[RecordedEvent]:
        """Events ``after < version <= up_to`` of a session, a fork's parent history included."""
        fork = info.fork
        base = fork.parent_version if fork is not None else 0
        events: list[RecordedEvent] = []
        if fork is not None and after < base:
            parent = await self.backend.info(fork.parent_session_id)
            if parent is None:
                raise SessionNotFoundError(fork.parent_session_id, f"the parent of fork {info.session_id!r}")
            try:
                events = await self._events(parent, after, min(up_to, base))
            except HistoryUnavailableError as exc:
                # Said of the fork that was read: its versions, not the parent's (maybe deleted) ones.
                raise await self._fork_history_unavailable(info, parent, after + 1, exc) from exc
        if up_to > base:
            events += await self.backend.read_session(info.session_id, max(after, base), up_to)
        return events

    async def _fork_history_unavailable(
        self, info: SessionInfo, parent: SessionInfo, wanted: int, exc: HistoryUnavailableError
    ) -> HistoryUnavailableError:
        """The error for a read of fork ``info`` that needs shared history retention removed from an ancestor.

        A fork's versions up to its fork point are its ancestors' versions, numbered the same,
        so the oldest one still stored (``exc.first_available``) is the fork's too.
        """
        assert info.fork is not None
        sid, base = info.session_id, info.fork.parent_version
        if parent.deleted:
            why = f"{parent.session_id!r} was deleted and a compaction purged its history"
        else:
            why = f"retention removed {exc.session_id or parent.session_id!r}'s old versions"
        first = exc.first_available if exc.first_available is not None and exc.first_available <= base else base + 1
        if first == base + 1:
            try:  # the fork's own part may be covered by its snapshot and gone as well
                await self.backend.read_session(sid, base, base + 1)
            except HistoryUnavailableError as own:
                first = own.first_available if own.first_available is not None else info.version + 1
        if first <= info.version:
            readable = f"versions {first}..{info.version} of {sid!r} are readable (read(after={first - 1}))"
        else:
            readable = f"no version of {sid!r} is stored any more"
        return HistoryUnavailableError(
            f"history of session {sid!r} from version {wanted} is no longer stored: its versions 1..{base} are "
            f"the history it shares with its parent {parent.session_id!r} (a fork at version {base}), and {why}; "
            f"{readable}; load({sid!r}) gives its latest state",
            session_id=sid,
            first_available=first,
        )

    @on_store_loop
    async def search(
        self,
        query: str,
        *,
        scope: str | None = None,
        tag: str | None = None,
        session_id: str | None = None,
        order: str = "relevance",
        limit: int = 20,
        cursor: str | None = None,
    ) -> SearchPage:
        """Find events whose text matches ``query``, across every session: a page of ``SearchHit``.

        Query syntax: plain words (every one must match, in any order, case and
        diacritics ignored), ``"a quoted phrase"`` (words in a row) and ``prefix*``;
        punctuation only separates words. Chinese, Japanese and Korean characters are
        each a word, so ``测试`` finds the two in a row inside "这是一个测试" (Thai and other
        scripts without spaces are not split). Searched: message text, thinking, tool calls
        (name and JSON input) and results (tool name and output), prompts, compaction
        summaries, the string values of Custom events, and each session's current title
        and tags; deleted sessions are left out. Filters (AND): ``scope`` (the session's),
        ``tag`` (the session has it now), ``session_id`` (the session that recorded the event).
        ``order``: ``"relevance"`` (best first: SQLite FTS5's bm25, PostgreSQL's ts_rank)
        or ``"newest"`` (store position, newest first). ``limit`` (1..1000) hits per page; pass the
        page's ``next_cursor`` as ``cursor`` for the next (events appended meanwhile are
        not added to later pages). The index is caught up with the log first, so every
        append that returned before the call is searched. Raises ``InvalidInputError``
        for an unusable query, limit, order or cursor. See docs/search.md.
        """
        self._check_readable()
        if session_id is not None:
            await self._info(session_id)  # an unknown or deleted session is an error, as elsewhere
        return await self._search.search(
            query, scope=scope, tag=tag, session_id=session_id, order=order, limit=limit, cursor=cursor
        )

    @iterated_on_store_loop
    async def read(self, session_id: str, *, after: int = 0, up_to: int | None = None) -> AsyncIterator[RecordedEvent]:
        """The session's recorded events with ``after < version <= up_to``, in order.

        A fork yields its parent's shared events (with the parent's session id) first.
        """
        if type(after) is not int or (up_to is not None and type(up_to) is not int):
            raise InvalidInputError(f"read() takes int versions after= and up_to=, got {after!r} and {up_to!r}")
        info = await self._info(session_id)
        last = info.version if up_to is None else min(up_to, info.version)
        cursor = max(after, 0)
        while cursor < last:
            page = await self._events(info, cursor, min(cursor + _READ_PAGE, last))
            for recorded in page:
                yield recorded
            cursor = min(cursor + _READ_PAGE, last)

    @on_store_loop
    async def read_all(self, *, after: int = 0, limit: int = _READ_PAGE) -> list[RecordedEvent]:
        """Up to ``limit`` events of every session with store-wide position > ``after``."""
        self._check_readable()
        if type(after) is not int or type(limit) is not int:
            raise InvalidInputError(f"read_all() takes int after= and limit=, got {after!r} and {limit!r}")
        # Like read(): a negative ``after`` means from the start (not history lost to retention).
        # Positions are below 2**63 (PostgreSQL bigint): larger ints are clamped, never sent as they are.
        return await self.backend.read_all(min(max(after, 0), _MAX_INT64), min(limit, _MAX_INT64))

    def subscribe(self, session_id: str, *, after: int = 0, buffer_size: int = DEFAULT_BUFFER_EVENTS) -> Subscription:
        """Events of a session with version > ``after``: its history, then each new one once durable.

        An async iterator (``async for event in store.subscribe(sid)``); see ``Subscription``.
        """
        return subscribe_session(self, session_id, after=after, buffer_size=buffer_size)

    def subscribe_all(self, *, after: int = 0, buffer_size: int = DEFAULT_BUFFER_EVENTS) -> Subscription:
        """Events of every session with position > ``after``, in position order: history, then live."""
        return subscribe_every_session(self, after=after, buffer_size=buffer_size)

    @on_store_loop
    async def load(self, session_id: str, *, at_version: int | None = None) -> Session:
        """The session's state: the Session projection of its events (up to ``at_version``)."""
        info = await self._info(session_id)
        version = info.version if at_version is None else self._check_version(info, at_version)
        for attempt in range(_RESYNC_ATTEMPTS):
            generation = self.backend.view_generation
            try:
                payload, events = await self._replay_inputs(info, version)
                break
            except HistoryUnavailableError:
                # Another process's retention may have removed segments after writing snapshots
                # this process has not seen yet: learn them, then try again. Its next pass may
                # remove more meanwhile, so try while each look learns something new. The attempt's
                # own log read may have done the learning (a process that fell behind rebuilds its
                # index there, snapshot map included), after its snapshot read found none.
                if attempt == _RESYNC_ATTEMPTS - 1:
                    raise
                learned = await self.backend.resync() or self.backend.view_generation != generation
                if at_version is None:
                    # The latest version: the head seen above may already lie below that pass's
                    # snapshot, whose retention removed the older snapshot and the log up to it.
                    # The head now is at or above it (its process read the log that far).
                    newer = await self._info(session_id)
                    learned = learned or newer.version != version
                    info, version = newer, newer.version
                if not learned:
                    raise
        with gc_paused():
            session = replay_session(session_id, events, payload.session if payload is not None else None)
        return session

    async def _replay_inputs(
        self, info: SessionInfo, version: int
    ) -> tuple[SnapshotPayload | None, list[RecordedEvent]]:
        """The newest snapshot at or below ``version`` (if any) and the events after it up to ``version``."""
        payload = await self._snapshot_for(info, version)
        after = payload.version if payload is not None else 0
        return payload, await self._events(info, after, version)

    async def _snapshot_for(self, info: SessionInfo, version: int) -> SnapshotPayload | None:
        """The newest snapshot to start a replay of ``info``'s session at ``version`` from.

        A fork without a snapshot of its own starts from its parent's (at or below
        the fork point): its history up to there is the parent's.
        """
        payload = await self._snapshot_payload(info.session_id, version)
        fork = info.fork
        if payload is None and fork is not None and version >= fork.parent_version > 0:
            parent = await self.backend.info(fork.parent_session_id)
            if parent is not None:
                payload = await self._snapshot_for(parent, fork.parent_version)
        return payload

    async def _snapshot_payload(self, session_id: str, max_version: int) -> SnapshotPayload | None:
        """The decoded newest snapshot of a session at a version <= ``max_version``, or None."""
        found = await self.backend.read_snapshot(session_id, max_version)
        if found is None:
            return None
        return decode_or_none(found[1])  # a snapshot that does not decode is ignored: replay the log

    # ------------------------------------------------------------------ projections

    def register_projection(self, projection: Projection[Any]) -> None:
        """Register a user projection; its state per session is served by ``project``.

        A projection with a ``state_type`` (its state goes into snapshots) is also
        recorded in the store, durably, the first time any process registers it:
        from then on retention removes log history only under snapshots that hold
        its state, so a process that does not register it (another worker, the CLI)
        cannot make that state unrecoverable. ``forget_projection`` undoes the record.
        Raises ``InvalidInputError`` if the name is taken; an ``OSError`` of the
        record's write propagates (nothing registered).
        """
        self._register_projection(projection, record=True)

    def _register_projection(self, projection: Projection[Any], *, record: bool) -> None:
        """``register_projection``; ``record=False`` (``sessiondb compact``) computes a state without recording it."""
        if projection.name in self._projections:
            raise InvalidInputError(f"a projection named {projection.name!r} is already registered")
        if record and self._open and not self._closed:
            self._record_projections([projection])  # small and once per store: on the caller's thread
        elif not record:
            self._unrecorded = self._unrecorded | {projection.name}
        # Copied, not changed in place: it may be called from another thread while the writer iterates it.
        self._projections = {**self._projections, projection.name: projection}

    def _record_projections(self, projections: list[Projection[Any]]) -> None:
        names = [p.name for p in projections if p.state_type is not Any and p.name not in self._unrecorded]
        if names:
            self.backend.record_projections(names)

    @on_store_loop
    async def forget_projection(self, name: str) -> bool:
        """Remove the store's record of a snapshotted projection; True if it was recorded.

        For a projection no process registers any more (renamed or dropped): until
        its record goes, retention keeps the log history its state needs. Forgetting
        lets retention delete that history under snapshots without its state, so
        ``project`` can no longer rebuild it there. A process that registers the
        name again records it again. Unregisters it in this store too.
        """
        self._check_open()
        self._projections = {key: value for key, value in self._projections.items() if key != name}
        for key in [key for key in self._projection_cache if key[0] == name]:
            del self._projection_cache[key]
        return await run_to_completion(self.backend.forget_projection, name)

    def recorded_projections(self) -> frozenset[str]:
        """The snapshotted projections recorded in this store (by any process); see ``register_projection``."""
        if not self._open and not self._closed:
            raise self._unusable()  # the directory may not even exist yet
        return self.backend.recorded_projections()

    @on_store_loop
    async def project(self, session_id: str, projection: str | Projection[Any]) -> Any:
        """The state of a registered projection for a session, kept current as events arrive."""
        name = projection if isinstance(projection, str) else projection.name
        registered = self._projections.get(name)
        if registered is None:
            raise InvalidInputError(f"no projection named {name!r} is registered; call register_projection first")
        key = (name, session_id)
        cached = self._projection_cache.get(key)
        info = await self._info(session_id)
        if cached is not None and cached[1] == info.version:
            self._projection_cache.move_to_end(key)
            return cached[0]
        state = registered.initial(session_id)
        version = 0
        payload = await self._snapshot_for(info, info.version)
        while payload is not None:
            snapshotted = decode_projection_state(payload, registered)
            if snapshotted is not None:
                state, version = snapshotted, payload.version
                break
            # A snapshot without this state (written by a process that had not registered it): an
            # older one may hold it, and retention kept the log after the newest that does.
            payload = await self._snapshot_for(info, payload.version - 1) if payload.version > 0 else None
        while True:
            events = await self._events(info, version, info.version)
            state = registered.replay(session_id, events, state)
            version = info.version
            info = await self._info(session_id)
            if info.version == version:
                break
        # No await since the last check: the cache entry is current when stored.
        self._projection_cache[key] = [state, version]
        if len(self._projection_cache) > self._projection_cache_size:
            self._projection_cache.popitem(last=False)
        return state

    def _after_batch(self, batch: Sequence[AppendRequest]) -> None:
        """Fold committed events into cached projection states; notify listeners."""
        cache = self._projection_cache
        if cache:
            for request in batch:
                if request.error is not None or request.duplicate:
                    continue
                for name in self._projections:
                    entry = cache.get((name, request.session_id))
                    if entry is None:
                        continue
                    if entry[1] != request.version - len(request.events):
                        del cache[(name, request.session_id)]
                        continue
                    try:
                        entry[0] = self._projections[name].replay(
                            request.session_id, recorded_events(request), entry[0]
                        )
                    except Exception:
                        # The batch is durable and acknowledged; a failing user fold
                        # only loses its cached state (the next project() replays).
                        del cache[(name, request.session_id)]
                        self._listener_errors += 1
                        _logger.exception("projection %r failed to fold a batch; its cache entry was dropped", name)
                        continue
                    entry[1] = request.version
        for listener in list(self._batch_listeners):
            try:
                listener(batch)
            except Exception:
                # A listener must never stop the writer: the batch is already durable.
                self._listener_errors += 1
                _logger.exception("a batch listener raised; the store goes on")

    def add_batch_listener(self, listener: BatchListener) -> Callable[[], None]:
        """Call ``listener(batch)`` after every durable batch; returns a function that removes it."""
        self._batch_listeners.append(listener)
        return lambda: self._batch_listeners.remove(listener)

    def statistics(self) -> dict[str, Any]:
        """Counters of the writer and the backend."""
        return {
            "batches": self._writer.batches,
            "largest_batch": self._writer.largest_batch,
            "pending": self._writer.pending,
            "broken": self.broken,
            "listener_errors": self._listener_errors,
            **self.backend.statistics(),
            **self._compactor.stats,
            **self._search.statistics(),
        }

    # ------------------------------------------------------------------ compaction

    @on_store_loop
    async def compact(self, *, purge: bool = False) -> dict[str, Any]:
        """Run one storage-compaction pass now (snapshots, checkpoint, retention); return what it did.

        Storage compaction never changes what ``load`` returns; for the
        conversation kind (a summary replacing old messages) see ``compact_conversation``.
        ``purge=True`` removes what was deleted now instead of when retention reaches it:
        the active segment is sealed and every sealed segment that snapshots cover is
        deleted (time travel below those snapshots is lost); see docs/compaction.md.
        """
        self._check_open()
        if type(purge) is not bool:
            raise InvalidInputError(f"compact() takes purge=True or False, got {purge!r}")
        return await self._compactor.run_pass(purge=purge)

    @on_store_loop
    async def compact_conversation(
        self,
        session_id: str,
        *,
        summary: str | None = None,
        keep_last: int = 4,
        move_boundary: bool = True,
    ) -> int:
        """Record a conversation compaction: a summary replaces all but the last ``keep_last`` live messages.

        ``load(session_id).messages`` then holds the summary as one system message
        followed by the kept messages; ``read`` and ``load(at_version=...)`` still
        show everything before. Without ``summary`` a local one is built the way
        the reference CLI builds it. The cut never separates a tool result from
        its tool use (it moves back to keep both). Returns the session's new version.
        Recorded with ``expected_version``: a concurrent append makes it fail with
        ``ConflictError`` (with a local summary it is retried on the new state).

        Use it when sessiondb should decide what to drop; when your agent already
        decided (it knows how many messages its summary replaces), call
        ``record_compaction(session_id, summary=..., removed_message_count=n)``.
        """
        if summary is not None and (type(summary) is not str or not summary.strip()):
            raise InvalidInputError("summary must be a non-empty str (or None for a locally built one)")
        if type(move_boundary) is not bool:
            raise InvalidInputError(f"move_boundary must be True or False, got {move_boundary!r}")
        attempts = 3 if summary is None else 1
        while True:
            attempts -= 1
            session = await self.load(session_id)
            plan = plan_compaction(session_id, session.messages, keep_last, move_boundary=move_boundary)
            text = summary if summary is not None else local_summary(plan)
            event = Compacted(text, plan.removed_message_count)
            try:
                return await self.append(session_id, event, expected_version=session.version)
            except ConflictError:
                if attempts <= 0:
                    raise

    @on_store_loop
    async def compaction_due(self, session_id: str, policy: TokenThresholdPolicy | None = None) -> bool:
        """Whether the live context's recorded input tokens reached the policy's threshold (100,000)."""
        if policy is not None and not isinstance(policy, TokenThresholdPolicy):
            raise InvalidInputError(f"policy must be a TokenThresholdPolicy (or None), got {type(policy).__name__}")
        return (policy or TokenThresholdPolicy()).due(await self.load(session_id))


def _check_message(message: Message) -> None:
    """Re-check a Message before it is stored: it is frozen, but its ``blocks`` list is not.

    A block appended after the Message was built (a dict, a str) would encode but never
    decode, leaving an acknowledged record that makes its session unreadable.
    """
    if type(message.blocks) is list:
        for block in message.blocks:
            if type(block) not in _BLOCK_TYPES:
                break
        else:
            return
    message.__post_init__()  # the full check, which raises with the precise reason


def _checked_event_ids(session_id: str, event_ids: object, count: int, call: str = "append()") -> list[str | None]:
    """``event_ids`` as a list: one str (or None) per event, each a storable text, none repeated.

    A repeated id would be stored on two events, and every later append carrying it would
    be taken for a retry of the first and write nothing: refused, naming the id.
    """
    ids: list[Any] | None = None
    if not isinstance(event_ids, (str, bytes)):  # list("ab") would be two ids
        with contextlib.suppress(TypeError):
            ids = list(event_ids)  # type: ignore[call-overload]
    if ids is None or len(ids) != count or not all(i is None or isinstance(i, str) for i in ids):
        raise InvalidInputError(
            f"{call} to session {session_id!r}: event_ids must hold one str (or None) per event "
            f"({count} event(s)), got {_short_repr(event_ids)}; nothing was written"
        )
    first: dict[str, int] = {}
    for index, event_id in enumerate(ids):
        check_text(session_id, f"event_ids[{index}]", event_id, limit=MAX_EVENT_ID_CHARS)
        if event_id is None:
            continue
        earlier = first.setdefault(event_id, index)
        if earlier != index:
            raise InvalidInputError(
                f"{call} to session {session_id!r}: event id {event_id!r} is given twice (event_ids[{earlier}] "
                f"and event_ids[{index}]); an event id names one event of the session, so give each event its "
                "own id (or None); nothing was written"
            )
    return ids


def _short_repr(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _check_tag_arguments(session_id: str, tags: tuple[object, ...]) -> list[str]:
    """The tags of an add_tags/remove_tags call, checked and each once (``InvalidInputError`` naming the session)."""
    if not tags:
        raise InvalidInputError(f"session {session_id!r}: name at least one tag")
    if len(tags) == 1 and isinstance(tags[0], (list, tuple)):
        raise InvalidInputError(f"session {session_id!r}: pass tags as separate arguments: add_tags(sid, *tags)")
    wanted = list(dict.fromkeys(check_tag(tag, session_id) for tag in tags))
    if len(wanted) > MAX_TAGS:
        raise InvalidInputError(f"session {session_id!r}: at most {MAX_TAGS} tags at once, got {len(wanted)}")
    return wanted


def _check_values(session_id: str, events: Sequence[Event]) -> None:
    """Refuse, before anything is written, a value the stored JSON would not give back equal."""
    if len(events) == 1:
        check_event(session_id, "event", events[0])
    else:
        for index, event in enumerate(events):
            check_event(session_id, f"events[{index}]", event)


def _check_metadata(session_id: str, model: object, workspace_root: object, branch_name: object) -> None:
    """The same limits on every backend (PostgreSQL's text columns cannot hold NUL)."""
    check_text(session_id, "model", model, limit=MAX_METADATA_CHARS)
    check_text(session_id, "workspace_root", workspace_root, limit=MAX_METADATA_CHARS)
    check_text(session_id, "branch_name", branch_name, limit=MAX_METADATA_CHARS)


@contextlib.contextmanager
def _unnamed(call: str, generated_id: str | None) -> Iterator[None]:
    """Errors about a session that was never created say which call failed, not the id it would have had."""
    if generated_id is None:
        yield
        return
    try:
        yield
    except InvalidInputError as exc:
        text = str(exc).replace(f"session {generated_id!r}: ", "", 1)
        suffix = "" if text.endswith("nothing was written") else "; nothing was written"
        raise type(exc)(f"{call}: {text}{suffix}") from None


def _checked_append_options(
    session_id: str,
    events: tuple[Event, ...],
    expected_version: int | None,
    event_ids: Sequence[str | None] | None,
    timestamp_ms: int | None,
) -> list[str | None] | None:
    """``append``'s optional arguments checked (and ``session_id``); return ``event_ids`` as a list.

    Apart from ``append`` so that the common call, which passes none of them, tests one condition.
    """
    if expected_version is not None and (type(expected_version) is not int or expected_version < 0):
        raise InvalidInputError(f"expected_version must be a non-negative int, got {expected_version!r}")
    ids = None if event_ids is None else _checked_event_ids(session_id, event_ids, len(events))
    if timestamp_ms is not None and (type(timestamp_ms) is not int or not 0 <= timestamp_ms < 2**63):
        # Stored unchecked, a str or float would be acknowledged and then fail to decode on open.
        raise InvalidInputError(f"timestamp_ms must be an int in 0..2**63-1 (milliseconds), got {timestamp_ms!r}")
    if type(session_id) is not str:
        validate_session_id(session_id)
    return ids


def _wrong_event_message(session_id: str, event: object) -> str:
    where = f"append() to session {session_id!r}"
    if isinstance(event, SessionStarted):
        return f"{where}: SessionStarted is written by create_session() and fork(), not by append()"
    if isinstance(event, SessionDeleted):
        return f"{where}: use delete_session() to delete a session"
    if isinstance(event, (TitleChanged, TagsChanged, PinChanged)):
        return (
            f"{where}: labels are written by set_title(), add_tags(), remove_tags() and set_pinned(), not by append()"
        )
    return (
        f"append() to session {session_id!r} takes Message, PromptRecorded, Compacted or Custom "
        f"events; got {type(event).__name__}"
    )


def backend_for(
    target: str | os.PathLike[str] | Backend,
    *,
    segment_bytes: int = DEFAULT_SEGMENT_BYTES,
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    read_only: bool = False,
    file_system: FileSystem | None = None,
    file_mode: int = DEFAULT_FILE_MODE,
    dir_mode: int = DEFAULT_DIR_MODE,
) -> Backend:
    """The backend a target names: a directory, ``":memory:"``, a PostgreSQL URL or a Backend."""
    _check_modes(file_mode, dir_mode)
    custom_modes = (file_mode, dir_mode) != (DEFAULT_FILE_MODE, DEFAULT_DIR_MODE)
    if custom_modes and (isinstance(target, Backend) or target == ":memory:" or _is_url(target)):
        raise InvalidInputError("file_mode and dir_mode apply to a store directory only")
    if isinstance(target, Backend):
        return target
    text = user_path(target, what="a store path")  # "~/sessions" means the home directory's
    if text == ":memory:":
        return LocalBackend(
            "/:memory:", segment_bytes=segment_bytes, max_event_bytes=max_event_bytes, file_system=MemoryFileSystem()
        )
    if text.startswith(("postgresql://", "postgres://")):
        from ._backends.postgres import PostgresBackend

        return PostgresBackend(text, max_event_bytes=max_event_bytes, read_only=read_only)
    if custom_modes:
        file_system = file_system if file_system is not None else FileSystem()
        file_system.file_mode, file_system.dir_mode = file_mode, dir_mode
    return LocalBackend(
        text,
        segment_bytes=segment_bytes,
        max_event_bytes=max_event_bytes,
        read_only=read_only,
        file_system=file_system,
    )


def _is_url(target: object) -> bool:
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


def _check_modes(file_mode: object, dir_mode: object) -> None:
    """The store's own process must read and write its files and list its directory."""
    if type(file_mode) is not int or not 0 <= file_mode <= 0o777 or file_mode & 0o600 != 0o600:
        raise InvalidInputError(f"file_mode must be an int in 0o600..0o777 that keeps 0o600, got {file_mode!r}")
    if type(dir_mode) is not int or not 0 <= dir_mode <= 0o777 or dir_mode & 0o700 != 0o700:
        raise InvalidInputError(f"dir_mode must be an int in 0o700..0o777 that keeps 0o700, got {dir_mode!r}")


def _require_positive_option(name: str, value: object) -> None:
    if type(value) is not int or value < 1:
        raise InvalidInputError(f"{name} must be a positive int, got {value!r}")


def open_store(
    target: str | os.PathLike[str] | Backend,
    *,
    segment_bytes: int = DEFAULT_SEGMENT_BYTES,
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    max_pending: int = DEFAULT_MAX_PENDING,
    max_batch: int = DEFAULT_MAX_BATCH,
    max_events_per_append: int = DEFAULT_MAX_EVENTS_PER_APPEND,
    read_only: bool = False,
    file_system: FileSystem | None = None,
    redact: Callable[[Event], Event] | None = None,
    compaction: CompactionSettings | None = None,
    file_mode: int = DEFAULT_FILE_MODE,
    dir_mode: int = DEFAULT_DIR_MODE,
) -> Store:
    """A store over a directory (created if missing), ``":memory:"``, or a PostgreSQL URL.

    A new store is made only in a new or empty directory (hidden entries aside): a
    directory that holds other files and no store gives ``InvalidInputError``.

    ``read_only=True`` opens an existing store without changing it and refuses appends:
    a missing directory, or a PostgreSQL schema that does not exist (or is at an older
    schema version), raises ``SessionDBError`` ("no store at ...") instead of being created.

    Files are created ``0600`` and directories ``0700`` (owner only: transcripts hold
    secrets); ``file_mode`` / ``dir_mode`` widen that, e.g. ``0o640`` / ``0o750`` for a
    group of readers (the process umask still applies).

    ``max_pending`` bounds the appends waiting for the writer (more wait for room,
    first come first served); ``max_batch`` is how many appends one group commit
    (one write and one fdatasync) takes at most.

    ``redact`` (off by default) rewrites each appended event before it is encoded,
    for example ``sessiondb.redact_api_keys``; what it removes is never stored.

    Use it as ``async with open_store(...) as store:``; the writer runs inside
    the block and leaving it commits what is pending and closes the store.
    (``store = open_store(...); await store.start(); ...; await store.aclose()``
    works too, for servers whose lifespan is not one block.)
    """
    _require_positive_option("segment_bytes", segment_bytes)
    _require_positive_option("max_event_bytes", max_event_bytes)
    if type(read_only) is not bool:  # read_only="no" would be true, and refuse every append
        raise InvalidInputError(f"read_only must be True or False, got {read_only!r}")
    if file_system is not None and not isinstance(file_system, FileSystem):
        raise InvalidInputError(
            f"file_system must be a sessiondb FileSystem (or None), got {type(file_system).__name__}"
        )
    backend = backend_for(
        target,
        segment_bytes=segment_bytes,
        max_event_bytes=max_event_bytes,
        read_only=read_only,
        file_system=file_system,
        file_mode=file_mode,
        dir_mode=dir_mode,
    )
    return Store(
        backend,
        max_pending=max_pending,
        max_batch=max_batch,
        max_events_per_append=max_events_per_append,
        redact=redact,
        compaction=compaction,  # storage compaction settings (CompactionSettings); defaults when None
    )


__all__ = ["Store", "backend_for", "open_store", "recorded_events"]
