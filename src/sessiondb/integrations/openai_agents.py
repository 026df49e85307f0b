"""sessiondb as the session store of the OpenAI Agents SDK: ``SessionDBSession``.

::

    from agents import Agent, Runner
    from sessiondb.integrations.openai_agents import SessionDBSession

    async with sessiondb.open_store("sessions/") as store:
        session = SessionDBSession("user-42", store)   # instead of SQLiteSession("user-42", "db.sqlite")
        result = await Runner.run(agent, "hello", session=session)

Every operation is an event in the session's log: ``add_items`` appends one
``Custom("openai_agents.items", {"items": [...]})`` event (one atomic append per
call), ``pop_item`` a ``Custom("openai_agents.pop")`` and ``clear_session`` a
``Custom("openai_agents.clear")``, so the history stays auditable and
``items_at(version)`` shows the items as they were at any version. Reads come
from a registered projection the store keeps current after every durable batch;
the log is read only to build it the first time. Sessions of any number of SDK
conversations share one store, its writer and its group commit (one fsync per
batch across all of them). A session this class creates has the scope
``openai_agents`` (``sessiondb ls STORE --scope openai_agents`` lists them), which
keeps its kind when it holds no items: ``ls`` says "0 items", not "0 messages".
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Sequence
from typing import Any

import msgspec

from .._counts import OPENAI_CLEAR, OPENAI_ITEMS, OPENAI_POP, OPENAI_SCOPE
from .._errors import ConflictError, SessionDeletedError, SessionExistsError, SessionNotFoundError
from .._events import Custom, Event, RecordedEvent, SessionStarted
from .._ids import now_ms
from .._projection import Projection
from .._store import Store

try:  # SessionSettings arrived in later SDK versions; older ones have no per-session limit.
    from agents.memory.session_settings import SessionSettings
except ImportError:  # pragma: no cover - depends on the installed SDK
    SessionSettings = None  # type: ignore[assignment,misc]
try:  # The SDK's own check of a settings dict (unknown keys are a TypeError), in recent SDKs.
    from agents.memory.session_settings import coerce_session_settings as _sdk_coerce_settings
except ImportError:  # pragma: no cover - depends on the installed SDK
    _sdk_coerce_settings = None  # type: ignore[assignment]

# The event names: defined with the summary that counts the live items (``_counts``).
ITEMS = OPENAI_ITEMS
POP = OPENAI_POP
CLEAR = OPENAI_CLEAR
PROJECTION_NAME = "openai_agents.items"
# Items per event are grouped below this encoded size, far under the store's default
# 16 MiB max_event_bytes, so one large add_items is several events in one atomic append.
_EVENT_BYTES = 4 * 1024 * 1024

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


class ItemsState(msgspec.Struct, gc=False):
    """The projection's state: each live item as its JSON bytes, and the version it reflects."""

    items: list[bytes] = msgspec.field(default_factory=list)
    version: int = 0


def _fold(state: ItemsState, recorded: RecordedEvent) -> ItemsState:
    # In place: the store owns the state it caches and folds each event into it once.
    state.version = recorded.version
    event = recorded.event
    if type(event) is Custom:
        name = event.name
        if name == ITEMS:
            state.items.extend(_encode(item) for item in event.data["items"])
        elif name == POP:
            if state.items:
                state.items.pop()
        elif name == CLEAR:
            state.items.clear()
    return state


ITEMS_PROJECTION: Projection[ItemsState] = Projection(
    PROJECTION_NAME, lambda _sid: ItemsState(), _fold, state_type=ItemsState
)
_registered: weakref.WeakSet[Store] = weakref.WeakSet()


def _ensure_projection(store: Store) -> None:
    if store in _registered:
        return
    existing = store._projections.get(PROJECTION_NAME)
    if existing is None:
        store.register_projection(ITEMS_PROJECTION)
    elif existing is not ITEMS_PROJECTION:
        raise RuntimeError(
            f"another projection is registered as {PROJECTION_NAME!r} on this store; "
            "SessionDBSession needs that name for its own"
        )
    _registered.add(store)


def _slice(items: list[bytes], limit: int | None) -> list[bytes]:
    if limit is None or limit < 0:  # SQLiteSession: a negative limit means no limit
        return items
    return items[-limit:] if limit else []


def _coerce_settings(value: Any) -> Any:
    """``session_settings`` as ``SQLiteSession`` takes it: None, a ``SessionSettings`` or a dict of its fields.

    Raises ``TypeError`` for an unknown key (``{"limitt": 1}``) or another type, as the SDK does.
    """
    if SessionSettings is None:  # pragma: no cover - an SDK without per-session settings
        return value
    if value is None:
        return SessionSettings()
    if _sdk_coerce_settings is not None:
        return _sdk_coerce_settings(value)
    # Older SDKs: the same rule, checked here.
    if isinstance(value, SessionSettings):
        return value
    if not isinstance(value, dict):
        raise TypeError(f"session_settings must be a SessionSettings or a dict, got {type(value).__name__}")
    unknown = sorted(str(name) for name in value if name not in SessionSettings.__dataclass_fields__)
    if unknown:
        raise TypeError(f"Unknown session settings: {', '.join(unknown)}")
    return SessionSettings(**value)


def _item_json(session_id: str, index: int, item: Any) -> bytes:
    """One item as the JSON text ``SQLiteSession`` would store (``json.dumps``), checked to read back equal.

    ``TypeError`` for what the SDK cannot store either (bytes, datetime, UUID, sets,
    objects ...); ``ValueError`` for a circular reference (as the SDK) and for NaN or
    infinity, which the SDK writes as non-standard JSON and the store, keeping strict
    JSON, refuses rather than turn into ``null``.
    """
    try:
        text = json.dumps(item, allow_nan=False)
    except TypeError as exc:
        raise TypeError(f"session {session_id!r}: add_items item {index}: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"session {session_id!r}: add_items item {index}: {exc}") from None
    payload = text.encode()
    try:
        _decode(payload)
    except msgspec.DecodeError:  # a lone surrogate in a string: no UTF-8 for it
        raise ValueError(
            f"session {session_id!r}: add_items item {index}: a string holds a lone surrogate "
            "(not valid Unicode text), which the store cannot keep"
        ) from None
    return payload


def _decode_items(encoded: Sequence[bytes]) -> list[Any]:
    if not encoded:
        return []
    result: list[Any] = _decode(b"[" + b",".join(encoded) + b"]")
    return result


class SessionDBSession:
    """An OpenAI Agents SDK ``Session`` kept in a sessiondb store.

    ``session_id`` is the sessiondb session id; the session is created on the
    first write. ``store`` must be open (``async with sessiondb.open_store(...)``)
    and is not closed by this class: many ``SessionDBSession`` objects share one.
    Its methods may be awaited from other threads' event loops too (``Runner.run_sync``
    in a worker thread): each store call is handed off to the store's own loop.
    """

    def __init__(
        self,
        session_id: str,
        store: Store,
        *,
        session_settings: Any = None,
        model: str | None = None,
    ) -> None:
        self.session_id = session_id
        self.store = store
        self.model = model
        self.session_settings = _coerce_settings(session_settings)
        self._exists = False
        _ensure_projection(store)

    # ------------------------------------------------------------------ the SDK's Session protocol

    async def get_items(self, limit: int | None = None) -> list[Any]:
        """The session's items, oldest first; with ``limit``, the latest ``limit`` of them."""
        if limit is None and self.session_settings is not None:
            limit = getattr(self.session_settings, "limit", None)
        state = await self._state()
        if state is None:
            return []
        return _decode_items(_slice(state.items, limit))

    async def add_items(self, items: list[Any]) -> None:
        """Append ``items`` durably, as one atomic append (the session is created if new)."""
        if not items:
            self.store._check_readable()  # nothing to write, but a closed store says so, as every call does
            return
        events = self._item_events(items)
        if not self._exists:
            try:
                await self.store.session_info(self.session_id)  # in memory for the local backend
            except SessionDeletedError:
                raise  # one rule with the store: a deleted session's id is not reused
            except SessionNotFoundError:
                started = SessionStarted(now_ms(), self.model, scope=OPENAI_SCOPE)  # its kind, even when emptied
                try:
                    # Creation and the first items land together: no empty session is ever left behind.
                    await self.store._import_session(
                        self.session_id, started, events, timestamp_ms=started.created_at_ms
                    )
                    self._exists = True
                    return
                except SessionExistsError:  # another task created it first
                    pass
            self._exists = True
        await self.store.append(self.session_id, *events)

    async def pop_item(self) -> Any | None:
        """Remove and return the most recent item, or None when there is none."""
        while True:
            state = await self._state()
            if state is None or not state.items:
                return None
            # No await between reading the state and taking these: they belong together.
            item = _decode(state.items[-1])
            version = state.version
            try:
                await self.store.append(self.session_id, Custom(POP), expected_version=version)
            except ConflictError:
                continue  # something was appended meanwhile: pop what is now the last item
            return item

    async def clear_session(self) -> None:
        """Remove every item (the events stay in the log: ``items_at`` can still show them).

        ``SessionDeletedError`` if the store's session was deleted (as every method raises then).
        """
        try:
            await self.store.append(self.session_id, Custom(CLEAR))
        except SessionDeletedError:
            raise
        except SessionNotFoundError:
            pass  # never created: nothing to clear

    # ------------------------------------------------------------------ beyond the protocol

    async def items_at(self, version: int) -> list[Any]:
        """The items as they were when the session was at ``version`` (time travel)."""
        state = ItemsState()
        async for recorded in self.store.read(self.session_id, up_to=version):
            _fold(state, recorded)
        return _decode_items(state.items)

    def close(self) -> None:
        """Nothing to release (the store belongs to the caller); kept for ``SQLiteSession`` parity."""

    # ------------------------------------------------------------------ internals

    async def _state(self) -> ItemsState | None:
        try:
            state: ItemsState = await self.store.project(self.session_id, PROJECTION_NAME)
        except SessionDeletedError:
            raise  # not "no items yet": add_items would be refused too
        except SessionNotFoundError:
            return None
        return state

    def _item_events(self, items: Sequence[Any]) -> list[Event]:
        """Items as Custom events: a deep copy through JSON (the caller may reuse its dicts)."""
        encoded = [_item_json(self.session_id, index, item) for index, item in enumerate(items)]
        events: list[Event] = []
        start = 0
        size = 0
        for index, payload in enumerate(encoded):
            if index > start and size + len(payload) > _EVENT_BYTES:
                events.append(Custom(ITEMS, {"items": _decode_items(encoded[start:index])}))
                start, size = index, 0
            size += len(payload)
        events.append(Custom(ITEMS, {"items": _decode_items(encoded[start:])}))
        return events

    def __repr__(self) -> str:
        return f"SessionDBSession({self.session_id!r})"


__all__ = ["CLEAR", "ITEMS", "ITEMS_PROJECTION", "POP", "ItemsState", "SessionDBSession"]
