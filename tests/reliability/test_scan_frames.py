"""The recovery scan decodes each frame's lines in one call; damage inside a checksummed frame
(a blank line, a record that does not decode, an impossible token count) is still refused with
the file and the offset of the bad record, never indexed at the wrong place."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest

import sessiondb
from sessiondb import CorruptionError, Message, Usage
from sessiondb._backends.local._format import scan_segment

pytestmark = pytest.mark.anyio


async def _store(path: Path) -> Path:
    async with sessiondb.open_store(path) as store:
        await store.create_session(session_id="a")
        await store.append("a", *(Message.assistant(f"text {n}", usage=Usage(n, 1, 0, 0)) for n in range(8)))
        await store.create_session(session_id="b")
    return next(p for p in path.iterdir() if p.suffix == ".seg")


def _rewrite_frame_holding(segment: Path, marker: bytes, old: bytes, new: bytes) -> int:
    """Replace ``old`` by ``new`` in the record holding ``marker``, fix its frame's checksum and length.

    Returns the offset of that record in the rewritten file.
    """
    data = segment.read_bytes()
    at = data.index(marker)
    record = data.rindex(b"\n", 0, at) + 1
    frame = next(f for f in scan_segment(data).frames if f.payload_offset <= at < f.end)
    payload = data[frame.payload_offset : frame.end]
    cut = payload.index(old, record - frame.payload_offset)
    payload = payload[:cut] + new + payload[cut + len(old) :]
    crc = zlib.crc32(payload)
    header = f'{{"batch":{frame.count},"bytes":{len(payload)},"crc":{crc},"first":{frame.first_position}}}\n'
    rewritten = data[: frame.offset] + header.encode() + payload + data[frame.end :]
    segment.write_bytes(rewritten)
    return record + len(header) - (frame.payload_offset - frame.offset)


@pytest.mark.parametrize(
    ("old", "new", "detail"),
    [
        (b'"input_tokens":5', b'"input_tokens":-5', "does not decode"),
        (b'"input_tokens":5', b'"input_tokens":4294967296', "does not decode"),
        (b'"type":"message"', b'"type":["message"]', "does not decode"),
    ],
)
async def test_a_record_that_does_not_decode_is_named(tmp_path: Path, old: bytes, new: bytes, detail: str) -> None:
    segment = await _store(tmp_path / "s")
    offset = _rewrite_frame_holding(segment, b'"text 5"', old, new)
    with pytest.raises(CorruptionError, match=detail) as caught:
        async with sessiondb.open_store(tmp_path / "s"):
            pass
    assert caught.value.path == str(segment) and caught.value.offset == offset


async def test_a_blank_line_inside_a_frame_is_refused(tmp_path: Path) -> None:
    """The one-call decode skips blank lines; the scan must not shift every later record's offset."""
    segment = await _store(tmp_path / "s")
    _rewrite_frame_holding(segment, b'"text 3"', b'"text 3"', b'"text 3"')  # a no-op rewrite first: sanity
    async with sessiondb.open_store(tmp_path / "s") as store:
        assert len((await store.load("a")).messages) == 8
    data = segment.read_bytes()
    at = data.index(b'"text 3"')
    line_end = data.index(b"\n", at)
    _rewrite_frame_holding(segment, b'"text 3"', data[at:line_end] + b"\n", data[at:line_end] + b"\n\n")
    with pytest.raises(CorruptionError, match=r"more lines than records|does not decode"):
        async with sessiondb.open_store(tmp_path / "s"):
            pass
