"""Subscriptions under load: the catch-up/live boundary, slow and many subscribers, close, break, cancel."""

from __future__ import annotations

import errno
import random
from pathlib import Path

import anyio
import pytest

import sessiondb
from sessiondb import FileSystem, Message, RecordedEvent, SessionInfo, StoreBrokenError
from sessiondb._backends._memory import MemoryFileSystem
from sessiondb._subscriptions import Subscription, _hubs

pytestmark = pytest.mark.anyio


def _check_session_stream(events: list[sessiondb.RecordedEvent], after: int, last: int) -> None:
    assert [e.version for e in events] == list(range(after + 1, last + 1)), "gap or duplicate"


def _check_all_stream(events: list[sessiondb.RecordedEvent], after: int, last: int) -> None:
    assert [e.position for e in events] == list(range(after + 1, last + 1)), "gap or duplicate"


class _YieldingBackend(sessiondb.LocalBackend):
    """Reads that let other tasks run before and after they look at the index.

    So batches land while a subscriber is reading the log: exactly the windows
    where a catch-up/live switch could lose or repeat an event.
    """

    def __init__(self, rng: random.Random) -> None:
        super().__init__("/:memory:", file_system=MemoryFileSystem())
        self.rng = rng

    async def _pause(self) -> None:
        for _ in range(self.rng.randrange(0, 4)):
            await anyio.lowlevel.checkpoint()

    async def read_session(self, session_id: str, after_version: int, up_to_version: int | None) -> list[RecordedEvent]:
        await self._pause()
        events = await super().read_session(session_id, after_version, up_to_version)
        await self._pause()
        return events

    async def read_all(self, after_position: int, limit: int) -> list[RecordedEvent]:
        await self._pause()
        events = await super().read_all(after_position, limit)
        await self._pause()
        return events

    async def info(self, session_id: str) -> SessionInfo | None:
        info = await super().info(session_id)
        await self._pause()
        return info


@pytest.mark.parametrize("page", [3, 1000])
async def test_boundary_under_concurrent_appends(monkeypatch: pytest.MonkeyPatch, page: int) -> None:
    """Hundreds of trials: a subscriber joins while appenders run; it sees every event exactly once, in order."""
    monkeypatch.setattr("sessiondb._subscriptions._CATCH_UP_PAGE", page)
    rng = random.Random(page)
    async with sessiondb.open_store(_YieldingBackend(rng)) as store:
        for _ in range(150):
            await _boundary_trial(store, rng)
        assert not _hubs[store].every and not _hubs[store].by_session


async def _boundary_trial(store: sessiondb.Store, rng: random.Random, per_session: int = 12) -> None:
    sessions = [await store.create_session() for _ in range(3)]
    start_after = rng.randrange(0, per_session * 3)
    appended = 0
    joined = anyio.Event()
    reached = anyio.Event()
    start_position = store.backend.last_position
    results: dict[str, list[sessiondb.RecordedEvent]] = {}

    async def appender(sid: str) -> None:
        nonlocal appended
        for i in range(per_session):
            await store.append(sid, Message.user(str(i)))
            appended += 1
            if appended >= start_after:
                reached.set()
            if reached.is_set() and rng.random() < 0.3:
                await joined.wait()  # some appends wait for the subscribers, some race them

    async def follow(name: str, subscription: Subscription, done_key: int) -> None:
        out: list[sessiondb.RecordedEvent] = []
        async with subscription:
            async for event in subscription:
                out.append(event)
                if (event.version if name == "one" else event.position) == done_key:
                    break
        results[name] = out

    async with anyio.create_task_group() as group:
        for sid in sessions:
            group.start_soon(appender, sid)
        await reached.wait()
        after_version = rng.randrange(0, 3)
        group.start_soon(follow, "one", store.subscribe(sessions[0], after=after_version), per_session + 1)
        group.start_soon(follow, "all", store.subscribe_all(after=start_position), start_position + 3 * per_session)
        joined.set()
    _check_session_stream(results["one"], after_version, per_session + 1)
    _check_all_stream(results["all"], start_position, start_position + 3 * per_session)


async def _go_live(store: sessiondb.Store, sid: str, *subscriptions: Subscription) -> None:
    """Consume each subscription until it waits for live events, then append one event each gets live."""
    got: list[Subscription] = []

    async def until_live_event(subscription: Subscription) -> None:
        async for event in subscription:
            if event.event == Message.user("live"):
                got.append(subscription)
                return

    def waiting(subscription: Subscription) -> bool:
        idle = subscription._index >= len(subscription._current) and not subscription._requests
        return subscription._attached and not subscription._catching_up and idle

    async with anyio.create_task_group() as group:
        for subscription in subscriptions:
            group.start_soon(until_live_event, subscription)
        while not all(waiting(subscription) for subscription in subscriptions):
            await anyio.lowlevel.checkpoint()
        await store.append(sid, Message.user("live"))
    assert len(got) == len(subscriptions)


async def test_slow_subscriber_falls_back_to_the_log_and_completes(store: sessiondb.Store) -> None:
    sid = await store.create_session()
    subscription = store.subscribe(sid, buffer_size=16)
    every = store.subscribe_all(buffer_size=16)
    await _go_live(store, sid, subscription, every)
    assert subscription._attached and every._attached
    for i in range(200):  # nobody consumes meanwhile
        await store.append(sid, Message.user(str(i)))
        assert subscription._count <= 16 and every._count <= 16  # memory stays bounded
    assert subscription.fallbacks >= 1 and every.fallbacks >= 1
    received = []
    async for event in subscription:
        received.append(event)
        if event.version == 202:
            break
    _check_session_stream(received, 2, 202)
    received = []
    async for event in every:
        received.append(event)
        if event.position == 202:
            break
    _check_all_stream(received, 2, 202)
    # Live again afterwards: a new event arrives through the buffer.
    await _go_live(store, sid, subscription, every)
    await subscription.aclose()
    await every.aclose()


async def test_slow_consumer_while_writers_run() -> None:
    """A consumer that yields control for a while on every event, with writers going: complete and ordered."""
    async with sessiondb.open_store(":memory:") as store:
        sids = [await store.create_session() for _ in range(4)]
        base = store.backend.last_position
        total = 4 * 150
        subscription = store.subscribe_all(after=base, buffer_size=8)
        received: list[sessiondb.RecordedEvent] = []

        async def writer(sid: str) -> None:
            for i in range(150):
                await store.append(sid, Message.user(str(i)))

        async def consumer() -> None:
            async for event in subscription:
                received.append(event)
                for _ in range(20):
                    await anyio.lowlevel.checkpoint()
                if event.position == base + total:
                    break

        async with anyio.create_task_group() as group:
            group.start_soon(consumer)
            for sid in sids:
                group.start_soon(writer, sid)
        _check_all_stream(received, base, base + total)
        assert subscription.fallbacks >= 1
        await subscription.aclose()


async def test_a_thousand_subscribers_on_one_store() -> None:
    async with sessiondb.open_store(":memory:") as store:
        sids = [await store.create_session() for _ in range(10)]
        base = store.backend.last_position
        per_session = 30
        ready = 0
        all_ready = anyio.Event()
        ok = {"one": 0, "all": 0}

        async def follow_one(sid: str) -> None:
            nonlocal ready
            got = []
            async with store.subscribe(sid) as subscription:
                async for event in subscription:
                    got.append(event)
                    if event.version == 1:
                        ready += 1
                        if ready == 1000:
                            all_ready.set()
                    if event.version == per_session + 1:
                        break
            _check_session_stream(got, 0, per_session + 1)
            ok["one"] += 1

        async def follow_all() -> None:
            nonlocal ready
            got = []
            async with store.subscribe_all(after=base - 1) as subscription:
                async for event in subscription:
                    got.append(event)
                    if event.position == base:
                        ready += 1
                        if ready == 1000:
                            all_ready.set()
                    if event.position == base + 10 * per_session:
                        break
            _check_all_stream(got, base - 1, base + 10 * per_session)
            ok["all"] += 1

        async def writer(sid: str) -> None:
            await all_ready.wait()
            for i in range(per_session):
                await store.append(sid, Message.user(str(i)))

        async with anyio.create_task_group() as group:
            for i in range(500):
                group.start_soon(follow_one, sids[i % 10])
                group.start_soon(follow_all)
            for sid in sids:
                group.start_soon(writer, sid)
        assert ok == {"one": 500, "all": 500}
        hub = _hubs[store]
        assert not hub.every and not hub.by_session


async def test_cancelling_a_subscriber_removes_its_listener(store: sessiondb.Store) -> None:
    sid = await store.create_session()
    hub_ready = anyio.Event()
    got: list[int] = []

    async def follow(scope_holder: list[anyio.CancelScope]) -> None:
        with anyio.CancelScope() as scope:
            scope_holder.append(scope)
            async for event in store.subscribe(sid):
                got.append(event.version)
                hub_ready.set()

    holder: list[anyio.CancelScope] = []
    async with anyio.create_task_group() as group:
        group.start_soon(follow, holder)
        await hub_ready.wait()  # the subscriber waits for live events now
        assert len(_hubs[store].by_session[sid]) == 1
        holder[0].cancel()
    assert sid not in _hubs[store].by_session
    await store.append(sid, Message.user("nobody listens"))
    assert got == [1]


async def test_store_close_ends_iterators_after_durable_events(tmp_path: Path) -> None:
    store = sessiondb.open_store(tmp_path / "s")
    await store.start()
    sid = await store.create_session()
    waiting = anyio.Event()
    results: dict[str, list[int]] = {}

    async def follow(name: str, subscription: Subscription, key: str) -> None:
        out = []
        async for event in subscription:
            out.append(getattr(event, key))
            if len(out) == 1:
                waiting.set()
        results[name] = out  # reached only when the iterator ended by itself

    async with anyio.create_task_group() as group:
        group.start_soon(follow, "one", store.subscribe(sid), "version")
        await waiting.wait()
        waiting = anyio.Event()
        group.start_soon(follow, "all", store.subscribe_all(), "position")
        await waiting.wait()
        await store.append(sid, Message.user("last"))
        await store.aclose()
    assert results == {"one": [1, 2], "all": [1, 2]}
    # A subscription made after close fails clearly.
    with pytest.raises(sessiondb.StoreClosedError):
        await store.subscribe(sid).__anext__()


class _FailingSync(FileSystem):
    fail = False

    def fdatasync(self, fd: int) -> None:
        if self.fail:
            raise OSError(errno.EIO, "injected fdatasync failure")
        super().fdatasync(fd)


async def test_broken_store_raises_after_the_durable_events(tmp_path: Path) -> None:
    fs = _FailingSync()
    store = sessiondb.open_store(tmp_path / "s", file_system=fs)
    await store.start()
    try:
        sid = await store.create_session()
        await store.append(sid, Message.user("durable"))
        subscription = store.subscribe(sid)
        every = store.subscribe_all()
        assert (await subscription.__anext__()).version == 1
        assert (await every.__anext__()).position == 1
        fs.fail = True
        with pytest.raises(StoreBrokenError):
            await store.append(sid, Message.user("never durable"))
        assert (await subscription.__anext__()).version == 2
        with pytest.raises(StoreBrokenError):
            await subscription.__anext__()
        assert (await every.__anext__()).position == 2
        with pytest.raises(StoreBrokenError):
            await every.__anext__()
        assert sid not in _hubs[store].by_session and not _hubs[store].every
    finally:
        await store.aclose()


class _HintBackend(sessiondb.LocalBackend):
    """A backend with a wake-up hint, as a shared-database backend would have."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.changed = anyio.Event()
        self.calls = 0

    async def wait_for_new_events(self, after_position: int, timeout: float) -> int:
        self.calls += 1
        with anyio.move_on_after(timeout):
            await self.changed.wait()
            self.changed = anyio.Event()
        return self.last_position


async def test_backend_wake_up_hint_sends_subscribers_to_the_log(tmp_path: Path) -> None:
    backend = _HintBackend(str(tmp_path / "s"))
    async with sessiondb.open_store(backend) as store:
        sid = await store.create_session()
        subscription = store.subscribe(sid)
        await _go_live(store, sid, subscription)
        while backend.calls == 0:  # the store's poller asks the backend
            await anyio.lowlevel.checkpoint()
        # Simulate an event that another process wrote: it reaches the log but not the listener.
        hub = _hubs[store]
        saved = dict(hub.by_session)
        hub.by_session.clear()
        await store.append(sid, Message.user("from elsewhere"))
        hub.by_session.update(saved)
        backend.changed.set()
        event = await subscription.__anext__()
        assert event.version == 3 and event.event == Message.user("from elsewhere")
        assert subscription.fallbacks == 1
        await subscription.aclose()
        assert hub._poller is None  # the poller stops with the last subscriber
