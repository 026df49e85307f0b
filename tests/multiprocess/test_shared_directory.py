"""Several stores on one directory, in one process: each open is a writer like another process's.

flock locks belong to an open file description, so two ``open_store`` calls on
one directory exclude each other exactly as two processes do. These tests use
that to drive the multi-writer paths deterministically (a torn tail left by a
dead writer, a segment another writer rolled, compaction in another writer);
the real-process campaigns are in the other files of this folder.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

import sessiondb
from sessiondb import CompactionSettings, Message
from sessiondb._backends.local._locks import mount_type
from sessiondb._backends.local._verify import verify_store
from sessiondb.testing import FaultyFileSystem
from sessiondb.testing._crashwork import Ledger, Workload, check_store

pytestmark = pytest.mark.anyio

QUIET = CompactionSettings(background=False)


def _open(path: Path, **options: object) -> sessiondb.Store:
    options.setdefault("compaction", QUIET)
    return sessiondb.open_store(path, **options)  # type: ignore[arg-type]


def _segments(path: Path) -> list[str]:
    return sorted(name for name in os.listdir(path) if name.endswith(".seg"))


async def test_two_writers_share_sessions_versions_and_positions(tmp_path: Path) -> None:
    async with _open(tmp_path) as a, _open(tmp_path) as b:
        await a.create_session(session_id="shared")
        # B sees A's session at once (a read after an append returned sees it) and appends after it.
        assert (await b.session_info("shared")).version == 1
        for round_ in range(20):
            writer = a if round_ % 2 else b
            info = await writer.session_info("shared")
            await writer.append("shared", Message.user(f"r{round_}"), expected_version=info.version)
        with pytest.raises(sessiondb.ConflictError):
            await a.append("shared", Message.user("stale"), expected_version=5)
        # Event ids are idempotent across writers: B's retry of A's append writes nothing.
        first = await a.append("shared", Message.user("once"), event_ids=["id-1"])
        again = await b.append("shared", Message.user("once"), event_ids=["id-1"])
        assert again == first
        for store in (a, b):
            events = [event async for event in store.read("shared")]
            assert [event.version for event in events] == list(range(1, 23))
            positions = [event.position for event in await store.read_all(limit=1000)]
            assert positions == list(range(1, 23))
            assert [s.session_id for s in await store.list_sessions()] == ["shared"]


async def test_concurrent_batches_from_two_writers_interleave_whole(tmp_path: Path) -> None:
    async with _open(tmp_path) as a, _open(tmp_path) as b:

        async def drive(store: sessiondb.Store, name: str) -> None:
            await store.create_session(session_id=name)
            await asyncio.gather(
                *(store.append(name, Message.user(f"{name}{i}"), Message.assistant(f"{name}{i}")) for i in range(100))
            )

        await asyncio.gather(drive(a, "from-a"), drive(b, "from-b"))
    async with _open(tmp_path) as reopened:
        events = await reopened.read_all(limit=10_000)
        assert [event.position for event in events] == list(range(1, 403))
        for name in ("from-a", "from-b"):
            mine = [event for event in events if event.session_id == name]
            assert [event.version for event in mine] == list(range(1, 202))
            # Each two-event append landed whole: the pair is adjacent in position order.
            for user, assistant in zip(mine[1::2], mine[2::2], strict=True):
                assert assistant.position == user.position + 1


async def test_a_dead_writers_torn_tail_is_cut_by_the_next_writer_only(tmp_path: Path) -> None:
    async with _open(tmp_path) as a:
        await a.create_session(session_id="s")
        await a.append("s", Message.user("kept"))
        segment = tmp_path / _segments(tmp_path)[-1]
        size = segment.stat().st_size
        # What a writer killed inside its write() leaves: a frame header and part of its payload.
        with open(segment, "ab") as handle:
            handle.write(b'{"batch":1,"bytes":500,"crc":1,"first":3}\n{"s":"s","v":3,')
        torn = segment.stat().st_size
        async with _open(tmp_path, read_only=True) as reader:
            # A reader (no write lock) cannot tell it from a live writer's frame: it reads around it ...
            assert (await reader.load("s")).messages[-1].blocks[0].text == "kept"  # type: ignore[union-attr]
        assert segment.stat().st_size == torn  # ... and leaves it alone.
        assert len([event async for event in a.read("s")]) == 2
        # The next writer holds the write lock, so the tail can only be a dead writer's: it is cut.
        assert await a.append("s", Message.user("after")) == 3
        assert a.backend._follower.cut_tails[0][1] == size  # type: ignore[attr-defined]
    async with _open(tmp_path) as reopened:
        assert [event.version async for event in reopened.read("s")] == [1, 2, 3]


async def test_a_segment_rolled_by_another_writer_is_followed(tmp_path: Path) -> None:
    async with _open(tmp_path) as big, _open(tmp_path, segment_bytes=1024) as small:
        await big.create_session(session_id="s")
        for i in range(30):
            await small.append("s", Message.user(f"{i}" * 100))
        assert len(_segments(tmp_path)) > 5
        # The writer with large segments writes to the newest segment, not the sealed one it opened.
        version = await big.append("s", Message.user("from big"))
        assert version == 32
        assert big.backend.segments.active.number == len(_segments(tmp_path))  # type: ignore[attr-defined]
        assert (await small.load("s")).version == 32
    report = verify_store(tmp_path)
    assert report.ok, report


async def test_one_writer_compacts_at_a_time(tmp_path: Path) -> None:
    async with _open(tmp_path) as a, _open(tmp_path) as b:
        await a.create_session(session_id="s")
        assert await b.backend.begin_maintenance()
        try:
            done = await a.compact()
            assert done.get("skipped") == "another process is compacting this store"
        finally:
            b.backend.end_maintenance()
        assert "skipped" not in await a.compact()


async def test_retention_in_another_writer_is_read_through_its_snapshots(tmp_path: Path) -> None:
    eager = CompactionSettings(background=False, min_tail_events=1, keep_segments=1)
    async with (
        _open(tmp_path, segment_bytes=1024) as reader,
        _open(tmp_path, segment_bytes=1024, compaction=eager) as b,
    ):
        await b.create_session(session_id="s")
        for i in range(40):
            await b.append("s", Message.user(f"{i}" * 60))
        before = await reader.load("s")  # the reader's index points into the early segments
        first_segment = _segments(tmp_path)[0]
        await b.compact()
        assert first_segment not in _segments(tmp_path)  # retention removed history the reader indexed
        await b.append("s", Message.user("last"))
        after = await reader.load("s")
        assert after.messages[: len(before.messages)] == before.messages
        assert after == await b.load("s")


async def test_subscribers_receive_another_writers_events_in_order(tmp_path: Path) -> None:
    async with _open(tmp_path) as a, _open(tmp_path) as b:
        await a.create_session(session_id="s")
        everything = a.subscribe_all()
        one = a.subscribe("s")
        for i in range(30):
            writer = a if i % 3 == 0 else b
            await writer.append("s", Message.user(str(i)))

        async def take(subscription: sessiondb.Subscription, count: int) -> list[sessiondb.RecordedEvent]:
            got = []
            async for event in subscription:
                got.append(event)
                if len(got) == count:
                    break
            return got

        seen_all = await asyncio.wait_for(take(everything, 31), 30)
        seen_one = await asyncio.wait_for(take(one, 31), 30)
        assert [event.position for event in seen_all] == list(range(1, 32))
        assert [event.version for event in seen_one] == list(range(1, 32))
        await everything.aclose()
        await one.aclose()


async def test_power_loss_with_two_writers_loses_nothing_acknowledged(tmp_path: Path) -> None:
    """Two writers on one fault-injecting file system; the power is cut at every k-th operation."""
    clean = await _two_writer_power_trial(tmp_path / "clean", None, seed=0)
    total = clean.mutations
    assert total > 40
    for k in range(1, total + 2, max(1, total // 60)):
        await _two_writer_power_trial(tmp_path / f"k{k}", k, seed=k)


async def _two_writer_power_trial(path: Path, k: int | None, *, seed: int) -> FaultyFileSystem:
    fs = FaultyFileSystem(path, power_cut_at=k, seed=seed)
    ledger = Ledger()
    stores = [_open(path, file_system=fs, segment_bytes=2048) for _ in range(2)]
    started = []
    for store in stores:
        try:
            await store.start()
            started.append(store)
        except sessiondb.StoreBrokenError:
            assert not fs.powered
    workloads = [Workload(store, seed * 10 + n + 1, ledger.feed, tasks=3) for n, store in enumerate(started)]
    await asyncio.gather(*(workload.run(steps=6, resume=False) for workload in workloads))
    for workload in workloads:
        for error in workload.errors:
            assert isinstance(error, (sessiondb.StoreBrokenError, OSError)), error
    for store in started:
        await store.aclose()
    fs.crash("tear")
    problems = await check_store(path, ledger)
    assert problems == [], (k, problems)
    return fs


def test_network_file_systems_are_recognised() -> None:
    mountinfo = (
        "22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n"
        "40 22 0:35 / /mnt/share rw,relatime - nfs4 server:/export rw,vers=4.2\n"
        "41 22 0:36 / /mnt/ssh rw - fuse.sshfs host:/x rw\n"
        "42 40 0:37 / /mnt/share/local rw - tmpfs tmpfs rw\n"
    )
    assert mount_type("/mnt/share/store", mountinfo) == "nfs4"
    assert mount_type("/mnt/ssh/store", mountinfo) == "fuse.sshfs"
    assert mount_type("/mnt/share/local/store", mountinfo) is None  # the deeper mount wins
    assert mount_type("/home/me/store", mountinfo) is None


async def test_a_reader_opened_on_an_empty_directory_follows_the_first_writer(tmp_path: Path) -> None:
    tmp_path.joinpath("store").mkdir()
    async with _open(tmp_path / "store", read_only=True) as reader:
        assert await reader.list_sessions() == []
        async with _open(tmp_path / "store") as writer:
            await writer.create_session(session_id="first")
            await writer.append("first", Message.user("hello"))
        assert [info.session_id for info in await reader.list_sessions()] == ["first"]
        assert (await reader.load("first")).version == 2
