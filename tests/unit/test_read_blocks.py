"""Reading a session back decodes blocks of line-adjacent records with one call each.

These tests pin what that must keep: the same events in the same order whatever the
layout (one session per batch, interleaved sessions, several segments, forks), and a
record that does not decode still named by its own file and byte offset.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest

import sessiondb
from sessiondb import CorruptionError, Message
from sessiondb._backends.local._format import scan_segment

pytestmark = pytest.mark.anyio


async def _fill(path: Path, segment_bytes: int) -> dict[str, list[str]]:
    """Three sessions: a lone block of 40 events, then 30 rounds interleaved across all three."""
    texts: dict[str, list[str]] = {"a": [], "b": [], "c": []}
    async with sessiondb.open_store(path, segment_bytes=segment_bytes) as store:
        for sid in texts:
            await store.create_session(session_id=sid)
        block = [f"a-block-{n}" for n in range(40)]
        await store.append("a", *(Message.user(t) for t in block))
        texts["a"] += block
        for n in range(30):
            for sid in texts:
                text = f"{sid}-{n}-" + "x" * (n % 7)
                await store.append(sid, Message.user(text))
                texts[sid].append(text)
    return texts


@pytest.mark.parametrize("segment_bytes", [512, 4096, 64 * 1024 * 1024])
async def test_every_layout_reads_back_the_same_events(tmp_path: Path, segment_bytes: int) -> None:
    texts = await _fill(tmp_path / "s", segment_bytes)
    async with sessiondb.open_store(tmp_path / "s") as store:
        fork = await store.fork("a", at_version=45, session_id="f")
        await store.append(fork, Message.user("after the fork"))
        for sid, expected in texts.items():
            session = await store.load(sid)
            assert [m.text for m in session.messages] == expected
            # Every window: blocks cut at both ends read the same as the whole.
            up_to = min(58, len(expected))  # version 1 is session_started: text n is version n + 2
            events = [e async for e in store.read(sid, after=17, up_to=up_to)]
            assert [e.version for e in events] == list(range(18, up_to + 1))
            assert [e.event.text for e in events if isinstance(e.event, Message)] == expected[16 : up_to - 1]
        forked = await store.load(fork)
        assert [m.text for m in forked.messages] == [*texts["a"][:44], "after the fork"]


async def test_a_record_that_does_not_decode_is_named_by_file_and_offset(tmp_path: Path) -> None:
    """A checksummed record in the middle of a block whose event is not valid: the error points at it."""
    path = tmp_path / "s"
    async with sessiondb.open_store(path) as store:
        await store.create_session(session_id="a")
        await store.append("a", *(Message.user(f"text {n}") for n in range(20)))
        await store.create_session(session_id="b")
        await store.append("b", Message.user("elsewhere"))
    segment = next(p for p in path.iterdir() if p.suffix == ".seg")
    data = segment.read_bytes()
    target = data.index(b'"text 11"')
    record_start = data.rindex(b"\n", 0, target) + 1
    # Same length, so the index stays valid: "user" -> "robo" is not a role.
    role = data.index(b'"role":"user"', record_start)
    damaged = data[:role] + b'"role":"robo"' + data[role + len(b'"role":"user"') :]
    # Re-checksum the frame so only decoding (not the frame check) can catch it.
    frame = next(f for f in scan_segment(data).frames if f.payload_offset <= role < f.end)
    payload = damaged[frame.payload_offset : frame.end]
    crc = zlib.crc32(payload)
    header = f'{{"batch":{frame.count},"bytes":{len(payload)},"crc":{crc},"first":{frame.first_position}}}\n'
    segment.write_bytes(damaged[: frame.offset] + header.encode() + damaged[frame.payload_offset :])
    # The new checksum may have another number of digits: the record moves by the difference.
    record_start += len(header) - (frame.payload_offset - frame.offset)

    async with sessiondb.open_store(path) as store:
        with pytest.raises(CorruptionError) as caught:
            await store.load("a")
        assert caught.value.path == str(segment) and caught.value.offset == record_start
        # The records before it and the other session still read.
        before = [e async for e in store.read("a", up_to=11)]
        assert [e.event.text for e in before if isinstance(e.event, Message)] == [f"text {n}" for n in range(10)]
        assert [m.text for m in (await store.load("b")).messages] == ["elsewhere"]
