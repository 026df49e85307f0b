"""The backend boundary: what a storage backend must do, and the records it exchanges.

A backend stores batches of appends durably and reads them back. It assigns
versions and positions (the only place that can, for a shared database), checks
``expected_version`` and event ids per append, and keeps a ``SessionInfo`` per
session so that listing needs no replay. It never interprets conversation
semantics beyond that summary; projections live above it.
"""

from __future__ import annotations

import abc
from collections.abc import Collection, Sequence
from typing import Any

import msgspec

from .._counts import COUNTED, apply_count
from .._errors import InvalidInputError
from .._events import (
    Compacted,
    Custom,
    Fork,
    Message,
    PinChanged,
    RecordedEvent,
    SessionDeleted,
    SessionStarted,
    TagsChanged,
    TitleChanged,
    Usage,
)
from ._listing import SessionQuery, SortKey


class SessionInfo(msgspec.Struct, gc=False):
    """A session's summary, kept current by the backend: what ``list_sessions`` returns."""

    session_id: str
    created_at_ms: int = 0
    updated_at_ms: int = 0
    version: int = 0
    message_count: int = 0
    # Token totals as plain ints: summing Usage structs per append would cost an
    # allocation and a validation on the hot path. ``usage`` presents them.
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    model: str | None = None
    workspace_root: str | None = None
    fork: Fork | None = None
    deleted: bool = False
    # Whether the live context starts with a compaction summary message.
    compacted: bool = False
    # Labels (folded from SessionStarted.scope and the label events); defaults keep old summaries loading.
    scope: str | None = None
    title: str | None = None
    tags: tuple[str, ...] = ()  # sorted, each once
    pinned: bool = False
    # What the integrations keep in custom events (``_counts``): OpenAI Agents SDK live items,
    # LangGraph checkpoints written. Folded only from those events: the Message path is untouched.
    item_count: int = 0
    checkpoint_count: int = 0

    @property
    def usage(self) -> Usage:
        """Cumulative token usage of the session's history (a fork's inherited part included)."""
        return Usage(
            self.input_tokens, self.output_tokens, self.cache_creation_input_tokens, self.cache_read_input_tokens
        )

    @usage.setter
    def usage(self, usage: Usage) -> None:
        self.input_tokens = usage.input_tokens
        self.output_tokens = usage.output_tokens
        self.cache_creation_input_tokens = usage.cache_creation_input_tokens
        self.cache_read_input_tokens = usage.cache_read_input_tokens

    def add_usage(self, usage: Usage) -> None:
        self.input_tokens += usage.input_tokens
        self.output_tokens += usage.output_tokens
        self.cache_creation_input_tokens += usage.cache_creation_input_tokens
        self.cache_read_input_tokens += usage.cache_read_input_tokens

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens

    @property
    def parent_session_id(self) -> str | None:
        return self.fork.parent_session_id if self.fork is not None else None

    @property
    def branch_name(self) -> str | None:
        return self.fork.branch_name if self.fork is not None else None

    def copy(self) -> SessionInfo:
        return msgspec.structs.replace(self)


class SessionPage(msgspec.Struct, gc=False):
    """One page of ``Store.page_sessions``: the sessions, and the cursor of the next page (None: the last)."""

    sessions: list[SessionInfo]
    next_cursor: str | None = None


def apply_to_info(info: SessionInfo, event: Any, version: int, timestamp_ms: int) -> None:
    """Fold one event into a summary.

    ``event`` is a real event struct or a lightweight view decoded by a backend's
    recovery scan; both carry the attributes read here, so the same fold serves both.
    """
    info.version = version
    info.updated_at_ms = timestamp_ms
    kind = _kind(event)
    if kind == "message":
        info.message_count += 1
        usage = event.usage
        if usage is not None:
            info.add_usage(usage)
    elif kind == "compaction":
        if event.rewrite_context:
            # One summary message replaces the removed ones and any earlier summary.
            earlier_summary = 1 if info.compacted else 0
            remaining = info.message_count - earlier_summary - event.removed_message_count
            info.message_count = 1 + max(0, remaining)
            info.compacted = True
    elif kind == "session_started":
        info.created_at_ms = event.created_at_ms
        if event.model is not None:
            info.model = event.model
        if event.workspace_root is not None:
            info.workspace_root = event.workspace_root
        if event.fork is not None:
            info.fork = event.fork
        inherited = event.inherited
        if inherited is not None:
            info.message_count = inherited.message_count
            info.usage = inherited.usage
            info.compacted = inherited.compacted
            info.item_count = inherited.item_count
            info.checkpoint_count = inherited.checkpoint_count
        if event.scope is not None:
            info.scope = event.scope
    elif kind == "custom":
        if event.name in COUNTED:
            apply_count(info, event.name, event.data)
    elif kind == "session_deleted":
        info.deleted = True
    elif kind in _LABEL_KINDS:
        apply_label(info, kind, event)


_LABEL_KINDS = frozenset(("title", "tags", "pin"))


def apply_label(info: SessionInfo, kind: str, event: Any) -> None:
    """Fold a label event (``kind`` is its tag) into a summary: the title, the sorted tags, the pin."""
    if kind == "title":
        info.title = event.title
    elif kind == "tags":
        tags = set(info.tags)
        if event.removed:
            tags.difference_update(event.removed)
        if event.added:
            tags.update(event.added)
        info.tags = tuple(sorted(tags))
    elif kind == "pin":
        info.pinned = bool(event.pinned)


def _kind(event: Any) -> str:
    kind = getattr(event, "type", None)
    if kind is not None:
        return str(kind)
    return _TAGS.get(type(event), "")


_TAGS: dict[type, str] = {
    Message: "message",
    Compacted: "compaction",
    SessionStarted: "session_started",
    SessionDeleted: "session_deleted",
    TitleChanged: "title",
    TagsChanged: "tags",
    PinChanged: "pin",
    Custom: "custom",
}


class AppendRequest(msgspec.Struct):
    """One append: events for one session, admitted as a whole or not at all.

    The store builds it (events validated); the backend encodes it and fills
    ``version`` (the session's version after it) and ``first_position``, or sets
    ``error`` to the per-append failure (a conflict, a missing session ...).
    A msgspec struct rather than a class with ``__slots__``: one is built per
    append, and msgspec builds it (defaults included) in a quarter of the time.
    Build it with keywords after ``events``; the fields after ``creates`` are results.
    """

    session_id: str
    events: Sequence[Any]
    expected_version: int | None = None
    event_ids: Sequence[str | None] | None = None
    timestamp_ms: int = 0
    creates: bool = False
    # Set by the store on creations and on appends holding a Compacted that rewrites the context:
    # a backend plans such a request with every check (a compaction's removed_message_count against
    # the live messages, atomically with the commit), never on its one-event fast path. Plain
    # appends leave it False, so the fast path tests one field for all of them.
    full_check: bool = False
    version: int = 0
    first_position: int = 0
    error: BaseException | None = None
    duplicate: bool = False
    recorded: list[RecordedEvent] | None = None


def compaction_error(
    session_id: str, message_count: int, compacted: bool, events: Sequence[Any]
) -> InvalidInputError | None:
    """The error for ``events`` when a ``Compacted`` among them removes more live messages than there are.

    ``message_count`` and ``compacted`` are the session's summary before ``events``
    (``SessionInfo``'s). Folded, such a compaction would silently empty the live context
    down to its summary. An earlier summary message is not removable, as upstream counts.
    """
    live = message_count - (1 if compacted else 0)
    for index, event in enumerate(events):
        if type(event) is Message:
            live += 1
        elif type(event) is Compacted and event.rewrite_context:
            if event.removed_message_count > live:
                where = f" before events[{index}]" if len(events) > 1 else ""
                return InvalidInputError(
                    f"session {session_id!r} has {live} live message(s){where} (an earlier compaction's "
                    f"summary not counted), so a compaction cannot remove {event.removed_message_count}; "
                    "give at most that many (load(session_id).messages is the live context); nothing was written"
                )
            live -= event.removed_message_count
    return None


def recorded_events(request: AppendRequest) -> list[RecordedEvent]:
    """The RecordedEvents of a committed request (built once, on first use)."""
    if request.recorded is None:
        first_version = request.version - len(request.events) + 1
        ids = request.event_ids
        request.recorded = [
            RecordedEvent(
                request.session_id,
                first_version + index,
                request.first_position + index,
                request.timestamp_ms,
                event,
                ids[index] if ids else None,
            )
            for index, event in enumerate(request.events)
        ]
    return request.recorded


# Why a backend instance is not opened again (``Store.start`` says it first, before anything is opened).
REOPENED = (
    "this {name} serves, or has served, another store: a backend instance opens once, for one store. "
    "Make a new one for each open_store(...) (or pass open_store the path or URL)"
)


class Backend(abc.ABC):
    """Durable storage of session event streams. One instance per open store."""

    # Set by ``Store.start`` before it opens the backend, never unset after a successful open: an
    # instance serves one store, once (a closed one's state is spent). Reuse is refused at start.
    _claimed: bool = False

    @abc.abstractmethod
    async def open(self) -> None:
        """Acquire resources and recover; raise ``StoreLockedError``/``CorruptionError``."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Release everything; idempotent."""

    @abc.abstractmethod
    async def commit(self, batch: Sequence[AppendRequest]) -> None:
        """Store every admissible request of ``batch`` durably, in order, atomically.

        On return each request has ``version``/``first_position`` and ``recorded``
        set, or ``error``. Raising means the batch as a whole may not be durable:
        the store treats that as fatal (``StoreBrokenError``).
        """

    @abc.abstractmethod
    async def info(self, session_id: str) -> SessionInfo | None:
        """The summary of ``session_id`` (deleted ones included), or None."""

    @abc.abstractmethod
    async def list_sessions(self) -> list[SessionInfo]:
        """Summaries of every session not deleted, in no particular order."""

    @abc.abstractmethod
    async def page_sessions(
        self, query: SessionQuery, limit: int | None, after: SortKey | None = None
    ) -> list[SessionInfo]:
        """Up to ``limit`` (None: all) live sessions matching ``query``, in its order, past the key ``after``.

        The summaries are copies. ``after`` is the ``query.sort_key`` of the last
        session of the previous page (keyset paging): the result starts strictly after it.
        Served from an index (scope, tag), not from a scan of every session where a
        filter names a scope or a tag.
        """

    @abc.abstractmethod
    async def read_session(self, session_id: str, after_version: int, up_to_version: int | None) -> list[RecordedEvent]:
        """The events stored under ``session_id`` itself (not a fork's parent) in the range."""

    @abc.abstractmethod
    async def read_all(self, after_position: int, limit: int) -> list[RecordedEvent]:
        """Up to ``limit`` events of every session with position > ``after_position``, in order."""

    @property
    @abc.abstractmethod
    def last_position(self) -> int:
        """The position of the newest durable event this process knows of."""

    def statistics(self) -> dict[str, Any]:
        """Backend-specific figures for ``Store.statistics()``."""
        return {}

    # ------------------------------------------------------------ other processes
    # A backend whose log other processes (or hosts) append to says so, so that
    # subscribers order deliveries by reading the log rather than this process's batches.

    @property
    def has_other_writers(self) -> bool:
        """True when events may be appended by other processes too (so far as this one knows)."""
        return False

    async def resync(self) -> bool:
        """Relearn what another process's compaction changed (after ``HistoryUnavailableError``); True if any."""
        return False

    @property
    def view_generation(self) -> int:
        """Grows each time this process relearns what others' compaction changed (``resync``, a rebuilt index).

        A read that failed on removed history may succeed once it grew, even when the read
        itself is what made this process relearn (``Store.load`` retries on it).
        """
        return 0

    async def begin_maintenance(self) -> bool:
        """Take the right to run a compaction pass now; False when another process is running one."""
        return True

    def end_maintenance(self) -> None:
        """Give back what ``begin_maintenance`` took."""
        return None

    def abandon(self) -> None:
        """In a child made by ``fork()``: drop resources without closing what the parent still uses."""
        return None

    def release_orphaned(self) -> None:
        """The event loop the backend was opened on is closed: release locks and descriptors now, on this thread.

        Its tasks ended with that loop, so nothing is in flight; nothing pending can be
        acknowledged any more. Idempotent, and a no-op after ``aclose``.
        """
        return None

    # ------------------------------------------------------------ snapshots (storage compaction)
    # Optional: a backend that keeps no snapshots inherits these defaults, and the
    # store then replays every load from the log, which is always correct.

    @property
    def supports_snapshots(self) -> bool:
        """Whether ``write_snapshot`` stores anything (the compactor skips backends that do not)."""
        return False

    async def write_snapshot(
        self, session_id: str, version: int, data: bytes, holds: frozenset[str] | None = None
    ) -> bool:
        """Durably store ``data``, an encoded state of ``session_id`` at ``version``; return True if stored.

        Must be atomic (a reader sees the old snapshot or the new one, never a
        mix) and may replace an older snapshot of the session. ``holds``: the
        names of the projection states in ``data`` (retention relies only on
        snapshots that hold every recorded projection).
        """
        return False

    def record_projections(self, names: Collection[str]) -> list[str]:
        """Durably record that these snapshotted projections exist; return the ones newly recorded.

        A backend whose retention can remove a live session's history must keep
        that history until a snapshot holds every recorded projection's state. One
        that never removes it (the default, PostgreSQL) needs no record.
        """
        return []

    def recorded_projections(self) -> frozenset[str]:
        """The snapshotted projections recorded in this store (see ``record_projections``)."""
        return frozenset()

    def forget_projection(self, name: str) -> bool:
        """Remove the record of projection ``name``; True if there was one."""
        return False

    async def read_snapshot(self, session_id: str, max_version: int) -> tuple[int, bytes] | None:
        """The newest stored snapshot of ``session_id`` at a version <= ``max_version``: (version, data).

        None when there is none, or when the stored one fails its checksum (a
        damaged snapshot is never trusted: the caller replays the log instead).
        """
        return None

    def snapshot_versions(self) -> dict[str, tuple[int, int]]:
        """session id -> (version, stored bytes) of the newest snapshot of each session that has one."""
        return {}

    def snapshot_candidates(self, min_events: int, min_bytes: int, state_ratio: float) -> list[tuple[str, int]]:
        """(session id, tail bytes) of sessions whose tail since their newest snapshot is worth a new one.

        The compactor's thresholds: ``min_events`` events or ``min_bytes`` bytes, and
        at least ``state_ratio`` times the size of the current snapshot.
        """
        return []

    def retention_needs(self, keep_segments: int, keep_seconds: float | None) -> dict[str, int]:
        """session id -> the version a snapshot must be written at before retention may remove history."""
        return {}

    async def compact_storage(self, settings: Any) -> dict[str, Any]:
        """Backend-side work of one compaction pass (checkpoint, retention); returns counters."""
        return {}

    async def seal_active_segment(self) -> bool:
        """Seal the log's active part so retention may remove it too (``compact(purge=True)``); True if sealed.

        A backend without segments has nothing to seal.
        """
        return False
