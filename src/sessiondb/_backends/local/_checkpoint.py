"""The index checkpoint: the whole in-memory index at a frame boundary, so open need not scan the log.

``Checkpointer`` captures the index, segment frame tables, snapshot map and
history floors on the event loop (consistent with applied batches), writes
them durably in a worker thread, and restores them on open after checking the
file's checksum and the CRC32 of every segment byte it covers. Anything doubtful
sends open back to the full scan: the log is the truth.
"""

from __future__ import annotations

import contextlib
import os
import zlib
from typing import Any

import msgspec

from ..._threads import run_to_completion
from .._base import SessionInfo
from .._fs import FileSystem
from ._format import frame_header_decoder, segment_name
from ._index import Index, Stream
from ._segments import Segment, SegmentSet
from ._snapshot_files import FileDamage, SnapshotFiles

CHECKPOINT_NAME = "CHECKPOINT"
# 2: session summaries count the integrations' items and checkpoints (``_counts``). A format-1
# checkpoint's summaries lack those counts, so it is ignored: the open rescans the log once.
CHECKPOINT_FORMAT = 2


class CheckpointHeader(msgspec.Struct, gc=False):
    sessiondb: str
    format: int
    bytes: int
    crc: int


class _CkSegment(msgspec.Struct, array_like=True, gc=False):
    number: int
    first_position: int
    size: int
    frame_positions: bytes
    frame_offsets: bytes
    crc: int = 0  # of bytes [0, size): open verifies it, so damage in covered history is still found


class _CkStream(msgspec.Struct, array_like=True, gc=False):
    info: SessionInfo
    base: int
    locations: bytes
    lengths: bytes
    event_ids: dict[str, int] | None = None


class Checkpoint(msgspec.Struct, gc=False):
    """The in-memory index at a frame boundary: open trusts it (after its checksum) and scans what follows."""

    format: int
    next_position: int
    segments: list[_CkSegment]
    streams: list[_CkStream]
    snapshots: dict[str, tuple[int, int]]
    older_snapshots: dict[str, list[tuple[int, int]]]
    floors: dict[str, int]
    segments_deleted: int = 0


_json = msgspec.json.Encoder()
_checkpoint_header_decoder = msgspec.json.Decoder(CheckpointHeader)
_checkpoint_encoder = msgspec.msgpack.Encoder()
_checkpoint_decoder = msgspec.msgpack.Decoder(Checkpoint)


class Checkpointer:
    """Writes and loads the CHECKPOINT file of one store directory, over the index, segments and snapshots."""

    def __init__(
        self, directory: str, fs: FileSystem, index: Index, segments: SegmentSet, snapshots: SnapshotFiles
    ) -> None:
        self.directory = directory
        self.fs = fs
        self.index = index
        self.segments = segments
        self.snapshots = snapshots
        self.on_close = True  # write one at a clean close (a benchmark may turn it off)
        self.last_size = 0
        self.at_bytes = -1  # the first pass always checkpoints
        self.sealed_crcs: dict[int, tuple[int, int]] = {}  # sealed segment -> (size, CRC32), computed once
        self.stats: dict[str, Any] = {
            "checkpoints_written": 0,
            "checkpoint_bytes_written": 0,
            "opened_from_checkpoint": False,
            "checkpoint_ignored": "",
        }

    def due(self) -> bool:
        """Cost-proportional like snapshots: rewrite the index once the log grew by twice its size.

        Checkpoints then write at most half a byte per byte appended, and a crash
        leaves at most about two checkpoints' size of log for open to scan.
        """
        grown = self.index.bytes_written - self.at_bytes
        return grown > 0 and grown >= 2 * self.last_size

    async def write(self, exclude: set[int] | None = None) -> int:
        """Capture the index (on the loop: consistent with applied batches) and write it durably."""
        captured = self.capture(exclude or set())
        if captured is None:
            return 0
        size: int = await run_to_completion(self.write_sync, captured)
        return size

    def capture(self, exclude: set[int]) -> tuple[Checkpoint, Segment, int] | None:
        segments = [s for s in list(self.segments.segments) if s.number not in self.segments.removed]
        if not segments:
            return None
        streams = [
            _CkStream(
                s.info.copy(),
                s.base,
                s.locations.tobytes(),
                s.lengths.tobytes(),
                dict(s.event_ids) if s.event_ids else None,
            )
            for s in self.index.streams.values()
        ]
        # The frame tables only ever grow on the loop (in Index.apply), so their lengths now are consistent
        # with the streams; a segment's size may already count a frame still being applied, so the
        # covered end is recomputed from the last applied frame in the writing thread.
        ck_segments = [
            _CkSegment(
                s.number,
                s.first_position,
                -1,
                s.frame_positions.tobytes(),
                s.frame_offsets.tobytes(),
            )
            for s in segments
            if s.number not in exclude
        ]
        if not ck_segments:
            return None
        checkpoint = Checkpoint(
            CHECKPOINT_FORMAT,
            self.index.next_position,
            ck_segments,
            streams,
            dict(self.snapshots.newest),
            {sid: list(entries) for sid, entries in self.snapshots.older.items() if entries},
            dict(self.index.floors),
            self.segments.segments_deleted,
        )
        last = segments[-1]
        return checkpoint, last, len(last.frame_offsets)

    def write_sync(self, captured: tuple[Checkpoint, Segment, int]) -> int:
        checkpoint, last, frames = captured
        fs = self.fs
        for ck in checkpoint.segments:
            path = self.segments.path_of(ck.number)
            fd = fs.open_read(path)
            try:
                if ck.number == last.number:
                    ck.size = _applied_end(fs, fd, last, frames)
                else:  # sealed: covered whole, and its checksum never changes
                    ck.size = self.segments.by_number(ck.number).size
                cached = self.sealed_crcs.get(ck.number)
                if cached is not None and cached[0] == ck.size:
                    ck.crc = cached[1]
                else:
                    ck.crc = _file_crc(fs, fd, ck.size)
                    if ck.number != last.number:
                        self.sealed_crcs[ck.number] = (ck.size, ck.crc)
            finally:
                fs.close(fd)
        payload = _checkpoint_encoder.encode(checkpoint)
        header = _json.encode(CheckpointHeader("checkpoint", CHECKPOINT_FORMAT, len(payload), zlib.crc32(payload)))
        blob = b"".join((header, b"\n", payload))
        fs.write_file_durably(self.directory, CHECKPOINT_NAME, blob)
        self.last_size = len(blob)
        self.at_bytes = self.index.bytes_written
        self.stats["checkpoints_written"] += 1
        self.stats["checkpoint_bytes_written"] += len(blob)
        return len(blob)

    def close(self, read_only: bool, broken: bool) -> None:
        """At a clean close, checkpoint so the next open scans nothing (failures only cost open time)."""
        if read_only or broken or not self.on_close or not self.segments.segments:
            return
        captured = self.capture(set())
        if captured is None:
            return
        # The log is the truth: without a checkpoint the next open scans it.
        with contextlib.suppress(OSError):
            self.write_sync(captured)

    def load(self, numbers: list[int]) -> int:
        """Restore the index from the checkpoint; return how many of ``numbers`` it covers whole.

        Anything doubtful (no file, bad checksum, newer format, a covered segment
        missing or shorter, changed bytes at its end) makes it return 0 after
        recording why: the caller then scans the whole log.
        """
        fs = self.fs
        path = os.path.join(self.directory, CHECKPOINT_NAME)
        if not fs.exists(path):
            return 0
        try:
            checkpoint = read_checkpoint_file(fs.read_file(path))
            covered = verify_checkpoint_segments(fs, self.directory, checkpoint, numbers, self.sealed_crcs)
        except (OSError, ValueError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.stats["checkpoint_ignored"] = str(exc)
            return 0
        for ck in checkpoint.segments:
            segment = Segment(ck.number, self.segments.path_of(ck.number), ck.first_position, ck.size)
            segment.frame_positions.frombytes(ck.frame_positions)
            segment.frame_offsets.frombytes(ck.frame_offsets)
            self.segments.add(segment)
        streams = self.index.streams
        for cs in checkpoint.streams:
            stream = Stream(cs.info, cs.base)
            stream.locations.frombytes(cs.locations)
            stream.lengths.frombytes(cs.lengths)
            stream.event_ids = cs.event_ids
            streams[cs.info.session_id] = stream
        self.snapshots.newest = dict(checkpoint.snapshots)
        self.snapshots.older = {sid: list(entries) for sid, entries in checkpoint.older_snapshots.items()}
        self.index.floors = dict(checkpoint.floors)
        self.index.next_position = checkpoint.next_position
        self.stats["opened_from_checkpoint"] = True
        return covered + 1


def _file_crc(fs: Any, fd: int, size: int) -> int:
    crc = 0
    offset = 0
    while offset < size:
        chunk = fs.pread(fd, min(16 * 1024 * 1024, size - offset), offset)
        if not chunk:
            raise ValueError("segment ended before the checkpoint's size")
        crc = zlib.crc32(chunk, crc)
        offset += len(chunk)
    return crc


def _applied_end(fs: Any, fd: int, segment: Any, frames: int) -> int:
    """Where the ``frames``-th applied frame of ``segment`` ends (its header line when it has none)."""
    if frames == 0:
        head = fs.pread(fd, 4096, 0)
        return int(head.index(b"\n")) + 1
    offset = segment.frame_offsets[frames - 1]
    head = fs.pread(fd, 256, offset)
    newline = head.index(b"\n")
    header = frame_header_decoder.decode(head[:newline])
    return int(offset + newline + 1 + header.bytes)


def read_checkpoint_file(blob: bytes) -> Checkpoint:
    """Decode a checkpoint file after checking its header and checksum (``FileDamage`` if it cannot be used)."""
    newline = blob.find(b"\n", 0, 512)
    if newline < 0:
        raise FileDamage(0, "checkpoint header is missing")
    try:
        header = _checkpoint_header_decoder.decode(blob[:newline])
    except msgspec.DecodeError as exc:
        raise FileDamage(0, str(exc)) from None
    if header.sessiondb != "checkpoint" or header.format != CHECKPOINT_FORMAT:
        raise FileDamage(0, f"checkpoint format {header.format} is not {CHECKPOINT_FORMAT}")
    payload = memoryview(blob)[newline + 1 :]
    if len(payload) != header.bytes or zlib.crc32(payload) != header.crc:
        raise FileDamage(newline + 1, "checkpoint checksum mismatch")
    try:
        return _checkpoint_decoder.decode(payload)
    except msgspec.DecodeError as exc:
        raise FileDamage(newline + 1, str(exc)) from None


def verify_checkpoint_segments(
    fs: Any, directory: str, checkpoint: Checkpoint, numbers: list[int], sealed_crcs: dict[int, tuple[int, int]]
) -> int:
    """Check the segments a checkpoint covers against ``numbers`` on disk (``ValueError`` saying why not).

    Returns how many of them it covers whole; fills ``sealed_crcs`` with the sealed ones' (size, CRC32).
    """
    listed = [ck.number for ck in checkpoint.segments]
    if not listed or listed != list(range(listed[0], listed[0] + len(listed))):
        raise ValueError("checkpoint segment list has gaps")
    on_disk = [n for n in numbers if n >= listed[0]]
    if on_disk[: len(listed)] != listed:
        raise ValueError("a segment the checkpoint covers is missing")
    for ck in checkpoint.segments:
        size = fs.size(os.path.join(directory, segment_name(ck.number)))
        if size < ck.size:
            raise ValueError(f"segment {ck.number} is shorter than the checkpoint says")
        if ck.number != listed[-1] and size != ck.size:
            raise ValueError(f"sealed segment {ck.number} changed size since the checkpoint")
    for ck in checkpoint.segments:
        # Trust, but verify: one sequential read and CRC per segment (~0.1 s per 200 MB) instead of a
        # decode of every record; any damage sends open back to the full scan, which reports it.
        fd = fs.open_read(os.path.join(directory, segment_name(ck.number)))
        try:
            crc = _file_crc(fs, fd, ck.size)
        finally:
            fs.close(fd)
        if crc != ck.crc:
            raise ValueError(f"segment {ck.number} does not match the checkpoint's checksum")
        if ck.number != listed[-1]:
            sealed_crcs[ck.number] = (ck.size, crc)
    return len(listed) - 1  # the last one is scanned on from its checkpointed end
