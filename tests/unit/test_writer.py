"""The group-commit writer: many appends per batch, order kept per session and store-wide."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from pathlib import Path

import anyio
import pytest

import sessiondb
from sessiondb import Message, RecordedEvent
from sessiondb._backends._base import AppendRequest
from sessiondb._backends._memory import MemoryFileSystem
from sessiondb._store import Store

pytestmark = pytest.mark.anyio


async def _read_everything(store: Store, page: int = 97) -> list[RecordedEvent]:
    """Every event store-wide, paging through read_all with an awkward page size."""
    out: list[RecordedEvent] = []
    while True:
        chunk = await store.read_all(after=out[-1].position if out else 0, limit=page)
        if not chunk:
            return out
        out += chunk


def _check_store_wide_order(events: list[RecordedEvent]) -> None:
    assert [e.position for e in events] == list(range(1, len(events) + 1))
    versions: dict[str, int] = {}
    for e in events:
        assert e.version == versions.get(e.session_id, 0) + 1, f"gap or reorder in {e.session_id} at {e.position}"
        versions[e.session_id] = e.version


async def test_concurrent_appends_share_batches(tmp_path: Path) -> None:
    async with sessiondb.open_store(tmp_path / "s") as store:
        sids = [await store.create_session() for _ in range(300)]
        batches_before = store.statistics()["batches"]
        seen: list[int] = []
        store.add_batch_listener(lambda batch: seen.append(len(batch)))
        versions = await asyncio.gather(*(store.append(sid, Message.user("x")) for sid in sids))
        assert versions == [2] * 300
        stats = store.statistics()
        batches = stats["batches"] - batches_before
        assert 1 <= batches < 300 / 10, f"{batches} batches for 300 concurrent appends: no group commit"
        assert sum(seen) == 300 and len(seen) == batches  # the listener saw every committed batch once
        assert stats["largest_batch"] > 1 and stats["pending"] == 0
        _check_store_wide_order(await _read_everything(store))


async def test_sequential_appends_still_commit_one_by_one() -> None:
    async with sessiondb.open_store(":memory:") as store:
        sid = await store.create_session()
        before = store.statistics()["batches"]
        for i in range(20):
            assert await store.append(sid, Message.user(str(i))) == i + 2
        assert store.statistics()["batches"] - before == 20  # nothing waits for a batch to fill


async def test_per_session_order_is_submission_order() -> None:
    async with sessiondb.open_store(":memory:") as store:
        sid = await store.create_session()
        # Submitted in this order (each task queues before its first suspension): FIFO per session.
        versions = await asyncio.gather(*(store.append(sid, Message.user(str(i))) for i in range(500)))
        assert versions == list(range(2, 502))
        assert [e.event.text async for e in store.read(sid, after=1)] == [str(i) for i in range(500)]  # type: ignore[union-attr]


async def test_interleaved_writers_keep_their_own_order_and_positions_are_gapless(tmp_path: Path) -> None:
    rng = random.Random(11)
    async with sessiondb.open_store(tmp_path / "s") as store:
        sids = [await store.create_session() for _ in range(40)]
        acknowledged: dict[tuple[str, int], str] = {}

        async def writer(w: int) -> None:
            for n in range(25):
                sid = rng.choice(sids)
                events = [Message.user(f"{w}:{n}:{k}") for k in range(rng.randint(1, 3))]
                version = await store.append(sid, *events)
                for k, event in enumerate(events):
                    acknowledged[(sid, version - len(events) + 1 + k)] = event.text
                if rng.random() < 0.3:
                    await asyncio.sleep(0)

        await asyncio.gather(*(writer(w) for w in range(60)))
        everything = await _read_everything(store)
        _check_store_wide_order(everything)
        texts = {(e.session_id, e.version): e.event.text for e in everything if isinstance(e.event, Message)}
        assert texts == acknowledged  # each returned version names exactly the events of that call
        # Each writer's messages appear in the order it wrote them (positions increase).
        position = {(e.session_id, e.version): e.position for e in everything}
        by_writer: dict[str, list[tuple[int, int, int]]] = {}
        for key, text in acknowledged.items():
            w, n, k = text.split(":")
            by_writer.setdefault(w, []).append((int(n), int(k), position[key]))
        for entries in by_writer.values():
            entries.sort()
            assert [p for *_, p in entries] == sorted(p for *_, p in entries)
        # A multi-event append is contiguous in the log.
        for e in everything:
            if isinstance(e.event, Message) and e.event.text.endswith(":1"):
                assert position[(e.session_id, e.version - 1)] == e.position - 1
    async with sessiondb.open_store(tmp_path / "s") as store:
        assert await _read_everything(store, page=10_000) == everything


@pytest.mark.parametrize("through_open_store", [False, True])
async def test_max_batch_bounds_every_batch(through_open_store: bool) -> None:
    if through_open_store:
        store = sessiondb.open_store(":memory:", max_batch=16)
    else:
        store = Store(sessiondb.LocalBackend("/:memory:", file_system=MemoryFileSystem()), max_batch=16)
    async with store:
        sids = [await store.create_session() for _ in range(10)]
        sizes: list[int] = []
        store.add_batch_listener(lambda batch: sizes.append(len(batch)))
        await asyncio.gather(*(store.append(sids[i % 10], Message.user(str(i))) for i in range(500)))
        assert max(sizes) == 16 and sum(sizes) == 500 and store.statistics()["largest_batch"] == 16
        _check_store_wide_order(await _read_everything(store))


@pytest.mark.parametrize(
    ("option", "bad"),
    [
        ("max_batch", 0),
        ("max_pending", -1),
        ("max_events_per_append", 1.5),
        ("segment_bytes", 0),
        ("max_event_bytes", "1MB"),
    ],
)
def test_bad_tuning_options_are_refused_at_open(option: str, bad: object) -> None:
    with pytest.raises(sessiondb.InvalidInputError, match=f"{option} must be a positive int"):
        sessiondb.open_store(":memory:", **{option: bad})  # type: ignore[arg-type]


async def test_batch_listener_sees_committed_requests_and_can_be_removed() -> None:
    async with sessiondb.open_store(":memory:") as store:
        sid = await store.create_session()
        calls: list[Sequence[AppendRequest]] = []
        remove = store.add_batch_listener(calls.append)
        results = await asyncio.gather(
            store.append(sid, Message.user("a")),
            store.append(sid, Message.user("b"), expected_version=1),  # conflicts: a came first
            return_exceptions=True,
        )
        assert results[0] == 2 and isinstance(results[1], sessiondb.ConflictError)
        assert len(calls) == 1 and [r.version for r in calls[0]] == [2, 0]
        assert calls[0][0].error is None and isinstance(calls[0][1].error, sessiondb.ConflictError)
        remove()
        await store.append(sid, Message.user("c"))
        assert len(calls) == 1


@pytest.mark.parametrize("seed", range(5))
async def test_blocked_appenders_are_admitted_in_order_even_when_some_are_cancelled(seed: int) -> None:
    rng = random.Random(seed)
    async with sessiondb.open_store(":memory:", max_pending=2) as store:
        sid = await store.create_session()
        tasks = [asyncio.ensure_future(store.append(sid, Message.user(str(i)))) for i in range(400)]
        victims = set(rng.sample(range(400), 150))

        async def canceller() -> None:
            for i in sorted(victims, key=lambda _: rng.random()):
                for _ in range(rng.randint(0, 3)):
                    await asyncio.sleep(0)
                tasks[i].cancel()

        # A cancelled waiter that had been handed room must pass it on, or the rest would hang.
        with anyio.fail_after(30):
            await asyncio.gather(canceller(), *tasks, return_exceptions=True)
        survivors = [i for i in range(400) if not tasks[i].cancelled()]
        texts = [e.event.text async for e in store.read(sid, after=1)]  # type: ignore[union-attr]
        for i in survivors:
            assert tasks[i].result() == texts.index(str(i)) + 2
        # Admitted in arrival order: the stored appends keep the order in which they were made.
        assert [int(t) for t in texts] == sorted(int(t) for t in texts)
        assert store.statistics()["pending"] == 0
        assert await store.append(sid, Message.user("after")) == len(texts) + 2


async def test_a_woken_waiter_that_is_cancelled_passes_its_room_on() -> None:
    async with sessiondb.open_store(":memory:", max_pending=1) as store:
        sid = await store.create_session()
        first = asyncio.ensure_future(store.append(sid, Message.user("first")))
        woken = asyncio.ensure_future(store.append(sid, Message.user("woken")))
        last = asyncio.ensure_future(store.append(sid, Message.user("last")))
        await asyncio.sleep(0)  # "first" is queued, the other two wait for room
        assert store.statistics()["pending"] == 1 and len(store._writer._space_waiters) == 2
        await asyncio.sleep(0)  # the writer takes "first" and hands the room to "woken" ...
        assert len(store._writer._space_waiters) == 1 and not woken.done()
        woken.cancel()  # ... which is cancelled before it could use it
        with anyio.fail_after(10):
            assert await first == 2
            assert await last == 3  # the room was passed on; without that, "last" waits forever
        assert woken.cancelled()
        assert [e.event.text async for e in store.read(sid, after=1)] == ["first", "last"]  # type: ignore[union-attr]
