"""The segment set: which segment files make up the log, the active one, rolling, and read descriptors.

``SegmentSet`` is the only part that creates, writes, opens for reading or
deletes segment files. It knows each segment's first position and its frame
table (position and byte offset of each frame), which ``read_all`` bisects.
Segments are numbered 1, 2, 3 …; retention deletes a prefix, so the live ones
are always a contiguous run, and a number below the first live one (or in
``removed``) is history retention removed.
"""

from __future__ import annotations

import os
from array import array
from bisect import bisect_right

from ..._errors import HistoryUnavailableError
from .._fs import FileSystem
from ._format import encode_segment_header, segment_name


class Segment:
    """One segment file: its number, first position, size and frame table."""

    __slots__ = ("first_position", "frame_offsets", "frame_positions", "number", "path", "read_fd", "size")

    def __init__(self, number: int, path: str, first_position: int, size: int) -> None:
        self.number = number
        self.path = path
        self.first_position = first_position
        self.frame_positions = array("Q")
        self.frame_offsets = array("Q")
        self.size = size
        self.read_fd: int | None = None


class SegmentSet:
    """The segments of one store directory, oldest first; the last is the active (written) one."""

    def __init__(self, directory: str, fs: FileSystem, segment_bytes: int) -> None:
        self.directory = directory
        self.fs = fs
        self.segment_bytes = segment_bytes
        self.segments: list[Segment] = []
        self.starts: list[int] = []  # first positions, for bisect
        self.removed: set[int] = set()  # numbers retention deleted (readers check before opening)
        self.graveyard: list[int] = []  # read fds of deleted segments, closed one pass later
        self.write_fd: int | None = None
        self.write_number = 0  # the segment write_fd appends to
        self.segments_created = 0
        self.segments_deleted = 0

    # ------------------------------------------------------------------ membership

    def add(self, segment: Segment) -> None:
        """Append an existing segment (found by recovery or restored from a checkpoint)."""
        self.segments.append(segment)
        self.starts.append(segment.first_position)

    def clear(self) -> None:
        self.segments.clear()
        self.starts.clear()

    def path_of(self, number: int) -> str:
        return os.path.join(self.directory, segment_name(number))

    @property
    def active(self) -> Segment:
        return self.segments[-1]

    def live(self) -> list[Segment]:
        return [s for s in self.segments if s.number not in self.removed]

    def by_number(self, number: int) -> Segment:
        segments = self.segments  # read once: retention may shorten the list from the loop
        first = segments[0].number
        if number < first or number in self.removed:
            raise HistoryUnavailableError(
                f"segment {number} of store {self.directory} was removed by retention; "
                "its events are covered by snapshots"
            )
        segment = segments[number - first]
        assert segment.number == number
        return segment

    def containing(self, position: int) -> Segment:
        """The segment whose positions include ``position``."""
        return self.segments[bisect_right(self.starts, position) - 1]

    def first_live_number(self) -> int:
        for segment in self.segments:
            if segment.number not in self.removed:
                return segment.number
        return self.segments[-1].number

    def first_available_position(self, next_position: int) -> int:
        for segment in self.segments:
            if segment.number not in self.removed:
                return segment.first_position
        return next_position

    # ------------------------------------------------------------------ writing

    def create(self, number: int, first_position: int) -> Segment:
        """Create a segment file durably (tmp -> fsync -> rename -> fsync directory) and add it."""
        name = segment_name(number)
        self.fs.write_file_durably(self.directory, name, encode_segment_header(number, first_position))
        path = os.path.join(self.directory, name)
        segment = Segment(number, path, first_position, self.fs.size(path))
        self.add(segment)
        self.segments_created += 1
        return segment

    def open_active(self) -> None:
        self.write_fd = self.fs.open_write(self.active.path, create=False)
        self.write_number = self.active.number

    def follow_active(self) -> None:
        """Write to the newest segment: after another process rolled, this one's write fd is on a sealed one."""
        if self.write_number != self.active.number:
            if self.write_fd is not None:
                self.fs.close(self.write_fd)
                self.write_fd = None
            self.open_active()

    def write_frame(self, data: bytes, first_position: int) -> tuple[Segment, int]:
        """In a worker thread: one write and one fdatasync for the whole batch."""
        active = self.segments[-1]
        if active.size >= self.segment_bytes:
            active = self.roll(first_position)
        offset = active.size
        assert self.write_fd is not None
        self.fs.write(self.write_fd, data)
        self.fs.fdatasync(self.write_fd)
        active.size = offset + len(data)
        return active, offset

    def roll(self, first_position: int) -> Segment:
        """Seal the active segment and start the next; the sealed one is never written again."""
        fs = self.fs
        assert self.write_fd is not None
        fs.close(self.write_fd)
        self.write_fd = None
        active = self.create(self.segments[-1].number + 1, first_position)
        self.write_fd = fs.open_write(active.path, create=False)
        self.write_number = active.number
        return active

    # ------------------------------------------------------------------ reading

    def read_fd(self, number: int) -> tuple[int, str]:
        segment = self.by_number(number)
        if segment.read_fd is None:
            try:
                segment.read_fd = self.fs.open_read(segment.path)
            except FileNotFoundError:
                if segment is self.segments[-1]:
                    raise
                # Retention in another process removed it (after snapshots covered its events).
                self.forget_removed(segment)
                raise HistoryUnavailableError(
                    f"segment {number} of store {self.directory} was removed by retention in another process; "
                    "its events are covered by snapshots"
                ) from None
        return segment.read_fd, segment.path

    def forget_removed(self, segment: Segment) -> None:
        """Another process's retention unlinked ``segment``: stop opening it (an open fd still reads)."""
        self.removed.add(segment.number)

    # ------------------------------------------------------------------ deleting and closing

    def delete(self, segments: list[Segment]) -> int:
        """Unlink sealed segments (retention); return the bytes freed."""
        total = 0
        for segment in segments:
            # Readers check this set before opening; a read already running keeps its fd (closed next pass).
            self.removed.add(segment.number)
            total += segment.size
            self.fs.unlink(segment.path)
            if segment.read_fd is not None:
                self.graveyard.append(segment.read_fd)
                segment.read_fd = None
        self.fs.fsync_directory(self.directory)
        self.segments_deleted += len(segments)
        return total

    def bury(self) -> None:
        """Close the read fds of segments deleted by the previous pass: any read that began before has ended."""
        graveyard, self.graveyard = self.graveyard, []
        for fd in graveyard:
            self.fs.close(fd)

    def abandon(self) -> None:
        """Forget every descriptor without closing (a forked child: they are the parent's to close)."""
        for segment in self.segments:
            segment.read_fd = None
        self.graveyard = []
        self.write_fd = None

    def release(self) -> None:
        """Close every descriptor (read and write)."""
        fs = self.fs
        for segment in self.segments:
            if segment.read_fd is not None:
                fs.close(segment.read_fd)
                segment.read_fd = None
        if self.write_fd is not None:
            fs.close(self.write_fd)
            self.write_fd = None
