"""Recovery on open: restore the index from the checkpoint, scan what follows, cut a torn tail.

``Recovery`` runs once, in a worker thread, before the store accepts work. It
removes temp files (never read), loads the checkpoint when it holds, scans
every segment it does not cover with the format's scan and feeds each frame to
``Index.index_frame``, and rebuilds sessions whose start retention removed from
their snapshots. What it did is kept in ``report`` (``LocalBackend.recovery``).
"""

from __future__ import annotations

import os
from typing import Any

from ..._errors import CorruptionError, SchemaVersionError
from .._base import SessionInfo
from .._fs import FileSystem
from .._snapshot_payload import SnapshotFormatError, decode_snapshot_info
from ._checkpoint import Checkpointer
from ._format import SEGMENT_FORMAT, SEGMENT_SUFFIX, _parse_frame, _valid_frame_after, scan_segment, segment_number
from ._index import Index, Stream
from ._segments import Segment, SegmentSet
from ._snapshot_files import SnapshotFiles


class Recovery:
    """Rebuilds the index and segment set of one store directory from its files."""

    def __init__(
        self,
        directory: str,
        fs: FileSystem,
        read_only: bool,
        index: Index,
        segments: SegmentSet,
        snapshots: SnapshotFiles,
        checkpoints: Checkpointer,
    ) -> None:
        self.directory = directory
        self.fs = fs
        self.read_only = read_only
        self.index = index
        self.segments = segments
        self.snapshots = snapshots
        self.checkpoints = checkpoints
        self.report: dict[str, Any] = {}
        self.log_pruned = False  # the first segment on disk is not 1: retention ran

    def run(self, *, remove_compaction_temps: bool = True) -> None:
        """Recover; the caller holds the write lock (and, with ``remove_compaction_temps``, the compaction lock)."""
        fs = self.fs
        names = fs.listdir(self.directory)
        removed = []
        if not self.read_only:
            for name in names:
                if ".tmp" not in name:
                    continue
                # Never read: a temp file was never renamed into place. A segment's is a dead
                # writer's (segments are created under the write lock); a snapshot's or the
                # checkpoint's may be another process's compaction at work, unless it is ours.
                if name.endswith(SEGMENT_SUFFIX + ".tmp") or remove_compaction_temps:
                    fs.unlink(os.path.join(self.directory, name))
                    removed.append(name)
            if removed:
                fs.fsync_directory(self.directory)
        numbers = sorted(n for n in (segment_number(name) for name in names) if n is not None)
        truncated: list[tuple[str, int, int, str]] = []
        # The checkpoint (when valid) restores the index of the segments it covers: scan only what follows.
        resume = self.resume_from_checkpoint(numbers, names, truncated)
        for index, number in enumerate(numbers):
            if index < resume:
                continue
            last = index == len(numbers) - 1
            cut = self.recover_segment(number, last)
            if cut is not None:
                truncated.append(cut)
        self.adopt_snapshot_only_sessions()  # sessions whose every event retention removed
        self.forget_snapshots_ahead_of_log()  # a log cut by repair: its snapshots may describe lost events
        # The checkpoint and snapshots restored summaries: file every session under its scope and tags.
        self.index.labels.rebuild(stream.info for stream in self.index.streams.values())
        self.report = {**self.report, "removed_temp_files": removed, "truncated_tails": truncated}

    def recover_segment(self, number: int, last: bool) -> tuple[str, int, int, str] | None:
        path = self.segments.path_of(number)
        data = self.fs.read_file(path)
        scan = scan_segment(data)
        if scan.header is None:
            raise CorruptionError(path, 0, scan.bad_reason)
        if scan.header.format < 1:
            raise CorruptionError(path, 0, f"segment header has impossible format {scan.header.format}")
        if scan.header.format > SEGMENT_FORMAT:
            raise SchemaVersionError(
                f"{path} uses segment format {scan.header.format}, newer than this sessiondb "
                f"understands ({SEGMENT_FORMAT}); upgrade sessiondb to open this store"
            )
        if scan.header.segment != number:
            raise CorruptionError(path, 0, f"segment header says {scan.header.segment}, file name says {number}")
        cut = None
        if scan.bad_offset is not None:
            if not last or scan.valid_after_bad:
                raise CorruptionError(path, scan.bad_offset, scan.bad_reason + " (valid data follows)")
            # A torn tail: the batch was never acknowledged. Cut it off.
            cut = (path, scan.bad_offset, len(data) - scan.bad_offset, scan.bad_reason)
            if not self.read_only:
                self.fs.truncate(path, scan.valid_end)
        if self.segments.segments and scan.header.first_position != self.index.next_position:
            raise CorruptionError(
                path, 0, f"segment starts at position {scan.header.first_position}, expected {self.index.next_position}"
            )
        segment = Segment(number, path, scan.header.first_position, scan.valid_end)
        self.index.next_position = scan.header.first_position
        for frame in scan.frames:
            self.index.index_frame(segment, data, frame.offset, frame.payload_offset, frame.end, frame.first_position)
            if self.index.next_position - frame.first_position != frame.count:
                # The header's count is outside the checksum: a damaged count must not pass unseen.
                raise CorruptionError(
                    path,
                    frame.offset,
                    f"frame declares {frame.count} records but holds {self.index.next_position - frame.first_position}",
                )
        self.segments.add(segment)
        return cut

    def resume_from_checkpoint(
        self, numbers: list[int], names: list[str], truncated: list[tuple[str, int, int, str]]
    ) -> int:
        """Called by ``run``: restore from the checkpoint; return the index in ``numbers`` to scan from."""
        self.log_pruned = bool(numbers) and numbers[0] > 1
        covered = self.checkpoints.load(numbers)
        if not covered:
            self.index.clear()
            self.segments.clear()
            self.snapshots.load_headers(names)
            return 0
        first = self.segments.segments[0].number
        stale = [n for n in numbers if n < first]
        if stale and not self.read_only:
            # A crash between a retention checkpoint and the deletion it allowed: finish the deletion.
            for number in stale:
                self.fs.unlink(self.segments.path_of(number))
            self.fs.fsync_directory(self.directory)
            self.report["removed_stale_segments"] = stale
        last_number = self.segments.segments[-1].number
        index = numbers.index(last_number)
        cut = self.continue_segment(last_number, index == len(numbers) - 1)
        if cut is not None:
            truncated.append(cut)
        return index + 1

    def continue_segment(self, number: int, last: bool) -> tuple[str, int, int, str] | None:
        """Scan the checkpoint's newest segment from where the checkpoint ends (torn tail as usual)."""
        segment = self.segments.segments[-1]
        assert segment.number == number
        data = self.fs.read_file(segment.path)
        offset = segment.size
        cut = None
        while offset < len(data):
            frame, reason = _parse_frame(data, offset)
            if frame is None:
                if not last or _valid_frame_after(data, offset):
                    raise CorruptionError(segment.path, offset, reason + " (valid data follows)")
                cut = (segment.path, offset, len(data) - offset, reason)
                if not self.read_only:
                    self.fs.truncate(segment.path, offset)
                break
            self.index.index_frame(segment, data, frame.offset, frame.payload_offset, frame.end, frame.first_position)
            if self.index.next_position - frame.first_position != frame.count:
                raise CorruptionError(
                    segment.path,
                    frame.offset,
                    f"frame declares {frame.count} records but holds {self.index.next_position - frame.first_position}",
                )
            offset = frame.end
        segment.size = offset
        return cut

    def adopt_pruned_stream(self, record: Any, path: str, offset: int) -> Stream:
        """A session whose start retention removed: seed its summary from its snapshot."""
        if not self.log_pruned:
            raise CorruptionError(path, offset, f"session {record.s!r} has events before its start")
        stream = Stream(SessionInfo(record.s), record.v - 1)
        newest = self.snapshots.newest.get(record.s)
        found = self.snapshots.read_sync(record.s, newest[0]) if newest is not None else None
        if found is not None:
            try:
                version, info = decode_snapshot_info(found[1])
            except SnapshotFormatError:
                version, info = 0, None
            if info is not None and version >= record.v - 1:
                stream.info = info
                self.snapshots.newest[record.s] = (version, len(found[1]))
        else:
            self.report.setdefault("sessions_without_snapshot", []).append(record.s)
        self.index.floors[record.s] = record.v
        return stream

    def adopt_snapshot_only_sessions(self) -> None:
        """After a scan without checkpoint: index the sessions that live only in snapshots now."""
        if not self.log_pruned:
            return
        for session_id, (version, _size) in list(self.snapshots.newest.items()):
            if session_id in self.index.streams:
                continue
            found = self.snapshots.read_sync(session_id, version)
            if found is None:
                continue
            try:
                _, info = decode_snapshot_info(found[1])
            except SnapshotFormatError:
                continue
            self.index.streams[session_id] = Stream(info, version)
            self.index.floors[session_id] = version + 1

    def forget_snapshots_ahead_of_log(self) -> None:
        """Forget snapshots of versions the log does not hold.

        Only a log cut short on purpose (``repair``, or an older copy restored) leaves
        them: acknowledged events are never lost otherwise. Such a snapshot describes
        events that are not in this store; trusted, it would stand in for whatever
        later appends write at those versions.
        """
        ahead = []
        for session_id, newest in list(self.snapshots.newest.items()):
            stream = self.index.streams.get(session_id)
            if stream is None:
                continue
            head = stream.base + len(stream.locations)
            if newest[0] <= head:
                continue
            ahead.append(session_id)
            del self.snapshots.newest[session_id]
            usable = [entry for entry in self.snapshots.older.pop(session_id, []) if entry[0] <= head]
            if usable:
                usable.sort()
                self.snapshots.newest[session_id] = usable.pop()
                if usable:
                    self.snapshots.older[session_id] = usable
        if ahead:
            self.report = {**self.report, "snapshots_ahead_of_log": sorted(ahead)}
