"""Concurrency: optimistic appenders on 1,000 sessions, 10,000 appenders under backpressure, cancellation.

Checked against what the writer actually did (a batch listener sees every request
in commit order), so a conflict must be reported exactly when, and only when, the
expected version differed from the session's head.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import pytest

import sessiondb
from sessiondb import ConflictError, Message, RecordedEvent
from sessiondb._backends._base import AppendRequest
from sessiondb._store import Store

pytestmark = pytest.mark.anyio


async def _read_everything(store: Store) -> list[RecordedEvent]:
    out: list[RecordedEvent] = []
    while chunk := await store.read_all(after=out[-1].position if out else 0, limit=5_000):
        out += chunk
    return out


def _check_gapless(events: list[RecordedEvent]) -> dict[str, list[RecordedEvent]]:
    assert [e.position for e in events] == list(range(1, len(events) + 1))
    by_session: dict[str, list[RecordedEvent]] = defaultdict(list)
    for e in events:
        by_session[e.session_id].append(e)
    for sid, stream in by_session.items():
        assert [e.version for e in stream] == list(range(1, len(stream) + 1)), sid
    return by_session


async def _optimistic_workload(path: Path, sessions: int, appenders: int, appends: int, seed: int) -> None:
    rng = random.Random(seed)
    async with sessiondb.open_store(path) as store:
        sids = await asyncio.gather(*(store.create_session(session_id=f"s{i}") for i in range(sessions)))
        committed: list[AppendRequest] = []
        store.add_batch_listener(committed.extend)
        conflicts_seen: list[ConflictError] = []
        acknowledged: dict[tuple[str, int], str] = {}

        async def appender(sid: str, who: int) -> None:
            known = 1  # the version after create_session
            for n in range(appends):
                label = f"{who}:{n}"
                while True:
                    try:
                        version = await store.append(sid, Message.user(label), expected_version=known)
                    except ConflictError as conflict:
                        assert conflict.session_id == sid and conflict.expected_version == known
                        assert conflict.actual_version > known  # versions only grow
                        conflicts_seen.append(conflict)
                        known = conflict.actual_version
                        if rng.random() < 0.5:
                            await asyncio.sleep(0)
                        continue
                    assert version == known + 1  # an append expecting k lands exactly at k + 1
                    acknowledged[(sid, version)] = label
                    known = version
                    break
                if rng.random() < 0.3:
                    await asyncio.sleep(0)

        await asyncio.gather(*(appender(sid, w) for sid in sids for w in range(appenders)))

        # Replay the writer's decisions in commit order: a conflict iff expected != head.
        heads = dict.fromkeys(sids, 1)
        conflicts = 0
        for request in committed:
            head = heads[request.session_id]
            if request.expected_version == head:
                assert request.error is None and request.version == head + 1
                heads[request.session_id] = head + 1
            else:
                assert isinstance(request.error, ConflictError)
                assert (request.error.expected_version, request.error.actual_version) == (
                    request.expected_version,
                    head,
                )
                conflicts += 1
        assert conflicts == len(conflicts_seen) > 0
        assert all(head == 1 + appenders * appends for head in heads.values())
        everything = await _read_everything(store)

    async with sessiondb.open_store(path) as store:
        assert await _read_everything(store) == everything
    by_session = _check_gapless(everything)
    assert len(by_session) == sessions
    stored = {(e.session_id, e.version): e.event.text for e in everything if isinstance(e.event, Message)}
    assert stored == acknowledged  # nothing lost, nothing duplicated, each at the version it was acknowledged
    for sid, stream in by_session.items():
        labels = [e.event.text for e in stream if isinstance(e.event, Message)]
        assert len(labels) == len(set(labels)) == appenders * appends
        for w in range(appenders):  # each appender's events in its own order
            mine = [int(label.split(":")[1]) for label in labels if label.split(":")[0] == str(w)]
            assert mine == list(range(appends)), sid


async def test_thousand_sessions_with_expected_versions(tmp_path: Path) -> None:
    await _optimistic_workload(tmp_path / "s", sessions=1_000, appenders=3, appends=3, seed=1)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3))
async def test_thousand_sessions_with_expected_versions_long(tmp_path: Path, seed: int) -> None:
    await _optimistic_workload(tmp_path / "s", sessions=1_000, appenders=5, appends=10, seed=seed)


async def _backpressure_workload(path: Path, appenders: int, max_pending: int) -> None:
    async with sessiondb.open_store(path, max_pending=max_pending) as store:
        peak = 0

        def watch(batch: Sequence[AppendRequest]) -> None:
            nonlocal peak
            peak = max(peak, len(batch), store.statistics()["pending"])

        store.add_batch_listener(watch)
        sids = [await store.create_session() for _ in range(100)]

        async def appender(i: int) -> int:
            return await store.append(sids[i % 100], Message.user(str(i)), Message.assistant(str(i)))

        versions = await asyncio.gather(*(appender(i) for i in range(appenders)))
        assert peak <= max_pending and store.statistics()["largest_batch"] <= max_pending
        assert store.statistics()["pending"] == 0
        per_session = appenders // 100
        for s in range(100):
            mine = sorted(versions[s::100])
            assert mine == list(range(3, 2 * per_session + 2, 2))  # every append got its own two versions
        everything = await _read_everything(store)
    by_session = _check_gapless(everything)
    for stream in by_session.values():
        texts = [e.event.text for e in stream[1:] if isinstance(e.event, Message)]
        assert texts[0::2] == texts[1::2]  # each append's two events are adjacent
        assert len(set(texts)) == per_session


async def test_ten_thousand_appenders_with_a_small_queue(tmp_path: Path) -> None:
    await _backpressure_workload(tmp_path / "s", appenders=10_000, max_pending=64)


@pytest.mark.slow
async def test_fifty_thousand_appenders_with_a_tiny_queue(tmp_path: Path) -> None:
    await _backpressure_workload(tmp_path / "s", appenders=50_000, max_pending=8)


async def _cancellation_workload(path: Path, seed: int, appends: int, max_pending: int) -> tuple[int, int]:
    rng = random.Random(seed)
    async with sessiondb.open_store(path, max_pending=max_pending) as store:
        sids = [await store.create_session() for _ in range(50)]
        labels: dict[str, tuple[str, list[str]]] = {}
        tasks: dict[str, asyncio.Task[int]] = {}
        never_ran: set[str] = set()

        for n in range(appends):
            sid = rng.choice(sids)
            texts = [f"{n}.{k}" for k in range(rng.randint(1, 4))]
            labels[str(n)] = (sid, texts)
            tasks[str(n)] = asyncio.ensure_future(store.append(sid, *(Message.user(t) for t in texts)))
            if rng.random() < 0.03:
                tasks[str(n)].cancel()  # before it ever ran: it must not be stored
                never_ran.add(str(n))

        async def canceller() -> None:
            # Cancel a random third of the appends, at random moments: before they ran, while
            # waiting for queue space, while queued, while their batch is being written.
            victims = rng.sample(sorted(tasks), len(tasks) // 3)
            for name in victims:
                for _ in range(rng.choice([0, 0, 1, 2, 5])):
                    await asyncio.sleep(0)
                if rng.random() < 0.1:
                    await asyncio.sleep(0.001)
                tasks[name].cancel()

        await asyncio.gather(canceller(), *tasks.values(), return_exceptions=True)
        outcome = {name: (None if t.cancelled() else t.result()) for name, t in tasks.items()}
        cancelled = sum(1 for v in outcome.values() if v is None)
        assert 0 < cancelled < appends
        assert never_ran and all(tasks[name].cancelled() for name in never_ran)

        # The store keeps working: every session accepts another append at the next version.
        for sid in sids:
            head = (await store.session_info(sid)).version
            assert await store.append(sid, Message.user("after"), expected_version=head) == head + 1
        everything = await _read_everything(store)
        loaded = {sid: await store.load(sid) for sid in sids}

    async with sessiondb.open_store(path) as store:
        assert await _read_everything(store) == everything
        assert {sid: await store.load(sid) for sid in sids} == loaded

    by_session = _check_gapless(everything)
    where = {
        e.event.text: (e.session_id, e.version)
        for e in everything
        if isinstance(e.event, Message) and "." in e.event.text
    }
    landed_cancelled = 0
    for name, (sid, texts) in labels.items():
        present = [t for t in texts if t in where]
        if not present:
            assert outcome[name] is None, f"append {name} was acknowledged but is missing"
            continue
        assert name not in never_ran, f"append {name} was cancelled before it ran, yet it is stored"
        # Whole or nothing, contiguous, in order, in the right session.
        assert present == texts, f"append {name} is partly stored: {present} of {texts}"
        spots = [where[t] for t in texts]
        assert all(s == sid for s, _ in spots)
        assert [v for _, v in spots] == list(range(spots[0][1], spots[0][1] + len(texts)))
        if outcome[name] is None:
            landed_cancelled += 1
        else:
            assert outcome[name] == spots[-1][1]  # the version returned is where it landed
    stored_texts = [e.event.text for e in everything if isinstance(e.event, Message)]
    assert len(stored_texts) == len(set(stored_texts) - {"after"}) + len(sids)  # nothing stored twice
    assert all(stream[-1].event == Message.user("after") for stream in by_session.values())
    return cancelled, landed_cancelled


@pytest.mark.parametrize("max_pending", [16, 4096])
@pytest.mark.parametrize("seed", range(3))
async def test_cancelled_appends_land_whole_or_not_at_all(tmp_path: Path, seed: int, max_pending: int) -> None:
    cancelled, landed = await _cancellation_workload(tmp_path / "s", seed, appends=1_500, max_pending=max_pending)
    # Cancelled while queued, an append lands all the same; cancelled while waiting for room
    # (a small queue) or before it ran, it does not. Both fates must have been exercised.
    assert 0 < landed < cancelled


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(20))
async def test_cancelled_appends_land_whole_or_not_at_all_long(tmp_path: Path, seed: int) -> None:
    await _cancellation_workload(tmp_path / "s", seed, appends=10_000, max_pending=[8, 64, 16_384][seed % 3])
