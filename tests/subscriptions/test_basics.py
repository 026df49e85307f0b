"""Subscriptions: catch-up then live, forks, deleted sessions, bad arguments, cleanup."""

from __future__ import annotations

import gc
from pathlib import Path

import anyio
import pytest

import sessiondb
from sessiondb import Custom, Message, SessionNotFoundError
from sessiondb._subscriptions import _hubs

pytestmark = pytest.mark.anyio


def _texts(events: list[sessiondb.RecordedEvent]) -> list[str]:
    return [e.event.text for e in events if isinstance(e.event, Message)]


async def _take(subscription: sessiondb._subscriptions.Subscription, count: int) -> list[sessiondb.RecordedEvent]:
    out = []
    async for event in subscription:
        out.append(event)
        if len(out) == count:
            break
    return out


async def test_history_then_live(store: sessiondb.Store) -> None:
    sid = await store.create_session(model="m")
    for i in range(5):
        await store.append(sid, Message.user(f"m{i}"))
    received: list[sessiondb.RecordedEvent] = []
    caught_up = anyio.Event()
    done = anyio.Event()

    async def follow() -> None:
        async with store.subscribe(sid, after=2) as subscription:
            async for event in subscription:
                received.append(event)
                if event.version == 6:
                    caught_up.set()
                if event.version == 9:
                    done.set()
                    return

    async with anyio.create_task_group() as group:
        group.start_soon(follow)
        await caught_up.wait()
        for i in range(5, 8):
            await store.append(sid, Message.user(f"m{i}"))
        await done.wait()
    assert [e.version for e in received] == [3, 4, 5, 6, 7, 8, 9]
    assert _texts(received) == [f"m{i}" for i in range(1, 8)]
    assert all(e.session_id == sid for e in received)


async def test_subscribe_all_in_position_order(store: sessiondb.Store) -> None:
    a = await store.create_session()
    b = await store.create_session()
    await store.append(a, Message.user("a1"))
    await store.append(b, Message.user("b1"))
    subscription = store.subscribe_all(after=1)
    first = await _take(subscription, 3)
    assert [e.position for e in first] == [2, 3, 4]
    await store.append(a, Message.user("a2"), Message.user("a3"))
    more = await _take(subscription, 2)
    assert [e.position for e in more] == [5, 6]
    assert _texts(more) == ["a2", "a3"]
    assert subscription.cursor == 6
    await subscription.aclose()


async def test_fork_yields_parent_history_then_its_own(store: sessiondb.Store) -> None:
    parent = await store.create_session()
    await store.append(parent, Message.user("p1"), Message.user("p2"))
    child = await store.fork(parent, branch_name="b")
    await store.append(parent, Message.user("parent only"))
    subscription = store.subscribe(child)
    history = await _take(subscription, 4)
    assert [(e.session_id, e.version) for e in history] == [(parent, 1), (parent, 2), (parent, 3), (child, 4)]
    await store.append(child, Message.user("c1"))
    (live,) = await _take(subscription, 1)
    assert (live.session_id, live.version, live.event) == (child, 5, Message.user("c1"))
    await subscription.aclose()


async def test_deleted_session_ends_after_its_tombstone(store: sessiondb.Store) -> None:
    sid = await store.create_session()
    await store.append(sid, Message.user("x"))
    subscription = store.subscribe(sid, after=1)
    (event,) = await _take(subscription, 1)
    await store.delete_session(sid)
    rest = [e async for e in subscription]
    assert [type(e.event).__name__ for e in rest] == ["SessionDeleted"]
    assert event.version == 2 and rest[0].version == 3


async def test_missing_session_raises_on_first_iteration(store: sessiondb.Store) -> None:
    subscription = store.subscribe("nope")
    with pytest.raises(SessionNotFoundError, match="nope"):
        await subscription.__anext__()
    assert not _hubs[store].by_session


async def test_bad_arguments_fail_at_once(store: sessiondb.Store) -> None:
    with pytest.raises(sessiondb.InvalidInputError, match="after"):
        store.subscribe("s", after=-1)
    with pytest.raises(sessiondb.InvalidInputError, match="buffer_size"):
        store.subscribe_all(buffer_size=0)
    with pytest.raises(sessiondb.InvalidSessionIdError):
        store.subscribe("a/b")


async def test_closed_store_refuses(tmp_path: Path) -> None:
    store = sessiondb.open_store(tmp_path / "s")
    with pytest.raises(sessiondb.StoreClosedError):
        await store.subscribe_all().__anext__()


async def test_custom_events_and_multi_event_appends_arrive_whole(store: sessiondb.Store) -> None:
    sid = await store.create_session()
    subscription = store.subscribe(sid, after=1)
    await store.append(sid, Custom("a", 1), Custom("b", 2), Custom("c", 3))
    events = await _take(subscription, 3)
    assert [e.event.name for e in events] == ["a", "b", "c"]  # type: ignore[union-attr]
    assert [e.version for e in events] == [2, 3, 4]
    await subscription.aclose()


async def test_aclose_and_abandoned_subscriptions_release_listeners(store: sessiondb.Store) -> None:
    sid = await store.create_session()
    subscription = store.subscribe(sid)
    await _take(subscription, 1)
    hub = _hubs[store]
    assert len(hub.by_session[sid]) == 1
    await subscription.aclose()
    assert sid not in hub.by_session
    with pytest.raises(StopAsyncIteration):
        await subscription.__anext__()

    # A subscription dropped without aclose is released when it is collected.
    async def abandon() -> None:
        async for _ in store.subscribe_all():
            break

    await abandon()
    gc.collect()
    assert len(hub.every) == 0
    await store.append(sid, Message.user("still fine"))


async def test_conflicting_and_duplicate_appends_are_not_delivered(store: sessiondb.Store) -> None:
    sid = await store.create_session()
    subscription = store.subscribe(sid, after=1)
    await store.append(sid, Message.user("one"), event_ids=["e1"])
    await store.append(sid, Message.user("one"), event_ids=["e1"])  # a retry: stored once
    with pytest.raises(sessiondb.ConflictError):
        await store.append(sid, Message.user("stale"), expected_version=0)
    await store.append(sid, Message.user("two"))
    events = await _take(subscription, 2)
    assert _texts(events) == ["one", "two"]
    assert [e.version for e in events] == [2, 3]
    assert events[0].event_id == "e1"
    await subscription.aclose()


async def test_a_closed_store_that_had_subscribers_is_collected(tmp_path: Path) -> None:
    import weakref

    gc.collect()
    # Stores of earlier tests may still be held by the test harness a moment: count only this one.
    hubs_before = len(_hubs)
    store = sessiondb.open_store(tmp_path / "s")
    await store.start()
    sid = await store.create_session()
    subscription = store.subscribe(sid)
    assert (await subscription.__anext__()).version == 1
    await subscription.aclose()
    await store.aclose()
    reference = weakref.ref(store)
    del store, subscription
    gc.collect()
    assert reference() is None
    assert len(_hubs) <= hubs_before


async def test_aclose_from_another_task_ends_a_waiting_consumer(store: sessiondb.Store) -> None:
    sid = await store.create_session()
    subscription = store.subscribe(sid)
    got: list[int] = []
    ended = anyio.Event()

    async def consume() -> None:
        async for event in subscription:
            got.append(event.version)
        ended.set()

    async with anyio.create_task_group() as group:
        group.start_soon(consume)
        while not (subscription._attached and not subscription._catching_up and got):
            await anyio.lowlevel.checkpoint()  # it has delivered v1 and waits for live events
        await subscription.aclose()
        await ended.wait()
    assert got == [1]
    assert sid not in _hubs[store].by_session
