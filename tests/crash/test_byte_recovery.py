"""Byte-level recovery: a log cut, zeroed, garbled or bit-flipped anywhere recovers exactly its complete batches.

Damage in the newest batch of the newest segment is a torn tail (that batch was
never acknowledged): it is cut off and appends go on. Damage with a valid
frame after it is corruption: open raises CorruptionError naming file and offset.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import pytest

import sessiondb
from sessiondb import CorruptionError, Message, Text, ToolUse, Usage
from sessiondb._backends.local._format import scan_segment, segment_name

pytestmark = pytest.mark.anyio

Snapshot = list[tuple[str, int, int, str]]


async def _build(path: Path, *, segment_bytes: int = 64 * 1024 * 1024) -> None:
    """A store of single-event batches, a fork, and a last batch of three events."""
    async with sessiondb.open_store(path, segment_bytes=segment_bytes) as store:
        sessions = [await store.create_session(session_id=f"s{i}", model="m") for i in range(3)]
        for turn in range(4):
            for sid in sessions:
                await store.append(sid, Message.user(f'{sid} turn {turn} ü \u2028 "quoted"'))
        await store.fork("s0", at_version=3, session_id="f0")
        await store.append(
            "s1",
            Message.user("ask"),
            Message.assistant([Text("ok"), ToolUse("t1", "bash", '{"cmd":"ls"}')], usage=Usage(5, 7)),
            Message.tool_result("t1", "bash", "out\n" * 20),
        )


async def _snapshot(path: Path) -> Snapshot:
    async with sessiondb.open_store(path) as store:
        events = await store.read_all(after=0, limit=100_000)
        for info in await store.list_sessions():
            await store.load(info.session_id)  # every session replays
    return [(e.session_id, e.version, e.position, repr(e.event)) for e in events]


def _segments(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.suffix == ".seg")


def _frames(segment: Path) -> list[tuple[int, int, int, int]]:
    """(offset, end, first_position, count) of each frame."""
    scan = scan_segment(segment.read_bytes())
    assert scan.bad_offset is None
    return [(f.offset, f.end, f.first_position, f.count) for f in scan.frames]


@pytest.fixture
async def original(tmp_path: Path) -> tuple[Path, Snapshot]:
    path = tmp_path / "original"
    await _build(path)
    return path, await _snapshot(path)


def _copy(original: Path, target: Path) -> Path:
    shutil.copytree(original, target)
    lock = target / "LOCK"
    if lock.exists():
        lock.unlink()
    return target


async def _recovers_prefix(path: Path, expected: Snapshot) -> None:
    """Open recovers exactly ``expected``, appends go on, and a second reopen agrees."""
    assert await _snapshot(path) == expected
    async with sessiondb.open_store(path) as store:
        version = await store.append("s2", Message.user("after recovery"))
    after = await _snapshot(path)
    assert after[:-1] == expected and after[-1][:2] == ("s2", version)


async def test_cut_at_every_byte_of_the_last_batch(original: tuple[Path, Snapshot], tmp_path: Path) -> None:
    source, full = original
    segment = _segments(source)[-1]
    data = segment.read_bytes()
    offset, end, first, count = _frames(segment)[-1]
    assert count == 3 and end == len(data)
    before_last = [e for e in full if e[2] < first]
    work = tmp_path / "cut"
    for cut in range(offset, end + 1):
        if work.exists():
            shutil.rmtree(work)
        _copy(source, work)
        with open(work / segment.name, "r+b") as handle:
            handle.truncate(cut)
        async with sessiondb.open_store(work) as store:
            recovered = await store.read_all(after=0, limit=100_000)
            truncated = store.backend.recovery["truncated_tails"]  # type: ignore[attr-defined]
        expected = full if cut == end else before_last
        assert [(e.session_id, e.version, e.position, repr(e.event)) for e in recovered] == expected, cut
        assert bool(truncated) == (offset < cut < end), cut  # a clean cut at a frame boundary is no damage
        assert os.path.getsize(work / segment.name) == (end if cut == end else offset)
    # The last cut position once more, with the full check (appends go on, reopen agrees).
    shutil.rmtree(work)
    _copy(source, work)
    with open(work / segment.name, "r+b") as handle:
        handle.truncate(end - 1)
    await _recovers_prefix(work, before_last)


@pytest.mark.parametrize("kind", ["zeros", "garbage", "zeros-appended", "garbage-appended", "half-frame-header"])
async def test_damaged_tail_is_truncated(original: tuple[Path, Snapshot], tmp_path: Path, kind: str) -> None:
    source, full = original
    segment = _segments(source)[-1]
    offset, end, first, _ = _frames(segment)[-1]
    rng = random.Random(kind)
    for trial in range(8):
        work = _copy(source, tmp_path / f"{kind}-{trial}")
        target = work / segment.name
        data = bytearray(target.read_bytes())
        start = rng.randrange(offset, end)
        if kind == "zeros":
            data[start:] = bytes(len(data) - start)
            expected = [e for e in full if e[2] < first]
        elif kind == "garbage":
            data[start:] = rng.randbytes(len(data) - start)
            expected = [e for e in full if e[2] < first]
        elif kind == "zeros-appended":  # preallocated or extended but never written
            data += bytes(rng.randint(1, 5000))
            expected = full
        elif kind == "garbage-appended":
            data += b"\n" * rng.randint(0, 1) + rng.randbytes(rng.randint(1, 5000))
            expected = full
        else:
            data += b'{"batch":3,"bytes":99'
            expected = full
        target.write_bytes(bytes(data))
        await _recovers_prefix(work, expected)


async def test_bit_flip_in_last_batch_is_a_torn_tail(original: tuple[Path, Snapshot], tmp_path: Path) -> None:
    source, full = original
    segment = _segments(source)[-1]
    offset, end, first, _ = _frames(segment)[-1]
    expected = [e for e in full if e[2] < first]
    rng = random.Random(7)
    outcomes = {"truncated": 0, "corruption": 0}
    for trial, position in enumerate(range(offset, end)):
        work = _copy(source, tmp_path / f"flip-{trial}")
        _flip(work / segment.name, position, rng.randrange(8))
        try:
            assert await _snapshot(work) == expected, position
            outcomes["truncated"] += 1
        except CorruptionError as exc:
            # The frame header's count and first position lie outside the payload checksum; a
            # damaged one that still decodes is caught by the record checks and reported as
            # corruption of this very frame (a torn write cannot produce it: the payload is whole).
            assert exc.path == str(work / segment.name) and exc.offset == offset, position
            outcomes["corruption"] += 1
    assert outcomes["truncated"] > 0.9 * (end - offset)


def _flip(path: Path, offset: int, bit: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 1 << bit
    path.write_bytes(bytes(data))


async def test_every_bit_flip_in_an_interior_frame_is_corruption(
    original: tuple[Path, Snapshot], tmp_path: Path
) -> None:
    """Each byte of an interior frame (header and records), flipped: never silently accepted."""
    source, _ = original
    segment = _segments(source)[-1]
    frames = _frames(segment)
    offset, end, _, _ = frames[len(frames) // 2]
    rng = random.Random(11)
    work = tmp_path / "interior"
    for position in range(offset, end):
        if work.exists():
            shutil.rmtree(work)
        _copy(source, work)
        _flip(work / segment.name, position, rng.randrange(8))
        with pytest.raises(CorruptionError) as caught:
            await _snapshot(work)
        assert caught.value.path == str(work / segment.name)
        # The damage is reported where it is: the frame that holds the flipped byte.
        assert offset <= caught.value.offset <= position, (position, caught.value.offset)
        assert str(work / segment.name) in str(caught.value) and str(caught.value.offset) in str(caught.value)


async def test_damage_in_a_sealed_segment_is_corruption(tmp_path: Path) -> None:
    """The newest frame of an older segment is not a tail: the segments after it hold acknowledged data."""
    source = tmp_path / "rotated"
    await _build(source, segment_bytes=600)
    segments = _segments(source)
    assert len(segments) >= 3
    sealed = segments[-2]
    offset, end, _, _ = _frames(sealed)[-1]
    for cut_kind in ("truncate", "flip"):
        work = _copy(source, tmp_path / cut_kind)
        if cut_kind == "truncate":
            with open(work / sealed.name, "r+b") as handle:
                handle.truncate(end - 3)
        else:
            _flip(work / sealed.name, (offset + end) // 2, 3)
        with pytest.raises(CorruptionError) as caught:
            await _snapshot(work)
        assert caught.value.path == str(work / sealed.name) and caught.value.offset == offset


async def test_missing_segment_is_corruption(tmp_path: Path) -> None:
    source = tmp_path / "rotated"
    await _build(source, segment_bytes=600)
    segments = _segments(source)
    (segments[1]).unlink()
    with pytest.raises(CorruptionError) as caught:
        await _snapshot(source)
    assert caught.value.path == str(segments[2])


async def test_segment_header_damage_is_corruption(original: tuple[Path, Snapshot], tmp_path: Path) -> None:
    source, _ = original
    segment = _segments(source)[0]
    header_length = segment.read_bytes().index(b"\n")
    for position in range(header_length):
        work = _copy(source, tmp_path / f"h{position}")
        _flip(work / segment.name, position, 0)
        with pytest.raises(CorruptionError) as caught:
            await _snapshot(work)
        assert caught.value.path == str(work / segment.name)


async def test_leftover_temp_file_is_removed_never_read(original: tuple[Path, Snapshot], tmp_path: Path) -> None:
    source, full = original
    work = _copy(source, tmp_path / "tmp")
    (work / (segment_name(2) + ".tmp")).write_bytes(b"garbage that must never be read")
    assert await _snapshot(work) == full
    assert not any(".tmp" in name for name in os.listdir(work))
