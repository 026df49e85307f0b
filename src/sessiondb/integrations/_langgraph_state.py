"""LangGraph threads as sessiondb sessions: the thread id mapping, the events, and the fold of a thread's checkpoints.

No LangGraph import here (the CLI's compactor registers this projection without the
framework installed). Values arrive already serialized by the saver's ``serde`` as
``(type, base64 of bytes)``: a stored value may not hold bytes.

One session per thread (``lg~<escaped thread id>``, a later generation ``~~N`` after a
delete, since sessiondb never reuses a deleted id). Its events are ``Custom``; the ids
stay readable JSON, the rest is one base64 string ``x`` of msgpack (a stored value may
not hold bytes, and one string is checked and encoded far faster than a tree of them):

- ``langgraph.checkpoint``: ``{"ns", "id", "parent", "x"}``, ``x`` = ``[checkpoint type,
  bytes, metadata type, bytes, [key, value hash, ...], [[blob key, type, bytes], ...],
  [blob key, ...]]``; a blob key is the JSON text of ``[channel, version]``; the last list
  names the blobs the checkpoint reads or wrote (a blob lives while a checkpoint names it).
- ``langgraph.writes``: ``{"ns", "id", "task", "path", "x"}``, ``x`` = ``[[idx, channel,
  type, bytes], ...]``.
- ``langgraph.removed``: ``{"ns", "ids": [checkpoint id, ...]}``, the tombstone of
  ``delete_for_runs`` and ``prune``: every reader's projection drops them at once.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import re
from bisect import bisect_left, insort
from typing import Any

import msgspec

from .._counts import LANGGRAPH_CHECKPOINT, LANGGRAPH_SCOPE
from .._errors import InvalidInputError
from .._events import Custom, RecordedEvent
from .._ids import MAX_SESSION_ID_BYTES
from .._projection import Projection
from .._reserved import LANGGRAPH_REMOVED, LANGGRAPH_WRITES

PREFIX = "lg~"
# What of the session id limit is the thread's: the prefix and a generation suffix (``~~9999``) take the rest.
MAX_THREAD_ID_BYTES = MAX_SESSION_ID_BYTES - len(PREFIX) - 6
# Every thread's session carries this scope (forks inherit it), so listing the threads reads
# the scope's index instead of every session in the store.
SCOPE = LANGGRAPH_SCOPE
CHECKPOINT = LANGGRAPH_CHECKPOINT  # counted in the session's summary (``_counts``)
WRITES = LANGGRAPH_WRITES
REMOVED = LANGGRAPH_REMOVED
PROJECTION_NAME = "langgraph.checkpoints"
IDS_PER_TOMBSTONE = 20_000  # checkpoint ids are ~36 characters: under 1 MB per event
# A value of a metadata key the index cannot hash exactly (a dict, a list, a huge int):
# the checkpoint is a candidate for every filter on that key and is checked by decoding.
UNINDEXED = "*"

_packer = msgspec.msgpack.Encoder()
_unpack = msgspec.msgpack.decode


def pack(value: Any) -> str:
    """``x`` of an event: msgpack (bytes kept as bytes), then base64."""
    return base64.b64encode(_packer.encode(value)).decode("ascii")


def unpack(text: str) -> Any:
    return _unpack(base64.b64decode(text))


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_GENERATION = re.compile(r"~~([2-9]|[1-9][0-9]+)\Z")


def thread_session_id(thread_id: object) -> str:
    """The first-generation session id of a thread: ``lg~`` and the thread id, percent-escaped."""
    if type(thread_id) is not str or not thread_id:
        raise InvalidInputError(f"a LangGraph thread_id must be a non-empty str, got {thread_id!r}")
    escaped = _UNSAFE.sub(lambda match: "".join(f"%{byte:02X}" for byte in match.group().encode()), thread_id)
    if len(escaped) > MAX_THREAD_ID_BYTES:  # escaped is ASCII: characters are bytes
        shown = repr(thread_id) if len(thread_id) <= 40 else repr(thread_id[:40]) + "…"
        raise InvalidInputError(
            f"thread_id {shown} is {len(escaped)} bytes once escaped; a thread id may have at most "
            f"{MAX_THREAD_ID_BYTES} (A-Z a-z 0-9 . _ - take 1 byte each; any other character 3 per UTF-8 byte, "
            "as %XX): use a shorter thread_id"
        )
    return PREFIX + escaped


def generation_id(base: str, generation: int) -> str:
    return base if generation == 1 else f"{base}~~{generation}"


def thread_of(session_id: str) -> str | None:
    """The thread id a session id holds, or None for a session this mapping did not make."""
    if not session_id.startswith(PREFIX):
        return None
    body = _GENERATION.sub("", session_id[len(PREFIX) :])
    try:
        return re.sub(r"(%[0-9A-F]{2})+", lambda m: bytes.fromhex(m.group().replace("%", "")).decode(), body)
    except UnicodeDecodeError:
        return None


def value_key(value: object) -> str:
    """What the metadata index files a value under: a short hash; equal values (1 == 1.0 == True) share it."""
    kind = type(value)
    if kind is str:
        text = "s" + value  # type: ignore[operator]
    elif kind is bool or kind is int or kind is float:
        try:
            text = "n" + repr(float(value))  # type: ignore[arg-type]
        except OverflowError:
            return UNINDEXED
    elif value is None:
        text = "z"
    else:
        return UNINDEXED
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


# A serialized value (serde type, bytes) is kept as the JSON of that pair, ``msgspec.Raw``: decoding a
# thread's snapshot then only finds where each one ends (a third of the time of building them all);
# ``typed`` turns one into the pair when a read needs it.
_encode = msgspec.json.Encoder().encode
_decode_typed = msgspec.json.Decoder(tuple[str, bytes]).decode


def _raw(kind: str, data: bytes) -> msgspec.Raw:
    return msgspec.Raw(_encode((kind, data)))


def typed(raw: msgspec.Raw) -> tuple[str, bytes]:
    """The (serde type, bytes) pair a stored value holds."""
    return _decode_typed(raw)


class StoredCheckpoint(msgspec.Struct, array_like=True, gc=False):
    """One checkpoint of a namespace as the fold keeps it (values still serialized)."""

    parent: str | None
    checkpoint: msgspec.Raw
    metadata: msgspec.Raw
    indexed: list[str]  # key, value hash, key, value hash ...
    refs: list[str]


class StoredWrite(msgspec.Struct, array_like=True, gc=False):
    task_id: str
    channel: str
    value: msgspec.Raw
    path: str
    idx: int


class Namespace(msgspec.Struct, gc=False):
    """A checkpoint namespace (``""`` for the graph, ``"child:<id>"`` ... for subgraphs)."""

    checkpoints: dict[str, StoredCheckpoint] = msgspec.field(default_factory=dict)
    order: list[str] = msgspec.field(default_factory=list)  # checkpoint ids, ascending
    blobs: dict[str, msgspec.Raw] = msgspec.field(default_factory=dict)  # "empty" ones too
    refcount: dict[str, int] = msgspec.field(default_factory=dict)
    writes: dict[str, dict[str, StoredWrite]] = msgspec.field(default_factory=dict)
    # metadata key -> value hash -> checkpoint ids: filters look up, they do not scan
    index: dict[str, dict[str, list[str]]] = msgspec.field(default_factory=dict)


class ThreadState(msgspec.Struct, gc=False):
    """Every live checkpoint of one thread, by namespace. Snapshotted by the compactor."""

    namespaces: dict[str, Namespace] = msgspec.field(default_factory=dict)


def _initial(session_id: str) -> ThreadState:
    return ThreadState()


def _fold(state: ThreadState, recorded: RecordedEvent) -> ThreadState:
    """Apply one event in place (the store folds each durable batch into its cached state)."""
    event = recorded.event
    if type(event) is not Custom:
        return state
    name = event.name
    data = event.data
    if name == CHECKPOINT:
        _put(state, data)
    elif name == WRITES:
        _put_writes(state, data)
    elif name == REMOVED:
        namespace = state.namespaces.get(data["ns"])
        if namespace is not None:
            for checkpoint_id in data["ids"]:
                _remove(namespace, checkpoint_id)
            if not namespace.checkpoints:
                del state.namespaces[data["ns"]]
    return state


def _put(state: ThreadState, data: dict[str, Any]) -> None:
    namespace = state.namespaces.get(data["ns"])
    if namespace is None:
        namespace = state.namespaces[data["ns"]] = Namespace()
    checkpoint_id = data["id"]
    if checkpoint_id in namespace.checkpoints:
        _remove(namespace, checkpoint_id, keep_writes=True)  # put again under the same id: the last one wins
    c_kind, c_data, m_kind, m_data, indexed, blobs, refs = unpack(data["x"])
    for key, kind, blob in blobs:
        namespace.blobs[key] = _raw(kind, blob)
    refcount = namespace.refcount
    for key in refs:
        refcount[key] = refcount.get(key, 0) + 1
    index = namespace.index
    for position in range(0, len(indexed), 2):
        by_value = index.get(indexed[position])
        if by_value is None:
            by_value = index[indexed[position]] = {}
        ids = by_value.get(indexed[position + 1])
        if ids is None:
            by_value[indexed[position + 1]] = [checkpoint_id]
        else:
            ids.append(checkpoint_id)
    namespace.checkpoints[checkpoint_id] = StoredCheckpoint(
        data["parent"], _raw(c_kind, c_data), _raw(m_kind, m_data), indexed, refs
    )
    order = namespace.order
    if not order or order[-1] < checkpoint_id:
        order.append(checkpoint_id)  # the usual case: ids grow
    else:
        insort(order, checkpoint_id)


def _put_writes(state: ThreadState, data: dict[str, Any]) -> None:
    namespace = state.namespaces.get(data["ns"])
    if namespace is None:
        namespace = state.namespaces[data["ns"]] = Namespace()
    stored = namespace.writes.get(data["id"])
    if stored is None:
        stored = namespace.writes[data["id"]] = {}
    task_id, path = data["task"], data["path"]
    for idx, channel, kind, value in unpack(data["x"]):
        key = f"{task_id}|{idx}"
        # As LangGraph's savers do: a regular write (idx >= 0) is stored once, a special one
        # (error, interrupt, ...: negative idx) replaces the previous.
        if idx >= 0 and key in stored:
            continue
        stored[key] = StoredWrite(task_id, channel, _raw(kind, value), path, idx)


def _remove(namespace: Namespace, checkpoint_id: str, *, keep_writes: bool = False) -> None:
    entry = namespace.checkpoints.pop(checkpoint_id, None)
    if entry is None:
        return
    order = namespace.order
    at = bisect_left(order, checkpoint_id)
    if at < len(order) and order[at] == checkpoint_id:
        del order[at]
    if not keep_writes:
        namespace.writes.pop(checkpoint_id, None)
    refcount = namespace.refcount
    for key in entry.refs:
        left = refcount.get(key, 1) - 1
        if left > 0:
            refcount[key] = left
        else:
            refcount.pop(key, None)
            namespace.blobs.pop(key, None)
    indexed = entry.indexed
    for position in range(0, len(indexed), 2):
        by_value = namespace.index.get(indexed[position])
        if by_value is None:
            continue
        ids = by_value.get(indexed[position + 1])
        if ids is not None:
            with contextlib.suppress(ValueError):
                ids.remove(checkpoint_id)
            if not ids:
                del by_value[indexed[position + 1]]
                if not by_value:
                    del namespace.index[indexed[position]]


def tombstones(namespace: str, checkpoint_ids: list[str]) -> list[Custom]:
    """The events removing ``checkpoint_ids`` (in parts, each far below the event size limit; one atomic append)."""
    return [
        Custom(REMOVED, {"ns": namespace, "ids": checkpoint_ids[start : start + IDS_PER_TOMBSTONE]})
        for start in range(0, len(checkpoint_ids), IDS_PER_TOMBSTONE)
    ]


class Found:
    """A checkpoint and what it reads (its blobs, its writes), taken from the projection at one instant."""

    __slots__ = ("blobs", "checkpoint_id", "entry", "metadata", "writes")

    def __init__(
        self, namespace: Namespace, checkpoint_id: str, entry: StoredCheckpoint, metadata: dict[str, Any] | None
    ) -> None:
        self.checkpoint_id = checkpoint_id
        self.entry = entry
        self.metadata = metadata
        stored = namespace.blobs
        self.blobs = {key: stored[key] for key in entry.refs if key in stored}
        self.writes: list[StoredWrite] = list(namespace.writes.get(checkpoint_id, {}).values())


PROJECTION: Projection[ThreadState] = Projection(PROJECTION_NAME, _initial, _fold, state_type=ThreadState)


def register(store: Any) -> None:
    """Register the thread projection on ``store`` (once; the same object every time)."""
    existing = store._projections.get(PROJECTION_NAME)
    if existing is None:
        store.register_projection(PROJECTION)
    elif existing is not PROJECTION:
        raise InvalidInputError(
            f"another projection is registered as {PROJECTION_NAME!r} on this store; SessionDBSaver needs that name"
        )


__all__ = [
    "CHECKPOINT",
    "Found",
    "PREFIX",
    "PROJECTION",
    "REMOVED",
    "SCOPE",
    "UNINDEXED",
    "WRITES",
    "Namespace",
    "StoredCheckpoint",
    "StoredWrite",
    "ThreadState",
    "generation_id",
    "pack",
    "register",
    "thread_of",
    "thread_session_id",
    "tombstones",
    "typed",
    "unpack",
    "value_key",
]
