"""The local log's byte format: segment files of checksummed batch frames, and their scan.

A segment file is JSONL. Its first line is a segment header; then come frames,
one per committed batch::

    {"sessiondb":"segment","format":1,"segment":3,"first_position":1001}
    {"batch":2,"bytes":231,"crc":3735928559,"first":1001}
    {"s":"session-1","v":7,"p":1001,"t":1775777421902,"e":{"type":"message",...}}
    {"s":"session-2","v":1,"p":1002,"t":1775777421902,"e":{"type":"session_started",...}}

A frame's header gives the number of records, the payload's length and its
CRC32; a batch is recovered whole or not at all. A frame that fails its check
at the end of the newest segment is a torn tail (the batch was never
acknowledged); one followed by a valid frame is corruption.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from typing import Annotated, Any

import msgspec

from ..._events import Event, Fork, Inherited
from ..._labels import MAX_SCOPE_BYTES, MAX_TAG_CHARS, MAX_TITLE_CHARS

SEGMENT_FORMAT = 1
SEGMENT_SUFFIX = ".seg"
FRAME_PREFIX = b'{"batch":'


def segment_name(number: int) -> str:
    return f"{number:010d}{SEGMENT_SUFFIX}"


def segment_number(name: str) -> int | None:
    stem = name[: -len(SEGMENT_SUFFIX)] if name.endswith(SEGMENT_SUFFIX) else ""
    return int(stem) if len(stem) == 10 and stem.isdigit() else None


class SegmentHeader(msgspec.Struct, gc=False):
    sessiondb: str
    format: int
    segment: int
    first_position: int


class FrameHeader(msgspec.Struct, gc=False):
    batch: int
    bytes: int
    crc: int
    first: int


class WriteRecord(msgspec.Struct, gc=False, omit_defaults=True):
    """A record as written: the event body arrives pre-encoded (validated at append time)."""

    s: str
    v: int
    p: int
    t: int
    e: msgspec.Raw
    i: str | None = None


_Int64 = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]


class ReadRecord(msgspec.Struct, gc=False):
    """A record as read back for replay: the event decoded into its typed struct."""

    s: str
    v: _Int64
    p: _Int64
    t: _Int64
    e: Event
    i: str | None = None


_Count = Annotated[int, msgspec.Meta(ge=0, le=2**32 - 1)]


class UsageView(msgspec.Struct, gc=False):
    """One message's token usage as the recovery scan reads it: bounds checked while decoding."""

    input_tokens: _Count = 0
    output_tokens: _Count = 0
    cache_creation_input_tokens: _Count = 0
    cache_read_input_tokens: _Count = 0


_Scope = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_SCOPE_BYTES)]
_Title = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TITLE_CHARS)]
_Tag = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TAG_CHARS)]


class EventView(msgspec.Struct, gc=False):
    """The few fields of an event that the index and session summaries need.

    Decoding into this skips text, thinking and tool payloads, which keeps a
    recovery scan much cheaper than a full decode.
    """

    type: str
    role: str | None = None
    usage: UsageView | None = None
    created_at_ms: int = 0
    model: str | None = None
    workspace_root: str | None = None
    fork: Fork | None = None
    inherited: Inherited | None = None
    removed_message_count: int = 0
    rewrite_context: bool = True
    # SessionStarted's scope and the label events (title, tags, pin): checked as the events check them.
    scope: _Scope | None = None
    title: _Title | None = None
    added: list[_Tag] | None = None
    removed: list[_Tag] | None = None
    pinned: bool = True
    # A custom event's name and its data, kept raw (not decoded): read only for the few
    # events the summary counts (``_counts.COUNTED``), whose data may be anything.
    name: str | None = None
    data: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)  # (msgspec takes no Raw | None)


class IndexRecord(msgspec.Struct, gc=False):
    """A record as the recovery scan reads it; numbers bounded so a crafted file cannot overflow the index."""

    s: str
    v: _Int64
    p: _Int64
    t: _Int64
    e: EventView
    i: str | None = None


record_encoder = msgspec.json.Encoder()
segment_header_decoder = msgspec.json.Decoder(SegmentHeader)
frame_header_decoder = msgspec.json.Decoder(FrameHeader)
read_record_decoder = msgspec.json.Decoder(ReadRecord)
index_record_decoder = msgspec.json.Decoder(IndexRecord)


def encode_segment_header(number: int, first_position: int) -> bytes:
    header = SegmentHeader("segment", SEGMENT_FORMAT, number, first_position)
    return record_encoder.encode(header) + b"\n"


class FrameBuilder:
    """Builds one frame: records are encoded once, straight into the payload.

    An append whose event turns out too large is rolled back with ``truncate``
    before the frame is finished, so it is never written.
    """

    __slots__ = ("count", "first_position", "payload", "spans")

    def __init__(self) -> None:
        self.payload = bytearray()
        self.spans: list[tuple[int, int]] = []  # (offset in payload, length without newline)
        self.count = 0
        self.first_position = 0

    def add(self, record: WriteRecord) -> int:
        """Encode ``record``; return its encoded length."""
        payload = self.payload
        start = len(payload)
        record_encoder.encode_into(record, payload, -1)
        length = len(payload) - start
        payload += b"\n"
        self.spans.append((start, length))
        if not self.count:
            self.first_position = record.p
        self.count += 1
        return length

    def mark(self) -> tuple[int, int]:
        return len(self.payload), len(self.spans)

    def truncate(self, mark: tuple[int, int]) -> None:
        size, spans = mark
        del self.payload[size:]
        del self.spans[spans:]
        self.count = spans

    def finish(self) -> tuple[bytes, int]:
        """The frame's bytes and the length of its header line (record offsets follow it)."""
        payload = self.payload
        header = record_encoder.encode(FrameHeader(self.count, len(payload), zlib.crc32(payload), self.first_position))
        return b"".join((header, b"\n", payload)), len(header) + 1


class Frame(msgspec.Struct, gc=False):
    """A verified frame found by a scan: where it is and its payload's extent."""

    offset: int
    payload_offset: int
    end: int
    count: int
    first_position: int


class ScanResult(msgspec.Struct, gc=False):
    header: SegmentHeader | None
    frames: list[Frame]
    valid_end: int
    # Set when a frame failed its check: where, and why.
    bad_offset: int | None = None
    bad_reason: str = ""
    # True when a valid frame follows the bad one: corruption, not a torn tail.
    valid_after_bad: bool = False


def _parse_frame(data: Any, offset: int) -> tuple[Frame | None, str]:
    """Verify the frame at ``offset``; return it, or None and the reason it is bad."""
    size = len(data)
    if offset >= size:
        return None, "end of file"
    newline = data.find(b"\n", offset, min(size, offset + 256))
    if newline < 0:
        return None, "frame header is incomplete"
    if data[offset : offset + len(FRAME_PREFIX)] != FRAME_PREFIX:
        return None, "expected a frame header"
    try:
        header = frame_header_decoder.decode(data[offset:newline])
    except (msgspec.DecodeError, ValueError, RecursionError) as exc:  # ValueError: invalid UTF-8
        return None, f"frame header does not decode ({exc})"
    if header.batch < 1 or header.bytes < 1 or header.first < 1:
        return None, "frame header has impossible values"
    payload_offset = newline + 1
    end = payload_offset + header.bytes
    if end > size:
        return None, f"frame declares {header.bytes} payload bytes but the file ends first"
    if zlib.crc32(data[payload_offset:end]) != header.crc:
        return None, "frame checksum mismatch"
    if data[end - 1 : end] != b"\n":
        return None, "frame payload does not end with a newline"
    return Frame(offset, payload_offset, end, header.batch, header.first), ""


def _valid_frame_after(data: Any, offset: int) -> bool:
    position = data.find(FRAME_PREFIX, offset + 1)
    while position >= 0:
        frame, _ = _parse_frame(data, position)
        if frame is not None:
            return True
        position = data.find(FRAME_PREFIX, position + 1)
    return False


def scan_segment(data: Any) -> ScanResult:
    """Find the verified frames of a segment's bytes, stopping at the first bad one."""
    newline = data.find(b"\n", 0, 4096)
    header: SegmentHeader | None = None
    if newline > 0:
        try:
            header = segment_header_decoder.decode(data[:newline])
        except (msgspec.DecodeError, ValueError, RecursionError):
            header = None
    if header is None or header.sessiondb != "segment":
        return ScanResult(
            None, [], 0, 0, "missing or unreadable segment header", len(data) > 0 and _valid_frame_after(data, 0)
        )
    frames: list[Frame] = []
    offset = newline + 1
    size = len(data)
    while offset < size:
        frame, reason = _parse_frame(data, offset)
        if frame is None:
            return ScanResult(header, frames, offset, offset, reason, _valid_frame_after(data, offset))
        frames.append(frame)
        offset = frame.end
    return ScanResult(header, frames, offset)


def iter_lines(data: Any, start: int, end: int) -> Iterator[tuple[int, int]]:
    """(offset, length) of each newline-terminated line in ``data[start:end]``."""
    find = data.find
    while start < end:
        newline = find(b"\n", start, end)
        yield start, newline - start
        start = newline + 1


def fsync_directory(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
