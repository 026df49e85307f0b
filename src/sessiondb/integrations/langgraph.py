"""sessiondb as a LangGraph checkpointer: ``SessionDBSaver``, a ``BaseCheckpointSaver`` over any store.

::

    from langgraph.graph import StateGraph
    from sessiondb import open_store
    from sessiondb.integrations.langgraph import SessionDBSaver

    async with open_store("sessions/") as store:
        graph = builder.compile(checkpointer=SessionDBSaver(store))
        await graph.ainvoke(inputs, {"configurable": {"thread_id": "t-1"}})

Each thread is one sessiondb session (``_langgraph_state``: ids, events, the fold);
``aput`` and ``aput_writes`` are one durable append each, group-committed with every
other thread's; reads come from the thread's projection, kept current in memory and
snapshotted by the compactor. The only module that imports LangGraph (docs/langgraph.md).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from typing import Any, TypeVar, cast

import msgspec
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    PendingWrite,
    get_checkpoint_id,
    get_checkpoint_metadata,
    writes_sort_key,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from .._errors import (
    InvalidInputError,
    SessionDBError,
    SessionExistsError,
    SessionNotFoundError,
)
from .._events import Custom, SessionStarted
from .._ids import now_ms
from .._store import Store
from ._langgraph_state import (
    CHECKPOINT,
    PREFIX,
    PROJECTION,
    SCOPE,
    UNINDEXED,
    WRITES,
    Found,
    Namespace,
    ThreadState,
    generation_id,
    pack,
    register,
    thread_of,
    thread_session_id,
    tombstones,
    typed,
    value_key,
)

__all__ = ["SessionDBSaver"]

_T = TypeVar("_T")
_blob_key = msgspec.json.Encoder().encode
_THREADS_KEPT = 65_536
# Each retry means another writer created or deleted the thread's session meanwhile.
_MAX_ATTEMPTS = 100


class SessionDBSaver(BaseCheckpointSaver[str]):
    """A durable LangGraph checkpointer over an open sessiondb ``Store`` (directory, ``":memory:"`` or PostgreSQL).

    Implements every method of ``BaseCheckpointSaver`` that LangGraph's conformance
    suite knows: ``aput``, ``aput_writes``, ``aget_tuple``, ``alist`` (``filter`` on
    metadata, ``before``, ``limit``, across threads with ``config=None``),
    ``adelete_thread``, ``adelete_for_runs``, ``acopy_thread`` (a sessiondb fork:
    nothing copied), ``aprune`` (``"keep_latest"`` or ``"delete"``), and their sync
    twins. An ``aput`` or ``aput_writes`` that returned is on disk (fdatasync).

    Values go through ``serde`` (default LangGraph's ``JsonPlusSerializer``); channel
    versions come from ``get_next_version`` (strings ``"<32-digit counter>.<random>"``
    as LangGraph's own savers make them; override it to change them).

    The sync methods (``graph.invoke``/``graph.stream``) hand each call to the store's
    event loop and block the calling thread until it is done: call them from another
    thread than the store's loop (``await asyncio.to_thread(graph.invoke, ...)``).
    On the loop's own thread they raise ``StoreLoopError`` (blocking there would
    deadlock): use ``ainvoke``/``astream``.

    Errors: ``InvalidInputError`` for a config without a ``thread_id`` or a thread id
    too long for a session id; the store's errors (``StoreClosedError``, ...) as raised.
    """

    def __init__(self, store: Store, *, serde: SerializerProtocol | None = None) -> None:
        if not isinstance(store, Store):
            raise InvalidInputError(f"SessionDBSaver needs an open sessiondb Store, got {type(store).__name__}")
        super().__init__(serde=serde)
        self.store = store
        register(store)
        # thread id -> its live session id (a deleted one is noticed on the next append or read)
        self._sessions: dict[str, str] = {}

    # ------------------------------------------------------------------ threads and sessions

    async def _target(self, thread_id: str) -> tuple[str, bool]:
        """(session id, exists): the thread's live session, or the id its next generation gets.

        One walk over the generations: a live one found on the way is used, so a session
        another writer created meanwhile is appended to, never passed over.
        """
        cached = self._sessions.get(thread_id)
        if cached is not None:
            return cached, True
        base = thread_session_id(thread_id)
        generation = 1
        while True:
            session_id = generation_id(base, generation)
            info = await self.store._lookup(session_id)  # through the Store: not started/closed raise
            if info is None:
                return session_id, False
            if not info.deleted:
                if len(self._sessions) >= _THREADS_KEPT:
                    self._sessions.clear()
                self._sessions[thread_id] = session_id
                return session_id, True
            generation += 1

    async def _live_session(self, thread_id: str) -> str | None:
        """The session id of the thread's live generation, or None if it has none."""
        session_id, exists = await self._target(thread_id)
        return session_id if exists else None

    async def _append(self, thread_id: str, *events: Custom) -> None:
        """Append to the thread's session, creating it (its next generation) if it has none."""
        store = self.store
        for _ in range(_MAX_ATTEMPTS):
            session_id, exists = await self._target(thread_id)
            try:
                if exists:
                    await store.append(session_id, *events)
                else:
                    now = now_ms()
                    await store._import_session(session_id, SessionStarted(now, scope=SCOPE), events, timestamp_ms=now)
                return
            except (SessionNotFoundError, SessionExistsError):
                # Deleted meanwhile (SessionDeletedError is both), or created first by another writer:
                # look again; a deleted thread continues in its next generation.
                self._sessions.pop(thread_id, None)
        raise SessionDBError(
            f"LangGraph thread {thread_id!r}: its session was created or deleted by other writers "
            f"{_MAX_ATTEMPTS} times while this call tried to append; nothing was written, try again"
        )

    async def _state(self, thread_id: str) -> ThreadState | None:
        for _ in range(_MAX_ATTEMPTS):
            session_id = await self._live_session(thread_id)
            if session_id is None:
                return None
            try:
                return cast(ThreadState, await self.store.project(session_id, PROJECTION))
            except SessionNotFoundError:  # deleted (SessionDeletedError) since we looked it up
                self._sessions.pop(thread_id, None)
        return None

    async def _threads(self) -> list[str]:
        """Every thread with a live session, in no particular order."""
        threads = []
        for info in await self.store.list_sessions(scope=SCOPE):
            if info.session_id.startswith(PREFIX):
                thread_id = thread_of(info.session_id)
                if thread_id is not None:
                    threads.append(thread_id)
        return threads

    # ------------------------------------------------------------------ writing

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store a checkpoint (durable on return); its channel values are stored for ``new_versions`` only."""
        configurable = _configurable(config)
        thread_id = configurable["thread_id"]
        namespace = configurable.get("checkpoint_ns", "") or ""
        dumps = self.serde.dumps_typed
        saved = dict(checkpoint)
        values: dict[str, Any] = saved.pop("channel_values", {})  # type: ignore[assignment]
        versions = cast("ChannelVersions", saved["channel_versions"])
        refs = {channel: _blob_key([channel, version]).decode() for channel, version in versions.items()}
        blobs = []
        for channel, version in new_versions.items():
            key = refs.get(channel) if versions.get(channel) == version else None
            if key is None:  # written but not read by this checkpoint: it still names the blob
                key = refs[f"\0{channel}"] = _blob_key([channel, version]).decode()
            if channel in values:
                kind, data = dumps(values[channel])
                blobs.append((key, kind, data))
            else:
                blobs.append((key, "empty", b""))
        full_metadata = get_checkpoint_metadata(config, metadata)
        indexed: list[str] = []
        for key, value in full_metadata.items():
            indexed += (key, value_key(value))
        kind, data = dumps(saved)
        meta_kind, meta_data = dumps(full_metadata)
        packed = pack((kind, data, meta_kind, meta_data, indexed, blobs, sorted(set(refs.values()))))
        parent = configurable.get("checkpoint_id")
        event = Custom(CHECKPOINT, {"ns": namespace, "id": checkpoint["id"], "parent": parent, "x": packed})
        await self._append(thread_id, event)
        return _config(thread_id, namespace, checkpoint["id"])

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store a task's writes for the checkpoint ``config`` names (durable on return).

        A regular write is kept once per ``(task_id, index)``; a special one (error,
        interrupt, ...) replaces the previous, as in LangGraph's own savers.
        """
        if not writes:
            self.store._check_readable()  # nothing to write, but a closed store says so, as every call does
            return
        configurable = _configurable(config)
        if not configurable.get("checkpoint_id"):
            raise InvalidInputError(
                f"aput_writes for thread {configurable['thread_id']!r}: the config must name the checkpoint the "
                "writes belong to (configurable.checkpoint_id, as aput returns it)"
            )
        dumps = self.serde.dumps_typed
        stored = []
        for index, (channel, value) in enumerate(writes):
            kind, data = dumps(value)
            stored.append((WRITES_IDX_MAP.get(channel, index), channel, kind, data))
        event = Custom(
            WRITES,
            {
                "ns": configurable.get("checkpoint_ns", "") or "",
                "id": configurable["checkpoint_id"],
                "task": task_id,
                "path": task_path,
                "x": pack(stored),
            },
        )
        await self._append(configurable["thread_id"], event)

    # ------------------------------------------------------------------ reading

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint ``config`` names, or the thread's newest in its namespace; None if there is none."""
        configurable = _configurable(config)
        thread_id = configurable["thread_id"]
        namespace_name = configurable.get("checkpoint_ns", "") or ""
        state = await self._state(thread_id)
        if state is None:
            return None
        namespace = state.namespaces.get(namespace_name)
        if namespace is None or not namespace.order:
            return None
        checkpoint_id = get_checkpoint_id(config) or namespace.order[-1]
        entry = namespace.checkpoints.get(checkpoint_id)
        if entry is None:
            return None
        return self._tuple(thread_id, namespace_name, Found(namespace, checkpoint_id, entry, None))

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """Checkpoints newest first (by checkpoint id): of one thread, or of every thread when ``config`` is None.

        ``config``'s ``checkpoint_ns`` (when given) and ``checkpoint_id`` narrow it;
        ``filter`` keeps those whose metadata has each key equal to the value given
        (scalar values are looked up in the thread's metadata index, not scanned);
        ``before`` keeps ids below its ``checkpoint_id``; ``limit`` caps the count.
        """
        for item in await self._list(config, filter, before, limit):
            yield item

    async def _list(
        self,
        config: RunnableConfig | None,
        filter: dict[str, Any] | None,
        before: RunnableConfig | None,
        limit: int | None,
    ) -> list[CheckpointTuple]:
        if limit is not None and limit <= 0:
            return []
        configurable = _configurable(config) if config is not None else None
        wanted_ns = configurable.get("checkpoint_ns") if configurable is not None else None
        wanted_id = configurable.get("checkpoint_id") if configurable is not None else None
        before_id = get_checkpoint_id(before) if before is not None else None
        threads = [configurable["thread_id"]] if configurable is not None else await self._threads()
        candidates: list[tuple[str, str, str, Namespace]] = []
        for thread_id in threads:
            state = await self._state(thread_id)
            if state is None:
                continue
            for namespace_name, namespace in list(state.namespaces.items()):
                if wanted_ns is not None and namespace_name != wanted_ns:
                    continue
                for checkpoint_id in self._candidates(namespace, filter):
                    if (wanted_id and checkpoint_id != wanted_id) or (before_id and checkpoint_id >= before_id):
                        continue
                    candidates.append((checkpoint_id, thread_id, namespace_name, namespace))
        # From here on no await: the states (live, folded as appends land) hold still while what each
        # checkpoint reads is taken; a checkpoint removed since it was listed above is skipped.
        candidates.sort(key=lambda item: item[0], reverse=True)
        found: list[tuple[str, str, Found]] = []
        for checkpoint_id, thread_id, namespace_name, namespace in candidates:
            entry = namespace.checkpoints.get(checkpoint_id)
            if entry is None:
                continue
            metadata = None
            if filter:
                metadata = self._loads(entry.metadata)
                if not all(metadata.get(key) == value for key, value in filter.items()):
                    continue
            found.append((thread_id, namespace_name, Found(namespace, checkpoint_id, entry, metadata)))
            if limit is not None and len(found) >= limit:
                break
        return [self._tuple(thread_id, namespace_name, parts) for thread_id, namespace_name, parts in found]

    @staticmethod
    def _candidates(namespace: Namespace, filter: dict[str, Any] | None) -> list[str]:
        """Checkpoint ids that may match ``filter``: from the metadata index where it can answer."""
        candidates: set[str] | None = None
        for key, value in (filter or {}).items():
            hashed = value_key(value)
            if hashed == UNINDEXED or value is None:
                continue  # a dict, list or None (which a missing key also equals): checked by decoding
            by_value = namespace.index.get(key, {})
            ids = set(by_value.get(hashed, ())) | set(by_value.get(UNINDEXED, ()))
            candidates = ids if candidates is None else candidates & ids
            if not candidates:
                return []
        if candidates is None:
            return list(namespace.order)
        return [checkpoint_id for checkpoint_id in namespace.order if checkpoint_id in candidates]

    def _tuple(self, thread_id: str, namespace_name: str, found: Found) -> CheckpointTuple:
        loads = self._loads
        checkpoint = loads(found.entry.checkpoint)
        values: dict[str, Any] = {}
        blobs = found.blobs
        for channel, version in checkpoint["channel_versions"].items():
            blob = blobs.get(_blob_key([channel, version]).decode())
            if blob is not None:
                pair = typed(blob)
                if pair[0] != "empty":
                    values[channel] = self.serde.loads_typed(pair)
        checkpoint["channel_values"] = values
        writes = sorted(found.writes, key=lambda write: writes_sort_key(write.path, write.task_id, write.idx))
        pending: list[PendingWrite] = [(write.task_id, write.channel, loads(write.value)) for write in writes]
        parent = found.entry.parent
        metadata = found.metadata if found.metadata is not None else loads(found.entry.metadata)
        return CheckpointTuple(
            config=_config(thread_id, namespace_name, found.checkpoint_id),
            checkpoint=checkpoint,
            metadata=cast("CheckpointMetadata", metadata),
            parent_config=_config(thread_id, namespace_name, parent) if parent else None,
            pending_writes=pending,
        )

    def _loads(self, stored: msgspec.Raw) -> Any:
        return self.serde.loads_typed(typed(stored))

    # ------------------------------------------------------------------ deleting and copying

    async def adelete_thread(self, thread_id: str) -> None:
        """Delete the thread (every namespace, checkpoint and write): gone for every reader at once.

        Its session is deleted; the compactor frees the bytes (docs/langgraph.md). A
        thread with no checkpoints is no error.
        """
        session_id = await self._live_session(thread_id)
        self._sessions.pop(thread_id, None)
        if session_id is None:
            return
        with contextlib.suppress(SessionNotFoundError):  # deleted by someone else meanwhile
            await self.store.delete_session(session_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete, in every thread, the checkpoints (and their writes) whose metadata ``run_id`` is one of ``run_ids``.

        One tombstone append per thread concerned: every reader stops seeing them at
        once; the bytes go when retention covers them (docs/langgraph.md).
        """
        wanted = set(run_ids)
        if not wanted:
            self.store._check_readable()  # nothing to do, but a closed store says so, as every call does
            return
        hashes = {value_key(run_id) for run_id in wanted} | {UNINDEXED}
        for thread_id in await self._threads():
            state = await self._state(thread_id)
            if state is None:
                continue
            events = []
            for namespace_name, namespace in list(state.namespaces.items()):
                by_value = namespace.index.get("run_id", {})
                doomed = []
                for hashed in hashes:
                    for checkpoint_id in by_value.get(hashed, ()):
                        if self._loads(namespace.checkpoints[checkpoint_id].metadata).get("run_id") in wanted:
                            doomed.append(checkpoint_id)
                events += tombstones(namespace_name, sorted(set(doomed)))
            if events:
                await self._append(thread_id, *events)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Make ``target_thread_id`` a copy of ``source_thread_id``: a sessiondb fork, no history copied.

        Every checkpoint, namespace and write of the source as it is now; the two
        threads go their own ways afterwards. A source without checkpoints copies
        nothing. Raises ``InvalidInputError`` if the target already has checkpoints.
        """
        source = await self._live_session(source_thread_id)
        if source is None:
            return
        target, exists = await self._target(target_thread_id)
        if exists:
            raise InvalidInputError(
                f"acopy_thread: the target thread {target_thread_id!r} already has checkpoints; "
                "delete it first (adelete_thread) or copy to a new thread id"
            )
        await self.store.fork(source, session_id=target)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Prune threads: ``"keep_latest"`` keeps the newest checkpoint of each namespace, ``"delete"`` deletes all.

        ``keep_latest`` appends a tombstone (effective for every reader at once; the
        bytes go when retention covers them); ``delete`` deletes the thread's session.
        """
        if strategy not in ("keep_latest", "delete"):
            raise InvalidInputError(f"aprune: strategy must be 'keep_latest' or 'delete', got {strategy!r}")
        self.store._check_readable()  # an empty thread_ids too: a closed store says so, as every call does
        for thread_id in thread_ids:
            if strategy == "delete":
                await self.adelete_thread(thread_id)
                continue
            state = await self._state(thread_id)
            if state is None:
                continue
            events = []
            for name, namespace in list(state.namespaces.items()):
                events += tombstones(name, namespace.order[:-1])
            if events:
                await self._append(thread_id, *events)

    # ------------------------------------------------------------------ versions

    def get_next_version(self, current: str | None, channel: None) -> str:
        """The next channel version, as LangGraph's own savers make it: a zero-padded counter and a random part.

        The random part keeps two branches forked from one checkpoint from writing
        different values under the same (channel, version).
        """
        if current is None:
            number = 0
        elif isinstance(current, int):
            number = current
        else:
            number = int(str(current).split(".")[0])
        return f"{number + 1:032}.{random.random():016}"

    # ------------------------------------------------------------------ sync twins

    def _blocking(self, start: Callable[[], Coroutine[Any, Any, _T]], method: str) -> _T:
        """Run ``start()`` on the store's loop and wait for it (``StoreLoop.call_blocking``)."""
        return self.store._home.call_blocking(
            start,
            f"SessionDBSaver.{method}() was called on the thread that runs the store's event loop (graph.invoke "
            "or graph.stream inside async code?): waiting there would block the loop the store needs. Use "
            "graph.ainvoke / graph.astream, or run the sync graph in another thread "
            "(await asyncio.to_thread(graph.invoke, ...))",
        )

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self._blocking(lambda: self.aget_tuple(config), "get_tuple")

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        yield from self._blocking(lambda: self._list(config, filter, before, limit), "list")

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return self._blocking(lambda: self.aput(config, checkpoint, metadata, new_versions), "put")

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self._blocking(lambda: self.aput_writes(config, writes, task_id, task_path), "put_writes")

    def delete_thread(self, thread_id: str) -> None:
        self._blocking(lambda: self.adelete_thread(thread_id), "delete_thread")

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        self._blocking(lambda: self.adelete_for_runs(run_ids), "delete_for_runs")

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self._blocking(lambda: self.acopy_thread(source_thread_id, target_thread_id), "copy_thread")

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        self._blocking(lambda: self.aprune(thread_ids, strategy=strategy), "prune")


def _configurable(config: RunnableConfig) -> dict[str, Any]:
    configurable = config.get("configurable") if isinstance(config, dict) else None
    if not isinstance(configurable, dict) or "thread_id" not in configurable:
        raise InvalidInputError(
            "a LangGraph config needs configurable.thread_id, e.g. {'configurable': {'thread_id': 'my-thread'}}"
        )
    thread_id = configurable["thread_id"]
    if type(thread_id) is not str:
        configurable = {**configurable, "thread_id": str(thread_id)}  # LangGraph accepts ints and UUIDs here
    return configurable


def _config(thread_id: str, namespace: str, checkpoint_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": namespace, "checkpoint_id": checkpoint_id}}
