"""Live subscriptions: catch up from the log, then follow durable batches, with no gap and no duplicate.

How the switch from catch-up to live stays exact: the store updates its index
and calls the batch listeners in the same event-loop step, right after a batch
is durable. So once a subscriber is *attached* (its buffer collects every
batch), every event is either already readable from the log or will reach the
buffer. A subscriber attaches, reads the log until it is empty, then drains its
buffer, skipping what the log already gave it (events are keyed by version, or
by position for ``subscribe_all``).

Subscribers never slow the writer: the listener only appends a reference to
the committed request (or the whole batch) to a bounded buffer and sets an
event. A subscriber whose buffer overflows is *detached*: its buffer is
dropped and it goes back to reading the log from where it is, then attaches
again. Memory per subscriber is bounded by ``buffer_size`` events.

A backend whose events may be written by other processes (PostgreSQL) can
offer a wake-up hint, ``async wait_for_new_events(after_position, timeout) ->
int``: it returns the newest position it knows of, as soon as that is past
``after_position`` or when ``timeout`` seconds have passed. One poller task per
store then sends every subscriber back to the log whenever the hint moves.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ._backends._base import AppendRequest, Backend, SessionInfo, recorded_events
from ._errors import InvalidInputError, SessionNotFoundError, StoreClosedError, refused_because_broken
from ._events import RecordedEvent, SessionDeleted
from ._handoff import StoreLoop, on_store_loop
from ._ids import validate_session_id

if TYPE_CHECKING:
    from ._writer import Writer

DEFAULT_BUFFER_EVENTS = 4_096
# Events per catch-up read from the log: the first read after (re)joining is small, so a
# subscriber that wants only the next few events decodes only those; later reads grow.
_FIRST_PAGE = 32
_CATCH_UP_PAGE = 1_000
# Catch-up reads of one store's subscribers that may run at once.
_READ_SLOTS = 4
# Seconds one wake-up hint call may wait before the poller asks again.
_HINT_TIMEOUT = 1.0


class SubscriptionSource(Protocol):
    """What subscriptions use of their ``Store``: a protocol, so this module need not import the store."""

    @property
    def backend(self) -> Backend: ...

    @property
    def _writer(self) -> Writer: ...

    @property
    def _writer_task(self) -> asyncio.Task[None] | None: ...

    @property
    def _home(self) -> StoreLoop: ...

    def _check_readable(self) -> None: ...

    def add_batch_listener(self, listener: Callable[[Sequence[AppendRequest]], None]) -> Callable[[], None]: ...

    async def read_all(self, *, after: int = ..., limit: int = ...) -> list[RecordedEvent]: ...

    async def _events(self, info: SessionInfo, after: int, up_to: int) -> list[RecordedEvent]: ...


_hubs: weakref.WeakKeyDictionary[SubscriptionSource, _Hub] = weakref.WeakKeyDictionary()


class _Hub:
    """One per store: a single batch listener fanning durable batches out to subscribers."""

    def __init__(self, store: SubscriptionSource) -> None:
        # The backend, not the store: the hub must not keep its (weakly keyed) store alive.
        self.backend = store.backend
        self.by_session: dict[str, weakref.WeakSet[Subscription]] = {}
        self.every: weakref.WeakSet[Subscription] = weakref.WeakSet()
        self.ended = False
        # Catch-up reads hop to worker threads, like the writer's commits: a herd of
        # subscribers falling back at once must not take every thread the writer needs.
        self.read_slots = asyncio.Semaphore(_READ_SLOTS)
        self._poller: asyncio.Task[None] | None = None
        self._hint = getattr(store.backend, "wait_for_new_events", None)
        store.add_batch_listener(self._on_batch)
        writer_task = store._writer_task
        if writer_task is None or writer_task.done():
            self.ended = True
        else:
            writer_task.add_done_callback(self._on_writer_done)

    # -------------------------------------------------------------- writer side (must stay cheap)

    def _on_batch(self, batch: Sequence[AppendRequest]) -> None:
        by_session = self.by_session
        if by_session:
            for request in batch:
                if request.error is not None or request.duplicate:
                    continue
                subscribers = by_session.get(request.session_id)
                if subscribers:
                    count = len(request.events)
                    for subscriber in subscribers:
                        subscriber._push(request, count)
        if self.every:
            count = 0
            for request in batch:
                if request.error is None and not request.duplicate:
                    count += len(request.events)
            if count:
                for subscriber in self.every:
                    subscriber._push(batch, count)

    def _on_writer_done(self, _task: object) -> None:
        """The store closed or broke: wake everyone so they drain their buffers and stop."""
        self.ended = True
        if self._poller is not None:
            self._poller.cancel()
            self._poller = None
        for subscriber in self._all_subscribers():
            subscriber._wakeup.set()

    def _all_subscribers(self) -> list[Subscription]:
        found = list(self.every)
        for subscribers in self.by_session.values():
            found.extend(subscribers)
        return found

    # -------------------------------------------------------------- registration

    def add(self, subscription: Subscription) -> None:
        if subscription._session_id is None:
            self.every.add(subscription)
        else:
            subscribers = self.by_session.get(subscription._session_id)
            if subscribers is None:
                subscribers = self.by_session[subscription._session_id] = weakref.WeakSet()
            subscribers.add(subscription)
        if self._hint is not None and self._poller is None and not self.ended:
            self._poller = asyncio.get_running_loop().create_task(self._poll(), name="sessiondb-subscription-poller")

    def remove(self, subscription: Subscription) -> asyncio.Task[None] | None:
        """Forget ``subscription``; return the poller task it stopped, if it was the last subscriber."""
        if subscription._session_id is None:
            self.every.discard(subscription)
        else:
            subscribers = self.by_session.get(subscription._session_id)
            if subscribers is not None:
                subscribers.discard(subscription)
                if not subscribers:
                    del self.by_session[subscription._session_id]
        if self._poller is not None and not self.every and not self.by_session:
            poller, self._poller = self._poller, None
            poller.cancel()
            return poller
        return None

    async def _poll(self) -> None:
        """Wake subscribers when the backend says events (maybe from other processes) arrived."""
        assert self._hint is not None
        known = self.backend.last_position
        while not self.ended:
            if not self._all_subscribers():  # the last ones were dropped without aclose()
                self._poller = None
                return
            try:
                newest = int(await self._hint(known, _HINT_TIMEOUT))
            except asyncio.CancelledError:
                raise
            except Exception:
                # A failing hint must not end the subscriptions: the log reads that
                # follow report real errors. Back off so a dead connection does not spin.
                await asyncio.sleep(_HINT_TIMEOUT)
                newest = known + 1
            if newest > known:
                known = newest
                for subscriber in self._all_subscribers():
                    subscriber._fall_back()


def _hub_for(store: SubscriptionSource) -> _Hub:
    hub = _hubs.get(store)
    if hub is None:
        hub = _hubs[store] = _Hub(store)
    return hub


class Subscription:
    """An async iterator over a session's (or every session's) durable events: history, then live.

    One task iterates a subscription (make one per consumer), on any thread's loop:
    each step runs on the store's own loop (see ``Store``). Use it as
    ``async for event in store.subscribe(sid): ...``; ``async with``
    (or ``aclose()``) releases it at once. It ends when the store closes (after
    delivering what was durable before), or when a subscribed session's
    ``SessionDeleted`` event has been delivered; it raises ``StoreBrokenError``
    once a broken store's durable events are all delivered. ``cursor`` is the
    last delivered version (``subscribe``) or position (``subscribe_all``):
    pass it as ``after`` to resume.
    """

    def __init__(self, store: SubscriptionSource, session_id: str | None, after: int, buffer_size: int) -> None:
        if type(after) is not int or after < 0:
            raise InvalidInputError(f"after must be a non-negative int, got {after!r}")
        if type(buffer_size) is not int or buffer_size < 1:
            raise InvalidInputError(f"buffer_size must be a positive int, got {buffer_size!r}")
        self._store = store
        self._session_id = session_id
        self.cursor = after
        # Events being delivered (a log page, or one request's events) and the next index in it.
        # Delivery skips what the cursor already passed: the log and the buffer may overlap.
        self._current: Sequence[RecordedEvent] = ()
        self._index = 0
        # The rest of a whole batch being delivered (subscribe_all).
        self._requests: list[AppendRequest] = []
        # What the listener delivered, with its event count: an AppendRequest (one session)
        # or a whole batch (every session). References only: nothing is copied per subscriber.
        self._items: deque[tuple[Any, int]] = deque()
        self._count = 0
        self._limit = buffer_size
        self._attached = False
        self._catching_up = True
        self._page = _FIRST_PAGE
        self._wakeup = asyncio.Event()
        self._hub: _Hub | None = None
        self._finished = False
        self.fallbacks = 0  # times the buffer overflowed (or a hint arrived) and the log was read instead

    # -------------------------------------------------------------- called by the hub (cheap, never raise)

    def _push(self, item: Any, count: int) -> None:
        if not self._attached:
            return
        self._count += count
        if self._count > self._limit:
            self._fall_back()
            return
        self._items.append((item, count))
        self._wakeup.set()

    def _fall_back(self) -> None:
        """Drop the buffer: the subscriber reads the log from its cursor, then attaches again."""
        self._items.clear()
        self._requests = []
        self._count = 0
        if self._attached:
            self._attached = False
            self.fallbacks += 1
        self._page = _FIRST_PAGE
        self._wakeup.set()

    # -------------------------------------------------------------- iteration

    def __aiter__(self) -> Subscription:
        return self

    @property
    def _home(self) -> StoreLoop:
        return self._store._home

    @on_store_loop  # iterated from another thread's loop, each step runs on the store's
    async def __anext__(self) -> RecordedEvent:
        try:
            return await self._next()
        except BaseException:
            # Cancelled, ended or failed: no listener may outlive the iteration.
            self._close()
            raise

    async def _next(self) -> RecordedEvent:
        by_version = self._session_id is not None
        while True:
            current = self._current
            while self._index < len(current):
                event = current[self._index]
                self._index += 1
                key = event.version if by_version else event.position
                if key <= self.cursor:
                    continue  # already delivered (the log and the buffer overlapped)
                if by_version and key != self.cursor + 1:
                    # Versions are gapless, so this cannot happen; if it ever did, the log is the truth.
                    self._current = ()
                    self._fall_back()
                    break
                self.cursor = key
                if type(event.event) is SessionDeleted and event.session_id == self._session_id:
                    self._finished = True
                return event
            if self._finished:
                raise StopAsyncIteration
            if self._requests:
                request = self._requests.pop()
                self._current, self._index = recorded_events(request), 0
                continue
            hub = self._hub
            if hub is None:
                self._store._check_readable()
                hub = self._hub = _hub_for(self._store)
                hub.add(self)
            if self._catching_up:
                try:
                    async with hub.read_slots:
                        page = await self._read_log()
                except StoreClosedError:
                    raise StopAsyncIteration from None
                if self._finished:  # closed by aclose() from another task while reading
                    raise StopAsyncIteration
                if page:
                    self._current, self._index = page, 0
                    self._page *= 2
                elif not self._attached:
                    # Attach, then read once more: whatever committed between the
                    # last read and now is either in that read or in the buffer.
                    self._attached = True
                    self._items.clear()
                    self._count = 0
                else:
                    self._catching_up = False
                continue
            if not self._attached:
                self._catching_up = True
                continue
            items = self._items
            if items and self._session_id is None and hub.backend.has_other_writers:
                # A log other processes append to (PostgreSQL, or a directory several processes
                # write): a batch of another may hold older positions than this one's. Own batches are only a wake-up;
                # delivery goes through read_all, which never passes a late commit.
                items.clear()
                self._count = 0
                self._catching_up = True
                continue
            if items:
                item, count = items.popleft()
                self._count -= count
                if isinstance(item, AppendRequest):
                    self._current, self._index = recorded_events(item), 0
                else:
                    # Reversed so that pop() takes them in order; failed and retried ones carry no events.
                    self._requests = [r for r in reversed(item) if r.error is None and not r.duplicate]
                continue
            if hub.ended:
                broken = self._store._writer.broken
                if broken is not None:
                    raise refused_because_broken(broken) from broken
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()

    async def _read_log(self) -> list[RecordedEvent]:
        store = self._store
        size = min(self._page, _CATCH_UP_PAGE)
        if self._session_id is None:
            return await store.read_all(after=self.cursor, limit=size)
        store._check_readable()
        info = await store.backend.info(self._session_id)
        if info is None:
            raise SessionNotFoundError(self._session_id)
        if self.cursor >= info.version:
            return []
        return await store._events(info, self.cursor, min(self.cursor + size, info.version))

    # -------------------------------------------------------------- lifecycle

    def _close(self) -> asyncio.Task[None] | None:
        """Stop now; return the hub's poller task if this stopped it (``aclose`` waits for it to end)."""
        stopped = None
        self._finished = True
        self._current = ()
        self._requests = []
        self._items.clear()
        self._wakeup.set()  # a consumer waiting in another task ends now
        self._attached = False
        if self._hub is not None:
            stopped = self._hub.remove(self)
            self._hub = None
        return stopped

    @on_store_loop
    async def aclose(self) -> None:
        """Stop the subscription and release its listener. Idempotent."""
        await _finished(self._close())

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        what = f"session {self._session_id!r}" if self._session_id is not None else "every session"
        return f"<Subscription to {what} at {self.cursor}>"


def subscribe_session(
    store: SubscriptionSource, session_id: str, *, after: int = 0, buffer_size: int = DEFAULT_BUFFER_EVENTS
) -> Subscription:
    """A subscription to one session's events with version > ``after``."""
    return Subscription(store, validate_session_id(session_id, stored=True), after, buffer_size)


def subscribe_every_session(
    store: SubscriptionSource, *, after: int = 0, buffer_size: int = DEFAULT_BUFFER_EVENTS
) -> Subscription:
    """A subscription to every session's events with store-wide position > ``after``."""
    return Subscription(store, None, after, buffer_size)


__all__ = ["DEFAULT_BUFFER_EVENTS", "Subscription", "subscribe_every_session", "subscribe_session"]


async def _finished(poller: asyncio.Task[None] | None) -> None:
    """Wait for a cancelled poller to end, so that nothing of the subscription outlives ``aclose``."""
    if poller is not None and poller is not asyncio.current_task():
        await asyncio.wait((poller,))
