"""Corruption anywhere in the segments: open recovers the acknowledged prefix or names file and offset;
verify reports it; repair keeps exactly everything before the damage, says what it dropped, and the store opens.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import pytest

import sessiondb
from sessiondb import CorruptionError, Message, StoreLockedError
from sessiondb._backends.local import repair_store, verify_store
from sessiondb._backends.local._format import scan_segment

pytestmark = pytest.mark.anyio

Event = tuple[str, int, int, str]


async def _build(path: Path) -> None:
    async with sessiondb.open_store(path, segment_bytes=2048) as store:
        for i in range(4):
            await store.create_session(session_id=f"s{i}", model="m")
        for turn in range(12):
            for i in range(4):
                await store.append(f"s{i}", Message.user(f"s{i} turn {turn} " + "z" * (turn * 7)))
            if turn == 5:
                await store.fork("s1", at_version=4, session_id="fork")
                await store.record_compaction("s2", summary="sum", removed_message_count=2)
        await store.append("fork", Message.user("a"), Message.assistant("b"), Message.tool_result("t", "x", "c"))


async def _events(path: Path) -> list[Event]:
    async with sessiondb.open_store(path) as store:
        events = await store.read_all(after=0, limit=1_000_000)
        for info in await store.list_sessions():
            await store.load(info.session_id)
    return [(e.session_id, e.version, e.position, repr(e.event)) for e in events]


def _segments(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.suffix == ".seg")


@pytest.fixture
async def original(tmp_path: Path) -> tuple[Path, list[Event]]:
    path = tmp_path / "original"
    await _build(path)
    return path, await _events(path)


def _copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    (target / "LOCK").unlink(missing_ok=True)
    return target


def _damage_position(segment: Path, offset: int, data_before: bytes) -> int:
    """The first position lost when byte ``offset`` of ``segment`` is damaged."""
    scan = scan_segment(data_before)
    assert scan.header is not None
    header_end = data_before.index(b"\n") + 1
    if offset < header_end:
        return scan.header.first_position
    for frame in scan.frames:
        if frame.offset <= offset < frame.end:
            return frame.first_position
    raise AssertionError("offset outside every frame")


async def test_intact_store_verifies(original: tuple[Path, list[Event]]) -> None:
    path, events = original
    report = verify_store(path)
    assert report.ok and report.problems == [] and report.events == len(events)
    assert len(report.segments) >= 5 and report.sessions == 5
    assert "OK" in report.format()
    repaired = repair_store(path)
    assert not repaired.changed and repaired.kept_events == len(events)
    assert await _events(path) == events


@pytest.mark.parametrize("trial", range(60))
async def test_random_damage(original: tuple[Path, list[Event]], tmp_path: Path, trial: int) -> None:
    source, events = original
    rng = random.Random(trial)
    work = _copy(source, tmp_path / "work")
    segments = _segments(work)
    segment = segments[rng.randrange(len(segments))]
    before = segment.read_bytes()
    damaged = bytearray(before)
    offset = rng.randrange(len(before))
    kind = rng.choice(["flip", "zeros", "random", "flip"])
    length = 1
    if kind == "flip":
        damaged[offset] ^= 1 << rng.randrange(8)
    else:
        length = min(rng.randint(1, 64), len(before) - offset)
        damaged[offset : offset + length] = bytes(length) if kind == "zeros" else rng.randbytes(length)
    if bytes(damaged) == before:
        pytest.skip("the damage happened to write the same bytes")
    segment.write_bytes(bytes(damaged))
    lost_from = _damage_position(segment, offset, before)
    prefix = [e for e in events if e[2] < lost_from]

    report = verify_store(work)
    assert report.problems, "verify must see the damage"
    first = report.problems[0]
    assert first.path == str(segment)
    try:
        recovered = await _events(work)
    except CorruptionError as exc:
        assert not report.ok
        assert exc.path == str(segment) and exc.offset >= first.offset
        assert str(segment) in str(exc)
    else:
        # Open accepted it: only a torn tail at the very end; exactly the prefix before it survives.
        assert report.ok and first.kind == "torn_tail"
        assert recovered == prefix
        return
    repaired = repair_store(work)
    assert repaired.changed and repaired.kept_events == len(prefix)
    assert repaired.saved_to is not None and os.path.isdir(repaired.saved_to)
    dropped = {(sid, v) for d in repaired.dropped for sid, versions in d.versions.items() for v in versions}
    beyond = {(e[0], e[1]) for e in events if e[2] >= lost_from}
    assert dropped <= beyond  # it names only what was really dropped ...
    # Batches the damage touched cannot be listed; every other dropped event is.
    touched = sum(f.count for f in scan_segment(before).frames if f.offset < offset + length and offset < f.end)
    assert len(beyond - dropped) <= touched  # ... and everything else it dropped
    assert "dropped" in repaired.format()
    assert await _events(work) == prefix  # exactly everything before the damage
    async with sessiondb.open_store(work) as store:  # and it takes appends again
        sid = next(iter({e[0] for e in prefix} - {"fork"}), None)
        if sid is not None:
            head = (await store.session_info(sid)).version
            assert await store.append(sid, Message.user("after repair"), expected_version=head) == head + 1
        else:
            await store.create_session(session_id="new")
    assert verify_store(work).ok and verify_store(work).problems == []
    assert not repair_store(work).changed


async def test_repair_refuses_an_open_store(original: tuple[Path, list[Event]]) -> None:
    path, _ = original
    async with sessiondb.open_store(path):
        with pytest.raises(StoreLockedError):
            repair_store(path)


async def test_verify_sees_what_open_does_not_decode(original: tuple[Path, list[Event]], tmp_path: Path) -> None:
    """A record with a valid checksum whose event does not decode: verify reports it at its frame."""
    import zlib

    source, _ = original
    work = _copy(source, tmp_path / "work")
    segment = _segments(work)[0]
    data = segment.read_bytes()
    scan = scan_segment(data)
    frame = scan.frames[-1]
    payload = data[frame.payload_offset : frame.end].replace(b'"role":"user"', b'"role":"robot"')
    assert payload != data[frame.payload_offset : frame.end]
    header = (
        f'{{"batch":{frame.count},"bytes":{len(payload)},"crc":{zlib.crc32(payload)},"first":{frame.first_position}}}\n'
    )
    segment.write_bytes(data[: frame.offset] + header.encode() + payload)
    report = verify_store(work)
    assert not report.ok and report.problems[0].offset == frame.offset
    assert "does not decode" in report.problems[0].detail


async def test_compacted_store_verifies_and_repair_keeps_it(tmp_path: Path) -> None:
    """A store whose oldest segments retention deleted (snapshots cover them) is not corruption."""
    from sessiondb.testing._crashwork import eager_compaction

    path = tmp_path / "compacted"
    async with sessiondb.open_store(path, segment_bytes=1024, **eager_compaction()) as store:
        for i in range(3):
            await store.create_session(session_id=f"s{i}")
        for turn in range(40):
            for i in range(3):
                await store.append(f"s{i}", Message.user(f"s{i} turn {turn} " + "z" * 60))
            if turn % 5 == 4:
                await store.compact()
        before = {i.session_id: (await store.load(i.session_id)) for i in await store.list_sessions()}
    assert not (path / "0000000001.seg").exists()  # retention really removed the prefix
    report = verify_store(path)
    assert report.ok and report.problems == [], report.format()
    assert not repair_store(path).changed
    async with sessiondb.open_store(path) as store:
        assert {i.session_id: (await store.load(i.session_id)) for i in await store.list_sessions()} == before


@pytest.mark.parametrize("trial", range(20))
async def test_damaged_snapshot_or_checkpoint_is_rebuilt_from_the_log(tmp_path: Path, trial: int) -> None:
    """Random damage in a snapshot file or the index checkpoint: never trusted, the log still answers."""
    from sessiondb import CompactionSettings

    settings = CompactionSettings(background=False, min_tail_events=5, min_tail_bytes=10**9, keep_segments=None)
    path = tmp_path / "store"
    async with sessiondb.open_store(path, segment_bytes=1024, compaction=settings) as store:
        for i in range(3):
            await store.create_session(session_id=f"s{i}")
        for turn in range(15):
            for i in range(3):
                await store.append(f"s{i}", Message.user(f"s{i} turn {turn}"))
            if turn % 4 == 3:
                await store.compact()
        expected = {f"s{i}": await store.load(f"s{i}") for i in range(3)}
    rng = random.Random(trial)
    targets = sorted(p for p in path.iterdir() if p.suffix == ".snap" or p.name == "CHECKPOINT")
    assert any(p.suffix == ".snap" for p in targets) and any(p.name == "CHECKPOINT" for p in targets)
    target = rng.choice(targets)
    data = bytearray(target.read_bytes())
    offset = rng.randrange(len(data))
    if rng.random() < 0.5:
        data[offset] ^= 1 << rng.randrange(8)
    else:
        data[offset : offset + 32] = rng.randbytes(len(data[offset : offset + 32]))
    target.write_bytes(bytes(data))
    async with sessiondb.open_store(path) as store:
        for sid, session in expected.items():
            assert await store.load(sid) == session, (target.name, offset)
        assert await store.append("s0", Message.user("after")) == 17
    assert verify_store(path).ok
