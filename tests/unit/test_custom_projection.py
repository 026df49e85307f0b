"""User projections: folded as events are appended, equal to a full replay, with correct cache invalidation."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import sessiondb
from sessiondb import Custom, Message, Projection, RecordedEvent, ToolUse, Usage
from sessiondb._backends._memory import MemoryFileSystem
from sessiondb._store import Store

pytestmark = pytest.mark.anyio


class Counting:
    """A fold (token totals per model, tool calls by name) that counts how often it runs."""

    def __init__(self) -> None:
        self.calls = 0

    @staticmethod
    def initial(session_id: str) -> dict[str, Any]:
        return {"session": session_id, "tokens": 0, "tools": {}, "events": 0, "last_version": 0, "custom": []}

    def fold(self, state: dict[str, Any], recorded: RecordedEvent) -> dict[str, Any]:
        self.calls += 1
        # A pure fold: never mutate the state it was given.
        state = {**state, "tools": dict(state["tools"]), "custom": list(state["custom"])}
        state["events"] += 1
        assert recorded.version == state["last_version"] + 1, "events must arrive once each, in order"
        state["last_version"] = recorded.version
        event = recorded.event
        if isinstance(event, Message):
            if event.usage is not None:
                state["tokens"] += event.usage.total_tokens
            for block in event.blocks:
                if isinstance(block, ToolUse):
                    state["tools"][block.name] = state["tools"].get(block.name, 0) + 1
        elif isinstance(event, Custom):
            state["custom"].append(event.data)
        return state


def _projection(counting: Counting, name: str = "totals") -> Projection[dict[str, Any]]:
    return Projection(name, counting.initial, counting.fold)


async def _full_replay(store: Store, sid: str) -> dict[str, Any]:
    fresh = Counting()
    return _projection(fresh).replay(sid, [e async for e in store.read(sid)])


def _random_event(rng: random.Random) -> Message | Custom:
    kind = rng.randrange(3)
    if kind == 0:
        return Message.assistant([ToolUse(str(rng.random()), rng.choice(["bash", "edit"]), "{}")], usage=Usage(1, 2))
    if kind == 1:
        return Message.user("u")
    return Custom("note", rng.randrange(100))


async def test_state_is_maintained_incrementally_and_equals_a_full_replay() -> None:
    counting = Counting()
    async with sessiondb.open_store(":memory:") as store:
        store.register_projection(_projection(counting))
        sid = await store.create_session()
        await store.append(sid, Message.assistant([ToolUse("1", "bash", "{}")], usage=Usage(3, 4)))
        state = await store.project(sid, "totals")
        assert state["tools"] == {"bash": 1} and state["tokens"] == 7 and counting.calls == 2
        rng = random.Random(7)
        for _ in range(30):
            events = [_random_event(rng) for _ in range(rng.randint(1, 3))]
            calls_before = counting.calls
            await store.append(sid, *events)
            # Folded once per new event when the batch committed, not replayed from the start.
            assert counting.calls == calls_before + len(events)
            state = await store.project(sid, "totals")
            assert counting.calls == calls_before + len(events)
            assert state == await _full_replay(store, sid)
        assert state["last_version"] == (await store.session_info(sid)).version


async def test_concurrent_appends_to_many_sessions_keep_every_state_right() -> None:
    counting = Counting()
    async with sessiondb.open_store(":memory:") as store:
        store.register_projection(_projection(counting))
        sids = [await store.create_session() for _ in range(20)]
        for sid in sids:
            await store.project(sid, "totals")  # warm the cache so batches fold into it
        rng = random.Random(3)

        async def writer(sid: str) -> None:
            for _ in range(10):
                await store.append(sid, *(_random_event(rng) for _ in range(rng.randint(1, 3))))

        await asyncio.gather(*(writer(sid) for sid in sids))
        for sid in sids:
            assert await store.project(sid, "totals") == await _full_replay(store, sid)


async def test_failed_and_duplicate_appends_are_not_folded() -> None:
    counting = Counting()
    async with sessiondb.open_store(":memory:", max_event_bytes=10_000) as store:
        store.register_projection(_projection(counting))
        sid = await store.create_session()
        await store.append(sid, Custom("a", 1), event_ids=["e1"])
        before = await store.project(sid, "totals")
        calls = counting.calls
        assert await store.append(sid, Custom("a", 1), event_ids=["e1"]) == 2  # a retry: stored once
        with pytest.raises(sessiondb.ConflictError):
            await store.append(sid, Custom("b", 2), expected_version=1)
        with pytest.raises(sessiondb.EventTooLargeError):
            await store.append(sid, Custom("c", 3), Custom("big", "x" * 20_000))
        assert counting.calls == calls
        assert await store.project(sid, "totals") == before == await _full_replay(store, sid)
        assert before["custom"] == [1]


async def test_forks_project_their_parents_history_and_then_their_own() -> None:
    counting = Counting()
    async with sessiondb.open_store(":memory:") as store:
        store.register_projection(_projection(counting))
        parent = await store.create_session()
        await store.append(parent, Custom("p", 1), Custom("p", 2), Custom("p", 3))
        assert (await store.project(parent, "totals"))["custom"] == [1, 2, 3]
        child = await store.fork(parent, at_version=3)
        await store.append(parent, Custom("p", 4))
        await store.append(child, Custom("c", 5))
        assert (await store.project(child, "totals"))["custom"] == [1, 2, 5]
        await store.append(child, Custom("c", 6))
        assert (await store.project(child, "totals"))["custom"] == [1, 2, 5, 6]
        assert (await store.project(parent, "totals"))["custom"] == [1, 2, 3, 4]
        assert await store.project(child, "totals") == await _full_replay(store, child)


async def test_evicted_states_are_rebuilt_from_the_log() -> None:
    counting = Counting()
    backend = sessiondb.LocalBackend("/:memory:", file_system=MemoryFileSystem())
    store = Store(backend, projection_cache_size=2)
    await store.start()
    try:
        store.register_projection(_projection(counting))
        sids = [await store.create_session() for _ in range(3)]
        for i, sid in enumerate(sids):
            await store.append(sid, *(Custom("n", i) for _ in range(4)))
            await store.project(sid, "totals")
        # The cache holds two sessions; the first was evicted, so its next use replays all 5 events.
        calls = counting.calls
        await store.append(sids[0], Custom("n", 99))
        assert counting.calls == calls
        state = await store.project(sids[0], "totals")
        assert counting.calls == calls + 6
        assert state == await _full_replay(store, sids[0]) and state["custom"][-1] == 99
        # The most recently used sessions are still folded incrementally.
        calls = counting.calls
        await store.append(sids[2], Custom("n", 7))
        assert counting.calls == calls + 1
        assert await store.project(sids[2], "totals") == await _full_replay(store, sids[2])
    finally:
        await store.aclose()


async def test_projection_state_survives_reopen(tmp_path: Path) -> None:
    async with sessiondb.open_store(tmp_path / "s") as store:
        store.register_projection(_projection(Counting()))
        sid = await store.create_session()
        await store.append(sid, Message.assistant([ToolUse("1", "edit", "{}")], usage=Usage(1, 1)))
        first = await store.project(sid, "totals")
    async with sessiondb.open_store(tmp_path / "s") as store:
        store.register_projection(_projection(Counting()))
        assert await store.project(sid, "totals") == first
        await store.append(sid, Message.assistant([ToolUse("2", "edit", "{}")]))
        assert (await store.project(sid, "totals"))["tools"] == {"edit": 2}


async def test_projection_errors() -> None:
    async with sessiondb.open_store(":memory:") as store:
        store.register_projection(_projection(Counting()))
        with pytest.raises(sessiondb.InvalidInputError, match="already registered"):
            store.register_projection(_projection(Counting()))
        sid = await store.create_session()
        with pytest.raises(sessiondb.InvalidInputError, match="no projection named 'nope'"):
            await store.project(sid, "nope")
        with pytest.raises(sessiondb.SessionNotFoundError):
            await store.project("missing", "totals")
        await store.delete_session(sid)
        with pytest.raises(sessiondb.SessionNotFoundError):
            await store.project(sid, "totals")
    with pytest.raises(ValueError):
        Projection("", Counting.initial, Counting().fold)


async def test_two_projections_are_independent() -> None:
    async with sessiondb.open_store(":memory:") as store:
        store.register_projection(_projection(Counting(), "a"))
        kinds: Projection[Counter[str]] = Projection(
            "kinds", lambda _sid: Counter(), lambda c, e: c + Counter([type(e.event).__name__])
        )
        store.register_projection(kinds)
        sid = await store.create_session()
        await store.project(sid, kinds)
        await store.append(sid, Message.user("x"), Custom("c"), Message.user("y"))
        assert await store.project(sid, "kinds") == Counter({"SessionStarted": 1, "Message": 2, "Custom": 1})
        assert (await store.project(sid, "a"))["events"] == 4


async def test_projecting_a_long_session_while_appends_continue(tmp_path: Path) -> None:
    counting = Counting()
    async with sessiondb.open_store(tmp_path / "s") as store:
        store.register_projection(_projection(counting))
        sid = await store.create_session()
        for start in range(0, 3_000, 500):
            await store.append(sid, *(Custom("n", i) for i in range(start, start + 500)))
        stop = asyncio.Event()

        async def keep_appending() -> None:
            i = 3_000
            while not stop.is_set():
                await store.append(sid, Custom("n", i), Custom("n", i + 1))
                i += 2

        async def keep_projecting() -> None:
            # Long sessions are read in a worker thread, so appends commit during the replay.
            for _ in range(15):
                state = await store.project(sid, "totals")
                assert state["custom"] == list(range(len(state["custom"])))
                store._projection_cache.clear()  # force full replays that race with the appender
            stop.set()

        await asyncio.gather(keep_appending(), keep_projecting())
        state = await store.project(sid, "totals")
        assert state == await _full_replay(store, sid)
        assert state["last_version"] == (await store.session_info(sid)).version
