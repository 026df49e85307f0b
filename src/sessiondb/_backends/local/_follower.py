"""Following the log: learn the frames other processes appended since this one last looked.

Several processes append to one log, each under the write lock (``_locks.py``).
This process's index knows the log up to the end of its newest segment as it
last saw it. ``LogCatchUp`` checks cheaply whether the log moved past that
(one ``fstat`` of the newest segment, one ``stat`` for the segment after it),
and if so reads the new bytes and feeds every complete, checksummed frame to
``Index.index_frame``, moving on to segments others created by rolling.

What it finds after the last valid frame depends on who is looking:

- with the write lock held, nobody else is writing, so an incomplete or bad
  frame at the end of the newest segment is a dead writer's torn tail (never
  acknowledged): it is cut and the cut is fsynced, as recovery does on open;
- without it (a read, a subscription poll, a read-only store), the bytes may be
  a live writer's frame still being written: the follower stops before them and
  looks again next time.

A bad frame with a valid one after it, or a bad tail in a segment that another
segment follows, is corruption either way (``CorruptionError`` naming file and
offset). A segment another process rolled is sealed before the next exists, so
the follower finishes the old one before it adopts the new.

A process that neither appends nor reads while the others roll through more
segments than retention keeps can find the segment it last knew as newest
removed, and the frames it would need with it: ``FellBehindError`` says so, and
the backend rebuilds the index the way open builds it (``_rebuild.py``).
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..._errors import CorruptionError, SchemaVersionError, StoreBrokenError
from .._fs import FileSystem
from ._format import SEGMENT_FORMAT, _parse_frame, _valid_frame_after, segment_header_decoder
from ._index import Index
from ._removal import removed_store_error
from ._segments import Segment, SegmentSet

# Bytes read per pread while catching up: bounded so a long absence does not read a segment at once.
_CHUNK = 4 * 1024 * 1024


class LogCatchUp:
    """Moves one process's index forward over frames appended by others."""

    def __init__(self, fs: FileSystem, index: Index, segments: SegmentSet) -> None:
        self.fs = fs
        self.index = index
        self.segments = segments
        self.foreign_records = 0  # records learned from other processes since open
        self.cut_tails: list[tuple[str, int, int, str]] = []  # dead writers' tails cut under the write lock

    def advanced(self) -> bool:
        """True when the log may hold frames this index does not know: the newest segment grew, or has a successor."""
        segments = self.segments
        if not segments.segments:  # a read-only store opened before any writer created the log
            return self.fs.exists(segments.path_of(1))
        active = segments.active
        # The active segment's descriptor is the most recently used one: the cache finds it at once.
        try:
            with segments.read_fd(active.number) as (fd, _path):
                size = self.fs.fstat_size(fd)
        except FileNotFoundError:
            return True  # removed before this process opened it: catch_up says what that means
        if size != active.size:
            return True
        # A newest segment no longer in the directory: others rolled past it and retention removed
        # it (an open descriptor still reads it). catch_up says so rather than serve a stale view.
        return self.fs.exists(segments.path_of(active.number + 1)) or not self.fs.exists(active.path)

    def catch_up(self, *, locked: bool) -> int:
        """Index every complete frame past the known end; return how many records were learned.

        ``locked``: the caller holds the write lock, so a torn tail is cut.
        """
        learned = 0
        if not self.segments.segments:
            first = self.segments.path_of(1)
            if not self.fs.exists(first):
                return 0
            self._adopt(1, first)
        while True:
            active = self.segments.active
            try:
                learned += self._follow_segment(active, locked)
                successor = self.segments.path_of(active.number + 1)
                if not self.fs.exists(successor):
                    if not self.fs.exists(active.path):
                        raise self._gone(active)
                    break
                # Another process rolled: it sealed this segment first (cutting any torn tail under the
                # lock), so a second look must find it complete up to its end.
                learned += self._follow_segment(active, locked)
                with self.segments.read_fd(active.number) as (fd, path):
                    size = self.fs.fstat_size(fd)
                if size != active.size:
                    raise CorruptionError(
                        path,
                        active.size,
                        "a sealed segment ends in bytes that are not a valid frame (a later segment exists)",
                    )
                self._adopt(active.number + 1, successor)
            except FileNotFoundError:
                # The newest segment this process knows (its descriptor not open), or the one after
                # it between a look and a read (possible without the write lock): retention removed
                # it, so the frames this process has not read are gone with it.
                raise self._gone(active) from None
        self.foreign_records += learned
        return learned

    def _gone(self, active: Segment) -> StoreBrokenError:
        """The newest segment this process knows is gone: it fell behind retention, or the store files were removed."""
        return removed_store_error(self.fs, self.segments.directory, active.number) or FellBehindError(active.path)

    def _follow_segment(self, segment: Segment, locked: bool) -> int:
        # The descriptor stays pinned throughout: the cache never closes it under this loop.
        with self.segments.read_fd(segment.number) as (fd, path):
            return self._follow_open_segment(segment, fd, path, locked)

    def _follow_open_segment(self, segment: Segment, fd: int, path: str, locked: bool) -> int:
        fs = self.fs
        learned = 0
        while True:
            size = fs.fstat_size(fd)
            if size <= segment.size:
                return learned
            base = segment.size
            data = fs.pread(fd, min(size - base, _CHUNK), base)
            offset = 0
            while offset < len(data):
                frame, reason = _parse_frame(data, offset)
                if frame is None:
                    break
                before = self.index.next_position
                # A record nested deeper than this stack allows is decoded on a fresh one (_index.py).
                self.index.index_frame(
                    segment, data, frame.offset, frame.payload_offset, frame.end, frame.first_position, base=base
                )
                if self.index.next_position - before != frame.count:
                    raise CorruptionError(
                        path,
                        base + frame.offset,
                        f"frame declares {frame.count} records but holds {self.index.next_position - before}",
                    )
                learned += frame.count
                offset = frame.end
            segment.size = base + offset
            if offset == len(data) and base + len(data) < size:
                continue  # a chunk boundary: read on
            if offset < len(data):
                self._bad_tail(segment, fd, data, offset, reason, size, locked)
            return learned

    def _bad_tail(
        self, segment: Segment, fd: int, data: Any, offset: int, reason: str, size: int, locked: bool
    ) -> None:
        """Bytes after the last valid frame: a torn tail, a frame still being written, or corruption."""
        where = segment.size
        if _valid_frame_after(data, offset):
            raise CorruptionError(segment.path, where, reason + " (valid data follows)")
        if not locked:
            return  # maybe a live writer's frame in progress: look again later
        if len(data) - offset < size - where:
            # A chunk cut the tail short: the whole tail must be checked before it is cut.
            rest = self.fs.pread(fd, size - where, where)
            if _valid_frame_after(rest, 0):
                raise CorruptionError(segment.path, where, reason + " (valid data follows)")
        self.fs.truncate(segment.path, where)
        self.cut_tails.append((segment.path, where, size - where, reason))

    def _adopt(self, number: int, path: str) -> None:
        """Start following a segment another process created (its header line only, so far)."""
        data = self.fs.read_file(path)
        newline = data.find(b"\n", 0, 4096)
        try:
            header = segment_header_decoder.decode(data[:newline]) if newline > 0 else None
        except (msgspec.DecodeError, ValueError, RecursionError):
            header = None
        if header is None or header.sessiondb != "segment":
            raise CorruptionError(path, 0, "missing or unreadable segment header")
        if header.format > SEGMENT_FORMAT:
            raise SchemaVersionError(
                f"{path} uses segment format {header.format}, newer than this sessiondb understands "
                f"({SEGMENT_FORMAT}); upgrade sessiondb in every process that opens this store"
            )
        if header.segment != number or header.first_position != self.index.next_position:
            raise CorruptionError(
                path,
                0,
                f"segment header says segment {header.segment} from position {header.first_position}, "
                f"expected {number} from {self.index.next_position}",
            )
        self.segments.add(Segment(number, path, header.first_position, newline + 1))


class FellBehindError(StoreBrokenError):
    """The segment this process last knew as newest is gone: it cannot catch up frame by frame.

    Other processes rolled past it and retention removed it (and maybe the segments after
    it) before this process looked: it neither appended nor read meanwhile. Writing on
    would append to a removed file, and reading on would serve an old view. The backend
    catches it and rebuilds the index (``_rebuild.py``); the message is for a caller it
    should ever reach unhandled (a store's close skips its checkpoint on it).
    """

    def __init__(self, path: str) -> None:
        super().__init__(
            f"this process's view of the store fell behind: segment {path} was its newest, and other processes "
            "rolled past it and retention removed it before this process caught up; close and reopen the store "
            "(nothing acknowledged is lost; keep more segments with CompactionSettings.keep_segments)"
        )
        self.path = path
