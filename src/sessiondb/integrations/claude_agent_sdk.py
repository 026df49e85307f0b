"""sessiondb as the ``SessionStore`` of the Claude Agent SDK: ``SessionDBSessionStore``.

::

    from claude_agent_sdk import ClaudeAgentOptions, query
    from sessiondb.integrations.claude_agent_sdk import SessionDBSessionStore

    async with sessiondb.open_store("sessions/") as store:
        options = ClaudeAgentOptions(session_store=SessionDBSessionStore(store))
        async for message in query(prompt="hello", options=options):
            ...

Each SDK key (project, session, optional subpath) is one sessiondb session, its id
given by ``_claude_keys`` (``cc~<project>~<session>[~<subpath>]``, escaped). One
``append`` call is ONE atomic sessiondb append holding, per entry, a
``Custom("claude_agent_sdk.entry", entry)`` (event id: the entry's ``uuid``, so a
retried batch is stored once) followed by the ``Message`` the entry projects to (if
any), and, for a main transcript, a ``Custom("claude_agent_sdk.summary", summary)``
with the SDK's ``fold_session_summary`` of the batch. The read-fold-write is
serialized per key: in the process by a lock, across processes by
``expected_version`` (a conflict re-reads and folds again). ``mtime`` is the
sessiondb commit timestamp (``SessionInfo.updated_at_ms``) for both listings.

Errors: ``InvalidInputError`` naming the key for a bad key or entry (nothing is
written); a refused append (too large, …) is re-raised naming the key.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections import OrderedDict
from typing import Any, cast

from claude_agent_sdk import fold_session_summary
from claude_agent_sdk.types import (
    SessionKey,
    SessionListSubkeysKey,
    SessionStore,
    SessionStoreEntry,
    SessionStoreListEntry,
    SessionSummaryEntry,
)

from .._backends._base import SessionInfo
from .._errors import (
    ConflictError,
    HistoryUnavailableError,
    InvalidInputError,
    SessionDBError,
    SessionExistsError,
    SessionNotFoundError,
)
from .._events import Custom, Event, SessionStarted
from .._ids import now_ms
from .._store import Store
from ._claude_entries import (
    ENTRY,
    LINE,
    SUMMARY,
    TRANSCRIPT_PROJECTION,
    TranscriptFold,
    TranscriptState,
    check_entry,
    decode_entry,
)
from ._claude_keys import (
    DecodedKey,
    check_key,
    decode_session_id,
    describe_key,
    encode_key,
    generation_id,
    project_part,
    project_prefix,
    project_scope,
)

__all__ = ["ENTRY", "LINE", "SUMMARY", "SessionDBSessionStore"]

# Entries re-projected from a transcript's end to rebuild its state (response usage, tool names).
_TAIL_ENTRIES = 64
_STATES_KEPT = 4_096
# Each conflict means another append to the key committed: progress is made, so this only
# bounds a pathological storm.
_MAX_ATTEMPTS = 1_000
# Sessions per page when listing a project from the scope index.
_LIST_PAGE = 1_000


class SessionDBSessionStore(SessionStore):
    """A durable ``SessionStore`` over an open sessiondb ``Store`` (directory, ``":memory:"`` or PostgreSQL).

    Implements every method of the protocol: ``append``, ``load``,
    ``list_sessions``, ``list_session_summaries``, ``delete``, ``list_subkeys``.
    Several instances, in one process or many, may share one store.
    """

    def __init__(self, store: Store) -> None:
        if not isinstance(store, Store):
            raise InvalidInputError(f"SessionDBSessionStore needs an open sessiondb Store, got {type(store).__name__}")
        self.store = store
        existing = store._projections.get(TRANSCRIPT_PROJECTION.name)
        if existing is None:
            store.register_projection(TRANSCRIPT_PROJECTION)
        elif existing is not TRANSCRIPT_PROJECTION:
            raise InvalidInputError(
                f"another projection is registered as {TRANSCRIPT_PROJECTION.name!r} on this store; "
                "SessionDBSessionStore needs that name for its own"
            )
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        # first-generation id -> the live session id and its transcript state (valid at state.version)
        self._states: OrderedDict[str, TranscriptState] = OrderedDict()

    # ------------------------------------------------------------------ writing

    async def append(self, key: SessionKey, entries: list[SessionStoreEntry]) -> None:
        """Append ``entries`` to ``key``'s transcript atomically (an empty list writes nothing)."""
        base = encode_key(key)
        if not isinstance(entries, list):
            raise InvalidInputError(f"{describe_key(key)}: entries must be a list, got {type(entries).__name__}")
        for index, entry in enumerate(entries):
            check_entry(key, index, entry)
        batch = _without_repeated_uuids(cast("list[dict[str, Any]]", entries))
        if not batch:
            self.store._check_readable()  # nothing to write, but a closed store says so, as every call does
            return
        lock = self._locks.get(base)
        if lock is None:
            lock = self._locks[base] = asyncio.Lock()
        async with lock:
            await self._append_locked(key, base, batch)

    async def _append_locked(
        self, key: SessionKey, base: str, batch: list[dict[str, Any]], lines: dict[int, str] | None = None
    ) -> None:
        """The append under the key's lock. ``lines``: id(entry) -> its source line, kept when it is not
        how the entry serializes back (importers that promise byte-exact export)."""
        main = key.get("subpath") is None
        conflict: SessionDBError | None = None
        for _ in range(_MAX_ATTEMPTS):
            state = await self._state(base, main)
            # Projected in place: any outcome but success drops the cached state (it is rebuilt
            # from the store), so a failed attempt leaves nothing of itself behind.
            if state is not None:
                work, session_id = state, state.session_id
            else:
                session_id = await self._new_session_id(base)
                work = TranscriptState(session_id)
            expected = work.version
            events: list[Event] = []
            ids: list[str | None] = []
            try:  # an event the store's own validation refuses (Custom data limits …) fails the call
                for entry in batch:
                    events.append(Custom(ENTRY, entry))
                    ids.append(entry.get("uuid"))
                    if lines is not None and id(entry) in lines:
                        events.append(Custom(LINE, lines[id(entry)]))
                        ids.append(None)
                    message = work.project(entry)
                    if message is not None:
                        events.append(message)
                        ids.append(None)
                if main:
                    previous = cast("SessionSummaryEntry | None", work.summary)
                    folded = fold_session_summary(previous, key, cast("list[SessionStoreEntry]", batch))
                    work.summary = cast("dict[str, Any]", folded)
                    events.append(Custom(SUMMARY, dict(folded)))
                    ids.append(None)
            except InvalidInputError as exc:
                self._states.pop(base, None)
                raise InvalidInputError(f"{describe_key(key)}: {exc}; nothing was written") from exc
            try:
                if state is None:
                    version = await self.store._import_session(
                        session_id,
                        _started(batch, project_scope(key["project_key"])),
                        events,
                        timestamp_ms=now_ms(),
                        event_ids=ids,
                    )
                else:
                    version = await self.store.append(session_id, *events, expected_version=expected, event_ids=ids)
            except (ConflictError, SessionExistsError, SessionNotFoundError) as exc:
                self._states.pop(base, None)  # another writer got there first: re-read and fold again
                conflict = exc
                continue
            except InvalidInputError as exc:
                self._states.pop(base, None)
                if state is not None and any(entry.get("uuid") is not None for entry in batch):
                    # Refused because some uuids are stored already (by an earlier call that also
                    # carried them)? Then keep only the new entries: a uuid is an upsert key.
                    unstored = await self._unstored(session_id, batch)
                    if len(unstored) < len(batch):
                        if not unstored:
                            return
                        batch = unstored
                        continue
                raise type(exc)(f"{describe_key(key)}: {exc}") from exc
            except BaseException:  # cancelled too: whether the append landed is for the next call to find out
                self._states.pop(base, None)
                raise
            if version != (expected if state is not None else 1) + len(events):
                # A retry of a batch already stored: the state may be stale, read it again next time.
                self._states.pop(base, None)
                return
            work.version = version
            self._remember(base, work)
            return
        assert conflict is not None
        raise conflict  # pragma: no cover - a pathological storm of concurrent writers

    async def _new_session_id(self, base: str) -> str:
        """The id a key gets when it has no live session: its first generation after any deleted ones."""
        generation = 1
        while True:
            session_id = generation_id(base, generation)
            info = await self.store._lookup(session_id)
            if info is None:
                return session_id
            generation += 1

    async def _live(self, base: str) -> SessionInfo | None:
        """The live session of the key whose first-generation id is ``base``, or None."""
        generation = 1
        while True:
            info = await self.store._lookup(generation_id(base, generation))
            if info is None:
                return None
            if not info.deleted:
                return info
            generation += 1

    async def _state(self, base: str, main: bool) -> TranscriptState | None:
        """The key's transcript state (cached, or rebuilt from its projection); None if it has no session."""
        cached = self._states.get(base)
        if cached is not None:
            self._states.move_to_end(base)
            return cached
        info = await self._live(base)
        if info is None:
            return None
        fold = await self._fold(info.session_id)
        state = TranscriptState(info.session_id, fold.version)
        for raw in fold.entries[-_TAIL_ENTRIES:]:
            state.project(decode_entry(raw))
        state.summary = fold.summary if main else None
        self._remember(base, state)
        return state

    async def _fold(self, session_id: str) -> TranscriptFold:
        """The transcript projection of a session (from the store's cache, its snapshot and log tail)."""
        return cast(TranscriptFold, await self.store.project(session_id, TRANSCRIPT_PROJECTION))

    def _remember(self, base: str, state: TranscriptState) -> None:
        self._states[base] = state
        self._states.move_to_end(base)
        if len(self._states) > _STATES_KEPT:
            self._states.popitem(last=False)

    async def _unstored(self, session_id: str, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        stored = {decode_entry(raw).get("uuid") for raw in (await self._fold(session_id)).entries}
        return [entry for entry in batch if entry.get("uuid") not in stored]

    # ------------------------------------------------------------------ reading

    async def session_id_for(self, key: SessionKey) -> str | None:
        """The sessiondb session id holding ``key``'s transcript now (for ``Store.load``, ``fork`` …), or None."""
        info = await self._live(_readable_key("session_id_for", key))
        return info.session_id if info is not None else None

    async def load(self, key: SessionKey) -> list[SessionStoreEntry] | None:
        """The key's entries in append order (deep-equal to what was appended), or None if never written."""
        info = await self._live(_readable_key("load", key))
        if info is None:
            return None
        return [cast(SessionStoreEntry, decode_entry(raw)) for raw in (await self._fold(info.session_id)).entries]

    async def _project_sessions(self, project_key: str) -> list[tuple[DecodedKey, SessionInfo]]:
        """Every live session of ``project_key`` (main transcripts and subkeys), from the store's scope index.

        Paged, newest-updated first; sessions of the scope that this mapping did not make
        (an application's own, given the same scope) are left out.
        """
        prefix = project_prefix(project_key)
        scope = project_scope(project_key)
        found = []
        cursor = None
        while True:
            page = await self.store.page_sessions(scope=scope, limit=_LIST_PAGE, cursor=cursor)
            for info in page.sessions:
                if info.session_id.startswith(prefix):
                    decoded = decode_session_id(info.session_id)
                    if decoded is not None and decoded.project_key in (project_key, project_part(project_key)):
                        found.append((decoded, info))
            if page.next_cursor is None:
                return found
            cursor = page.next_cursor

    async def list_sessions(self, project_key: str) -> list[SessionStoreListEntry]:
        """The project's main transcripts: ``session_id`` and ``mtime`` (commit time, epoch ms).

        A ``project_key`` no key can have (``""``) lists nothing, as the SDK's
        ``InMemorySessionStore`` does; one that is not a str is ``InvalidInputError``.
        """
        if not _listable_project("list_sessions", project_key):
            return []
        return [
            {"session_id": decoded.session_id, "mtime": info.updated_at_ms}
            for decoded, info in await self._project_sessions(project_key)
            if decoded.subpath is None
        ]

    async def list_session_summaries(self, project_key: str) -> list[SessionSummaryEntry]:
        """The SDK summary stored with each main transcript's last append; ``mtime`` as in ``list_sessions``."""
        summaries: list[SessionSummaryEntry] = []
        if not _listable_project("list_session_summaries", project_key):
            return summaries
        for decoded, info in await self._project_sessions(project_key):
            if decoded.subpath is not None:
                continue
            # The adapter appends the summary last: one event to read, unless retention removed it
            # or something else appended after it (then the projection has it).
            event: Any = None
            with contextlib.suppress(HistoryUnavailableError):
                last = [r async for r in self.store.read(info.session_id, after=info.version - 1)]
                event = last[-1].event if last else None
            if type(event) is Custom and event.name == SUMMARY:
                summary = event.data
            else:
                summary = (await self._fold(info.session_id)).summary
            if summary is not None:
                summaries.append(
                    {"session_id": decoded.session_id, "mtime": info.updated_at_ms, "data": summary["data"]}
                )
        return summaries

    async def list_subkeys(self, key: SessionListSubkeysKey) -> list[str]:
        """The subpaths written under a main key (subagent transcripts), sorted."""
        _readable_key("list_subkeys", key, allow_subpath=False)
        session_id = key["session_id"]
        return sorted(
            {
                decoded.subpath
                for decoded, _info in await self._project_sessions(key["project_key"])
                if decoded.session_id == session_id and decoded.subpath is not None
            }
        )

    # ------------------------------------------------------------------ deleting

    async def delete(self, key: SessionKey) -> None:
        """Delete a key; a main key takes its subkeys with it. A key never written is a no-op."""
        base = encode_key(key)
        if key.get("subpath") is None:
            # Subkeys first: an interrupted delete leaves the main transcript, and a repeat finishes it.
            for decoded, info in await self._project_sessions(key["project_key"]):
                if decoded.session_id == key["session_id"] and decoded.subpath is not None:
                    await self._delete_session(info.session_id)
                    self._states.pop(encode_key({**key, "subpath": decoded.subpath}), None)
        live = await self._live(base)
        self._states.pop(base, None)
        if live is not None:
            await self._delete_session(live.session_id)

    async def _delete_session(self, session_id: str) -> None:
        with contextlib.suppress(SessionNotFoundError):  # deleted meanwhile by another writer: as asked
            await self.store.delete_session(session_id)


def _readable_key(method: str, key: object, *, allow_subpath: bool = True) -> str:
    """The key's first-generation id for a read or a delete, or ``InvalidInputError`` naming the method and
    the key (a read writes nothing, so the message does not say "nothing was written")."""
    try:
        return encode_key(key, allow_subpath=allow_subpath)
    except InvalidInputError as exc:
        raise type(exc)(f"SessionDBSessionStore.{method}: {str(exc).removesuffix('; nothing was written')}") from None


def _listable_project(method: str, project_key: object) -> bool:
    """Whether sessions of ``project_key`` could exist; ``InvalidInputError`` for a project key that is not a str."""
    if type(project_key) is not str:
        raise InvalidInputError(
            f"SessionDBSessionStore.{method}: project_key must be a str, got {type(project_key).__name__}"
        )
    try:
        check_key({"project_key": project_key, "session_id": "_"})  # the rules of a key's project part only
    except InvalidInputError:
        return False
    return True


def _without_repeated_uuids(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The entries with any repeat of a uuid earlier in the same batch left out (a uuid is stored once)."""
    seen: set[str] = set()
    kept = []
    for entry in entries:
        uuid = entry.get("uuid")
        if uuid is not None:
            if uuid in seen:
                continue
            seen.add(uuid)
        kept.append(entry)
    return kept


def _started(batch: list[dict[str, Any]], scope: str) -> SessionStarted:
    """A new transcript's first event: its project's scope, and the model and working directory of its first
    entries, when given."""
    model = workspace = None
    for entry in batch:
        message = entry.get("message")
        if model is None and isinstance(message, dict) and isinstance(message.get("model"), str):
            model = message["model"]
        if workspace is None and isinstance(entry.get("cwd"), str) and entry["cwd"]:
            workspace = entry["cwd"]
    return SessionStarted(now_ms(), model, workspace, scope=scope)
