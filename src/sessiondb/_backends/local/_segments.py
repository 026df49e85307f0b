"""The segment set: which segment files make up the log, the active one, rolling, and read descriptors.

``SegmentSet`` is the only part that creates, writes, opens for reading or
deletes segment files. It knows each segment's first position and its frame
table (position and byte offset of each frame), which ``read_all`` bisects.
Segments are numbered 1, 2, 3 …; retention deletes a prefix, so the live ones
are always a contiguous run, and a number below the first live one (or in
``removed``) is history retention removed.

Read descriptors come from a bounded cache (``_fdcache.py``): ``reading`` pins
one for the duration of a block, so neither eviction nor retention closes it
under a read or a catch-up.
"""

from __future__ import annotations

import os
from array import array
from bisect import bisect_right
from types import TracebackType

from ..._errors import HistoryUnavailableError
from .._fs import FileSystem
from ._fdcache import DEFAULT_MAX_READ_FDS, RESOURCE_ERRNOS, ReadDescriptors, resource_error
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
        self.read_fd: int | None = None  # set by ReadDescriptors only


class SegmentSet:
    """The segments of one store directory, oldest first; the last is the active (written) one."""

    def __init__(
        self, directory: str, fs: FileSystem, segment_bytes: int, max_read_fds: int = DEFAULT_MAX_READ_FDS
    ) -> None:
        self.directory = directory
        self.fs = fs
        self.segment_bytes = segment_bytes
        self.segments: list[Segment] = []
        self.starts: list[int] = []  # first positions, for bisect
        self.removed: set[int] = set()  # numbers retention deleted (readers check before opening)
        # Bounded: one descriptor per segment ever read would exhaust the process's (issue 11).
        self.read_fds = ReadDescriptors(fs, max_read_fds)
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

    def adopt(self, rebuilt: SegmentSet) -> None:
        """Take the segments a rebuild found (``_rebuild.py``): the live ones, from the first retention left.

        Every descriptor of the old set is closed (a pinned one at its last unpin), the write
        descriptor too: it may point at a removed file. ``follow_active`` opens the new
        active segment under the write lock before anything is written. The counters stay.
        """
        self.read_fds.close_all()
        if self.write_fd is not None:
            self.fs.close(self.write_fd)
            self.write_fd = None
        self.write_number = 0  # no segment's number: follow_active opens the active one
        self.segments = rebuilt.segments
        self.starts = rebuilt.starts
        self.removed = set()

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

    def read_fd(self, number: int) -> _PinnedReadFd:
        """``with segments.read_fd(n) as (fd, path):`` segment ``n``'s read descriptor, open until the block ends.

        ``HistoryUnavailableError`` for a segment retention removed (here, or in another
        process: ENOENT on a sealed segment); ``ResourceExhaustedError`` when the system
        refuses a descriptor, or a read in the block for lack of resources.
        """
        return _PinnedReadFd(self, number)

    def forget_removed(self, segment: Segment) -> None:
        """Another process's retention unlinked ``segment``: stop opening it (an open fd still reads)."""
        self.removed.add(segment.number)

    # ------------------------------------------------------------------ deleting and closing

    def delete(self, segments: list[Segment]) -> int:
        """Unlink sealed segments (retention); return the bytes freed."""
        total = 0
        for segment in segments:
            # Readers check this set before opening; a read already running keeps its fd until it unpins.
            self.removed.add(segment.number)
            total += segment.size
            self.fs.unlink(segment.path)
            self.read_fds.discard(segment)  # under the cache's lock: an eviction must not close it too
        self.fs.fsync_directory(self.directory)
        self.segments_deleted += len(segments)
        return total

    def abandon(self) -> None:
        """Forget every descriptor without closing (a forked child: they are the parent's to close)."""
        self.read_fds.abandon()
        self.write_fd = None

    def release(self) -> None:
        """Close every descriptor (read and write)."""
        fs = self.fs
        self.read_fds.close_all()
        if self.write_fd is not None:
            fs.close(self.write_fd)
            self.write_fd = None


class _PinnedReadFd:
    """The context manager ``SegmentSet.read_fd`` returns (a class, not a generator: the log
    catch-up enters one on every read, so its cost counts)."""

    __slots__ = ("_fd", "_number", "_segment", "_set")

    def __init__(self, segment_set: SegmentSet, number: int) -> None:
        self._set = segment_set
        self._number = number

    def __enter__(self) -> tuple[int, str]:
        segment_set = self._set
        segment = self._segment = segment_set.by_number(self._number)
        try:
            self._fd = segment_set.read_fds.pin(segment)
        except FileNotFoundError:
            if segment is segment_set.segments[-1]:
                raise
            # Retention in another process removed it (after snapshots covered its events).
            segment_set.forget_removed(segment)
            raise HistoryUnavailableError(
                f"segment {self._number} of store {segment_set.directory} was removed by retention in another "
                "process; its events are covered by snapshots"
            ) from None
        return self._fd, segment.path

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._set.read_fds.unpin(self._fd)
        if isinstance(exc, OSError) and exc.errno in RESOURCE_ERRNOS:
            raise resource_error(exc, f"a read of {self._segment.path}") from exc
