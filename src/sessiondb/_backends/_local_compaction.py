"""The local backend's side of storage compaction: snapshot files, the index checkpoint, retention.

Mixed into ``LocalBackend``. Everything written here goes tmp -> fsync ->
rename -> fsync directory (``FileSystem.write_file_durably``) before anything
it supersedes is deleted, and every file carries a checksum: a damaged
snapshot or checkpoint is ignored (the log is replayed instead), never trusted.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
import zlib
from array import array
from bisect import bisect_left
from typing import TYPE_CHECKING, Any

import anyio
import msgspec

from .._errors import CorruptionError, HistoryUnavailableError
from .._snapshots import SnapshotFormatError, decode_snapshot_info
from ._base import SessionInfo
from ._segment import frame_header_decoder, segment_name

if TYPE_CHECKING:
    from .._errors import StoreBrokenError
    from ._fdcache import ReadDescriptors
    from ._fs import FileSystem
    from ._local import _Segment, _Stream

SNAPSHOT_PREFIX = "snapshot-"
SNAPSHOT_SUFFIX = ".snap"
CHECKPOINT_NAME = "CHECKPOINT"
CHECKPOINT_FORMAT = 1
_OFFSET_BITS = 40
# Snapshots at most this large are read on the event loop; larger ones in a worker thread.
_INLINE_SNAPSHOT_BYTES = 256 * 1024


class SnapshotFileHeader(msgspec.Struct, gc=False):
    sessiondb: str
    format: int
    session: str
    version: int
    bytes: int
    crc: int


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
_snapshot_header_decoder = msgspec.json.Decoder(SnapshotFileHeader)
_checkpoint_header_decoder = msgspec.json.Decoder(CheckpointHeader)
_checkpoint_encoder = msgspec.msgpack.Encoder()
_checkpoint_decoder = msgspec.msgpack.Decoder(Checkpoint)


def snapshot_file_name(session_id: str, version: int) -> str:
    # Hashed: a session id may hold characters (or ".tmp") that must not shape file names.
    return f"{SNAPSHOT_PREFIX}{hashlib.sha256(session_id.encode()).hexdigest()[:40]}-{version:012d}{SNAPSHOT_SUFFIX}"


class LocalCompaction:
    """Snapshot, checkpoint and retention methods of ``LocalBackend`` (see that class)."""

    if TYPE_CHECKING:  # what this mixin uses of LocalBackend
        path: str
        read_only: bool
        fs: FileSystem
        recovery: dict[str, Any]
        _streams: dict[str, _Stream]
        _segments: list[_Segment]
        _segment_starts: list[int]
        _next_position: int
        _stats: dict[str, int]
        _broken: StoreBrokenError | None
        _read_fds: ReadDescriptors

        def _index_frame(
            self, segment: _Segment, data: bytes, offset: int, start: int, end: int, first_position: int
        ) -> None: ...

        def _segment_by_number(self, number: int) -> _Segment: ...

    def _init_compaction(self) -> None:
        # session -> (version, bytes) of its newest snapshot, and of older ones kept for time travel.
        self._snapshot_map: dict[str, tuple[int, int]] = {}
        self._snapshot_older: dict[str, list[tuple[int, int]]] = {}
        # Sessions whose versions below this were removed by retention (an index rebuilt without them).
        self._history_floor: dict[str, int] = {}
        self._removed_segments: set[int] = set()
        self._graveyard: list[int] = []  # read fds of deleted segments, closed one pass later
        self._checkpoint_on_close = True
        self._last_checkpoint_size = 0
        self._checkpoint_at_bytes = -1  # the first pass always checkpoints
        self._sealed_crcs: dict[int, tuple[int, int]] = {}
        self._log_pruned = False
        self._compaction_stats: dict[str, Any] = {
            "snapshots_written": 0,
            "snapshot_bytes_written": 0,
            "snapshots_deleted": 0,
            "checkpoints_written": 0,
            "checkpoint_bytes_written": 0,
            "segments_deleted": 0,
            "bytes_reclaimed": 0,
            "opened_from_checkpoint": False,
            "checkpoint_ignored": "",
        }

    # ------------------------------------------------------------------ snapshots

    @property
    def supports_snapshots(self) -> bool:
        return not self.read_only

    async def write_snapshot(self, session_id: str, version: int, data: bytes) -> bool:
        if self.read_only:
            return False
        if self._broken is not None:
            raise self._broken
        header = SnapshotFileHeader("snapshot", 1, session_id, version, len(data), zlib.crc32(data))
        blob = b"".join((_json.encode(header), b"\n", data))
        name = snapshot_file_name(session_id, version)
        await anyio.to_thread.run_sync(self.fs.write_file_durably, self.path, name, blob)
        current = self._snapshot_map.get(session_id)
        if current is None or current[0] < version:
            self._snapshot_map[session_id] = (version, len(blob))
            if current is not None:
                # The older one stays while the log after it is retained: it serves time travel.
                self._snapshot_older.setdefault(session_id, []).append(current)
        self._compaction_stats["snapshots_written"] += 1
        self._compaction_stats["snapshot_bytes_written"] += len(blob)
        return True

    async def read_snapshot(self, session_id: str, max_version: int) -> tuple[int, bytes] | None:
        """The newest readable snapshot at a version <= ``max_version``.

        One that fails its checksum is skipped for the next older one, which leaves
        a longer tail to replay but may still avoid history retention removed.
        """
        known = self._snapshot_map.get(session_id)
        if known is None:
            return None
        entries = [known, *self._snapshot_older.get(session_id, ())]
        for version, size in sorted((entry for entry in entries if entry[0] <= max_version), reverse=True):
            if size > _INLINE_SNAPSHOT_BYTES:
                found = await anyio.to_thread.run_sync(self._read_snapshot_sync, session_id, version)
            else:
                found = self._read_snapshot_sync(session_id, version)
            if found is not None:
                return found
        return None

    def _read_snapshot_sync(self, session_id: str, version: int) -> tuple[int, bytes] | None:
        path = os.path.join(self.path, snapshot_file_name(session_id, version))
        try:
            blob = self.fs.read_file(path)
        except FileNotFoundError:
            return None
        parsed = _parse_snapshot_file(blob)
        if parsed is None or parsed[0].session != session_id or parsed[0].version != version:
            self._compaction_stats["snapshots_damaged"] = self._compaction_stats.get("snapshots_damaged", 0) + 1
            return None
        return parsed[0].version, parsed[1]

    def snapshot_versions(self) -> dict[str, tuple[int, int]]:
        return dict(self._snapshot_map)

    def _delete_snapshots_sync(self, session_id: str, entries: list[tuple[int, int]]) -> int:
        """Unlink the given snapshot files of a session; return the bytes freed."""
        freed = 0
        for version, size in entries:
            try:
                self.fs.unlink(os.path.join(self.path, snapshot_file_name(session_id, version)))
            except FileNotFoundError:
                continue
            self._compaction_stats["snapshots_deleted"] += 1
            freed += size
        return freed

    def _prune_snapshots(self) -> list[tuple[str, list[tuple[int, int]]]]:
        """Snapshot files nothing can use any more; dropped from the maps (unlink them after a checkpoint).

        All of a deleted session's; and older snapshots of a live one whose tail
        retention removed (they could only serve time travel the log no longer backs).
        """
        doomed: list[tuple[str, list[tuple[int, int]]]] = []
        for session_id in list(self._snapshot_map):
            stream = self._streams.get(session_id)
            if stream is None or stream.info.deleted:
                entries = [self._snapshot_map.pop(session_id), *self._snapshot_older.pop(session_id, [])]
                doomed.append((session_id, entries))
                continue
            older = self._snapshot_older.get(session_id)
            if not older:
                continue
            available = self._first_available_version(session_id, stream)
            useless = [entry for entry in older if entry[0] < available - 1]
            if useless:
                self._snapshot_older[session_id] = [entry for entry in older if entry[0] >= available - 1]
                doomed.append((session_id, useless))
        return doomed

    def _first_available_version(self, session_id: str, stream: _Stream) -> int:
        floor = self._history_floor.get(session_id, 0)
        if not stream.locations:
            return max(floor, stream.base + 1)
        first_kept = self._first_live_number()
        return max(floor, stream.base + bisect_left(stream.locations, first_kept << _OFFSET_BITS) + 1)

    def snapshot_candidates(self, min_events: int, min_bytes: int, state_ratio: float) -> list[tuple[str, int]]:
        """Sessions whose unsnapshotted tail is worth a snapshot: (session id, tail bytes).

        A tail qualifies when it has ``min_events`` events or ``min_bytes`` bytes
        AND at least ``state_ratio`` times the bytes of the session's current
        snapshot: so a large state is never rewritten for a small tail, and the
        snapshot bytes written stay within a constant factor of the bytes appended.
        """
        out: list[tuple[str, int]] = []
        for session_id, stream in self._streams.items():
            if stream.info.deleted:
                continue
            known = self._snapshot_map.get(session_id)
            snapshot_version, snapshot_bytes = known if known is not None else (0, 0)
            first = max(snapshot_version - stream.base, 0)
            tail_events = len(stream.locations) - first
            if tail_events <= 0 or (tail_events < min_events and tail_events * 64 < min_bytes):
                continue  # cheap rejection before summing lengths (records are >= 64 bytes)
            tail_bytes = sum(stream.lengths[first:]) if first else sum(stream.lengths)
            if tail_events < min_events and tail_bytes < min_bytes:
                continue
            if tail_bytes < snapshot_bytes * state_ratio:
                continue
            out.append((session_id, tail_bytes))
        return out

    # ------------------------------------------------------------------ retention

    def _retention_candidates(self, keep_segments: int, keep_seconds: float | None) -> list[_Segment]:
        """The oldest sealed segments beyond the retention window (a prefix of the log)."""
        live = [s for s in self._segments[:-1] if s.number not in self._removed_segments]
        candidates = live[: max(0, len(live) - keep_segments)]
        if keep_seconds is not None:
            now = time.time()
            kept: list[_Segment] = []
            for segment in candidates:
                try:
                    age = now - os.stat(segment.path).st_mtime
                except OSError:
                    break
                if age < keep_seconds:
                    break
                kept.append(segment)
            candidates = kept
        return candidates

    def retention_needs(self, keep_segments: int, keep_seconds: float | None) -> dict[str, int]:
        """Sessions that need a snapshot (at >= the given version) before retention can delete segments."""
        candidates = self._retention_candidates(keep_segments, keep_seconds)
        return self._unmet_needs(candidates)

    def _unmet_needs(self, candidates: list[_Segment]) -> dict[str, int]:
        snapshots = self._snapshot_map
        return {
            session_id: needed
            for session_id, needed in self._needed_versions(candidates).items()
            if snapshots.get(session_id, (0, 0))[0] < needed
        }

    def _needed_versions(self, candidates: list[_Segment]) -> dict[str, int]:
        """Per live session, the version a snapshot must reach before ``candidates`` can be deleted."""
        if not candidates:
            return {}
        limit = (candidates[-1].number + 1) << _OFFSET_BITS
        streams = self._streams
        in_candidates: dict[str, int] = {}  # session -> its highest version stored in a candidate segment
        for session_id, stream in streams.items():
            count = bisect_left(stream.locations, limit)
            if count:
                in_candidates[session_id] = stream.base + count
        needs: dict[str, int] = {}
        for session_id, stream in streams.items():
            if stream.info.deleted:
                continue
            needed = in_candidates.get(session_id, 0)
            if stream.base and _ancestor_pruned(streams, stream, in_candidates):
                # A fork reads its parent's events unless its own snapshot covers the inherited history.
                needed = max(needed, stream.base + 1 if len(stream.locations) else stream.base)
            if needed:
                needs[session_id] = needed
        return needs

    def _damaged_covering_snapshots(self, candidates: list[_Segment]) -> list[str]:
        """Sessions whose snapshot that replaces history in ``candidates`` does not read back whole.

        Run before deleting segments: a snapshot damaged since it was written (a bad
        sector, a stray write) must not become the only copy of the history it covers.
        """
        damaged = []
        for session_id in self._needed_versions(candidates):
            known = self._snapshot_map.get(session_id)
            if known is not None and self._read_snapshot_sync(session_id, known[0]) is None:
                damaged.append(session_id)
        return damaged

    def _forget_snapshot(self, session_id: str) -> None:
        """Stop counting on a session's newest snapshot; its newest older one (if any) takes its place."""
        self._snapshot_map.pop(session_id, None)
        older = self._snapshot_older.get(session_id)
        if older:
            newest = max(older)
            older.remove(newest)
            self._snapshot_map[session_id] = newest

    # ------------------------------------------------------------------ one storage pass

    async def compact_storage(self, settings: Any) -> dict[str, Any]:
        """Delete covered sealed segments (after a checkpoint that no longer lists them) and checkpoint."""
        if self.read_only or self._broken is not None:
            return {}
        counters = {"segments_deleted": 0, "bytes_reclaimed": 0}
        # fds of segments deleted by the previous pass: any read that began before it has finished.
        graveyard, self._graveyard = self._graveyard, []
        for fd in graveyard:
            self.fs.close(fd)
        candidates = self._retention_candidates(settings.keep_segments, settings.keep_seconds)
        while candidates and self._unmet_needs(candidates):
            candidates.pop()  # retention deletes a prefix only: stop before the first still-needed segment
        while candidates:
            # Read back the snapshots that will replace the history about to go. One that fails is
            # forgotten (an older one may stand in, and is read back in turn): its segments stay,
            # and the next pass writes that session a new snapshot.
            damaged = await anyio.to_thread.run_sync(self._damaged_covering_snapshots, candidates)
            if not damaged:
                break
            for session_id in damaged:
                self._forget_snapshot(session_id)
            while candidates and self._unmet_needs(candidates):
                candidates.pop()
        removed = {segment.number for segment in candidates}
        # Marked removed first (readers get HistoryUnavailableError from now on), so the checkpoint
        # leaves them out and snapshot pruning sees what history remains.
        self._removed_segments.update(removed)
        doomed = self._prune_snapshots()
        if removed or doomed or (settings.checkpoint and self._checkpoint_due()):
            await self.write_checkpoint(exclude=removed)
        # Only now, with a durable checkpoint that no longer needs them, delete what it supersedes.
        if removed:
            counters["bytes_reclaimed"] += await anyio.to_thread.run_sync(self._delete_segments_sync, candidates)
            counters["segments_deleted"] = len(candidates)
        for session_id, entries in doomed:
            counters["bytes_reclaimed"] += await anyio.to_thread.run_sync(
                self._delete_snapshots_sync, session_id, entries
            )
        if doomed:
            await anyio.to_thread.run_sync(self.fs.fsync_directory, self.path)
        self._compaction_stats["segments_deleted"] += counters["segments_deleted"]
        self._compaction_stats["bytes_reclaimed"] += counters["bytes_reclaimed"]
        return counters

    def _delete_segments_sync(self, segments: list[_Segment]) -> int:
        total = 0
        for segment in segments:
            # Readers check this set before opening; a read already running keeps its fd (closed next pass).
            self._removed_segments.add(segment.number)
            total += segment.size
            self.fs.unlink(segment.path)
            fd = self._read_fds.detach(segment)  # under the cache's lock: eviction must not close it too
            if fd is not None:
                self._graveyard.append(fd)
        self.fs.fsync_directory(self.path)
        return total

    # ------------------------------------------------------------------ checkpoint

    def _checkpoint_due(self) -> bool:
        """Cost-proportional like snapshots: rewrite the index once the log grew by twice its size.

        Checkpoints then write at most half a byte per byte appended, and a crash
        leaves at most about two checkpoints' size of log for open to scan.
        """
        grown = self._stats["bytes_written"] - self._checkpoint_at_bytes
        return grown > 0 and grown >= 2 * self._last_checkpoint_size

    async def write_checkpoint(self, exclude: set[int] | None = None) -> int:
        """Capture the index (on the loop: consistent with applied batches) and write it durably."""
        captured = self._capture_checkpoint(exclude or set())
        if captured is None:
            return 0
        size: int = await anyio.to_thread.run_sync(self._write_checkpoint_sync, captured)
        return size

    def _capture_checkpoint(self, exclude: set[int]) -> tuple[Checkpoint, _Segment, int] | None:
        segments = [s for s in list(self._segments) if s.number not in self._removed_segments]
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
            for s in self._streams.values()
        ]
        # The frame tables only ever grow on the loop (in _apply), so their lengths now are consistent
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
            self._next_position,
            ck_segments,
            streams,
            dict(self._snapshot_map),
            {sid: list(entries) for sid, entries in self._snapshot_older.items() if entries},
            dict(self._history_floor),
            self._compaction_stats["segments_deleted"],
        )
        last = segments[-1]
        return checkpoint, last, len(last.frame_offsets)

    def _write_checkpoint_sync(self, captured: tuple[Checkpoint, _Segment, int]) -> int:
        checkpoint, last, frames = captured
        fs = self.fs
        for ck in checkpoint.segments:
            path = os.path.join(self.path, segment_name(ck.number))
            fd = fs.open_read(path)
            try:
                if ck.number == last.number:
                    ck.size = _applied_end(fs, fd, last, frames)
                else:  # sealed: covered whole, and its checksum never changes
                    ck.size = self._segment_by_number(ck.number).size
                cached = self._sealed_crcs.get(ck.number)
                if cached is not None and cached[0] == ck.size:
                    ck.crc = cached[1]
                else:
                    ck.crc = _file_crc(fs, fd, ck.size)
                    if ck.number != last.number:
                        self._sealed_crcs[ck.number] = (ck.size, ck.crc)
            finally:
                fs.close(fd)
        payload = _checkpoint_encoder.encode(checkpoint)
        header = _json.encode(CheckpointHeader("checkpoint", CHECKPOINT_FORMAT, len(payload), zlib.crc32(payload)))
        blob = b"".join((header, b"\n", payload))
        fs.write_file_durably(self.path, CHECKPOINT_NAME, blob)
        self._last_checkpoint_size = len(blob)
        self._checkpoint_at_bytes = self._stats["bytes_written"]
        self._compaction_stats["checkpoints_written"] += 1
        self._compaction_stats["checkpoint_bytes_written"] += len(blob)
        return len(blob)

    def _close_checkpoint(self) -> None:
        """At a clean close, checkpoint so the next open scans nothing (failures only cost open time)."""
        graveyard, self._graveyard = self._graveyard, []
        for fd in graveyard:
            self.fs.close(fd)
        if self.read_only or self._broken is not None or not self._checkpoint_on_close or not self._segments:
            return
        captured = self._capture_checkpoint(set())
        if captured is None:
            return
        # The log is the truth: without a checkpoint the next open scans it.
        with contextlib.suppress(OSError):
            self._write_checkpoint_sync(captured)

    def _resume_from_checkpoint(
        self, numbers: list[int], names: list[str], truncated: list[tuple[str, int, int, str]]
    ) -> int:
        """Called by ``_recover``: restore from the checkpoint; return the index in ``numbers`` to scan from."""
        self._log_pruned = bool(numbers) and numbers[0] > 1
        covered = self._load_checkpoint(numbers)
        if not covered:
            self._streams.clear()
            self._segments.clear()
            self._segment_starts.clear()
            self._next_position = 1
            self._snapshot_map, self._snapshot_older = read_snapshot_headers(self.fs, self.path, names)
            return 0
        first = self._segments[0].number
        stale = [n for n in numbers if n < first]
        if stale and not self.read_only:
            # A crash between a retention checkpoint and the deletion it allowed: finish the deletion.
            for number in stale:
                self.fs.unlink(os.path.join(self.path, segment_name(number)))
            self.fs.fsync_directory(self.path)
            self.recovery["removed_stale_segments"] = stale
        last_number = self._segments[-1].number
        index = numbers.index(last_number)
        cut = self._continue_segment(last_number, index == len(numbers) - 1)
        if cut is not None:
            truncated.append(cut)
        return index + 1

    def _load_checkpoint(self, numbers: list[int]) -> int:
        """Restore the index from the checkpoint; return how many of ``numbers`` it covers whole.

        Anything doubtful (no file, bad checksum, newer format, a covered segment
        missing or shorter, changed bytes at its end) makes it return 0 after
        recording why: the caller then scans the whole log.
        """
        fs = self.fs
        path = os.path.join(self.path, CHECKPOINT_NAME)
        if not fs.exists(path):
            return 0
        try:
            checkpoint = self._read_checkpoint(path)
            covered = self._verify_checkpoint(checkpoint, numbers)
        except (OSError, ValueError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            self._compaction_stats["checkpoint_ignored"] = str(exc)
            return 0
        from ._local import _Segment, _Stream

        for ck in checkpoint.segments:
            segment = _Segment(ck.number, os.path.join(self.path, segment_name(ck.number)), ck.first_position, ck.size)
            segment.frame_positions.frombytes(ck.frame_positions)
            segment.frame_offsets.frombytes(ck.frame_offsets)
            self._segments.append(segment)
            self._segment_starts.append(segment.first_position)
        streams = self._streams
        for cs in checkpoint.streams:
            stream = _Stream(cs.info, cs.base)
            stream.locations.frombytes(cs.locations)
            stream.lengths.frombytes(cs.lengths)
            stream.event_ids = cs.event_ids
            streams[cs.info.session_id] = stream
        self._snapshot_map = dict(checkpoint.snapshots)
        self._snapshot_older = {sid: list(entries) for sid, entries in checkpoint.older_snapshots.items()}
        self._history_floor = dict(checkpoint.floors)
        self._next_position = checkpoint.next_position
        self._compaction_stats["opened_from_checkpoint"] = True
        return covered + 1

    def _read_checkpoint(self, path: str) -> Checkpoint:
        return read_checkpoint_file(self.fs.read_file(path))

    def _verify_checkpoint(self, checkpoint: Checkpoint, numbers: list[int]) -> int:
        return verify_checkpoint_segments(self.fs, self.path, checkpoint, numbers, self._sealed_crcs)

    def _continue_segment(self, number: int, last: bool) -> tuple[str, int, int, str] | None:
        """Scan the checkpoint's newest segment from where the checkpoint ends (torn tail as usual)."""
        from ._segment import _parse_frame, _valid_frame_after

        segment = self._segments[-1]
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
            self._index_frame(segment, data, frame.offset, frame.payload_offset, frame.end, frame.first_position)
            if self._next_position - frame.first_position != frame.count:
                raise CorruptionError(
                    segment.path,
                    frame.offset,
                    f"frame declares {frame.count} records but holds {self._next_position - frame.first_position}",
                )
            offset = frame.end
        segment.size = offset
        return cut

    # ------------------------------------------------------------------ rebuilding after retention

    def _adopt_pruned_stream(self, record: Any, path: str, offset: int) -> _Stream:
        """A session whose start retention removed: seed its summary from its snapshot."""
        from ._local import _Stream

        if not self._log_pruned:
            raise CorruptionError(path, offset, f"session {record.s!r} has events before its start")
        stream = _Stream(SessionInfo(record.s), record.v - 1)
        newest = self._snapshot_map.get(record.s)
        found = self._read_snapshot_sync(record.s, newest[0]) if newest is not None else None
        if found is not None:
            try:
                version, info = decode_snapshot_info(found[1])
            except SnapshotFormatError:
                version, info = 0, None
            if info is not None and version >= record.v - 1:
                stream.info = info
                self._snapshot_map[record.s] = (version, len(found[1]))
        else:
            self.recovery.setdefault("sessions_without_snapshot", []).append(record.s)
        self._history_floor[record.s] = record.v
        return stream

    def _adopt_snapshot_only_sessions(self) -> None:
        """After a scan without checkpoint: index the sessions that live only in snapshots now."""
        from ._local import _Stream

        if not self._log_pruned:
            return
        for session_id, (version, _size) in list(self._snapshot_map.items()):
            if session_id in self._streams:
                continue
            found = self._read_snapshot_sync(session_id, version)
            if found is None:
                continue
            try:
                _, info = decode_snapshot_info(found[1])
            except SnapshotFormatError:
                continue
            self._streams[session_id] = _Stream(info, version)
            self._history_floor[session_id] = version + 1

    def _forget_snapshots_ahead_of_log(self) -> None:
        """Forget snapshots of versions the log does not hold.

        Only a log cut short on purpose (``repair``, or an older copy restored) leaves
        them: acknowledged events are never lost otherwise. Such a snapshot describes
        events that are not in this store; trusted, it would stand in for whatever
        later appends write at those versions.
        """
        ahead = []
        for session_id, newest in list(self._snapshot_map.items()):
            stream = self._streams.get(session_id)
            if stream is None:
                continue
            head = stream.base + len(stream.locations)
            if newest[0] <= head:
                continue
            ahead.append(session_id)
            del self._snapshot_map[session_id]
            usable = [entry for entry in self._snapshot_older.pop(session_id, []) if entry[0] <= head]
            if usable:
                usable.sort()
                self._snapshot_map[session_id] = usable.pop()
                if usable:
                    self._snapshot_older[session_id] = usable
        if ahead:
            self.recovery = {**self.recovery, "snapshots_ahead_of_log": sorted(ahead)}

    def check_history(self, session_id: str, stream: _Stream, first_index: int) -> None:
        """Raise HistoryUnavailableError when a read starting at ``first_index`` needs removed history."""
        floor = self._history_floor.get(session_id)
        wanted = stream.base + first_index + 1
        if floor is not None and wanted < floor:
            raise HistoryUnavailableError(_unavailable(session_id, wanted, floor))
        if first_index < len(stream.locations) and self._segments:
            number = stream.locations[first_index] >> _OFFSET_BITS
            if number in self._removed_segments or number < self._segments[0].number:
                first_kept = self._first_live_number()
                available = stream.base + bisect_left(stream.locations, first_kept << _OFFSET_BITS) + 1
                raise HistoryUnavailableError(_unavailable(session_id, wanted, available))

    def _first_live_number(self) -> int:
        for segment in self._segments:
            if segment.number not in self._removed_segments:
                return segment.number
        return self._segments[-1].number

    def first_available_position(self) -> int:
        for segment in self._segments:
            if segment.number not in self._removed_segments:
                return segment.first_position
        return self._next_position

    def compaction_statistics(self) -> dict[str, Any]:
        live = [s for s in self._segments if s.number not in self._removed_segments]
        return {
            **self._compaction_stats,
            "segments": len(live),
            "segments_sealed": (self._segments[-1].number - 1) if self._segments else 0,
            "log_bytes": sum(s.size for s in live),
            "snapshots": len(self._snapshot_map),
            "snapshot_bytes": sum(size for _, size in self._snapshot_map.values()),
            "first_available_position": self.first_available_position(),
        }


def _unavailable(session_id: str, wanted: int, available: int) -> str:
    return (
        f"history of session {session_id!r} from version {wanted} is no longer stored: retention removed "
        f"versions below {available} (they are covered by a snapshot); load the latest state, read from "
        f"version {available - 1}, or keep more segments (CompactionSettings.keep_segments/keep_seconds)"
    )


def _ancestor_pruned(streams: dict[str, Any], stream: Any, in_candidates: dict[str, int]) -> bool:
    fork = stream.info.fork
    seen = 0
    while fork is not None and seen < 1000:
        if fork.parent_session_id in in_candidates:
            return True
        parent = streams.get(fork.parent_session_id)
        if parent is None:
            return False
        fork = parent.info.fork
        seen += 1
    return False


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


class FileDamage(ValueError):
    """Why a snapshot or checkpoint file cannot be used, and the byte offset where it shows (for verify)."""

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(reason)
        self.offset = offset


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


def read_snapshot_file(blob: bytes) -> tuple[SnapshotFileHeader, bytes]:
    """The header and payload of a snapshot file whose checksum holds (``FileDamage`` if it cannot be used)."""
    newline = blob.find(b"\n", 0, 2048)
    if newline < 0:
        raise FileDamage(0, "snapshot header is missing")
    try:
        header = _snapshot_header_decoder.decode(blob[:newline])
    except (msgspec.DecodeError, ValueError) as exc:
        raise FileDamage(0, f"snapshot header does not decode ({exc})") from None
    payload = blob[newline + 1 :]
    if header.sessiondb != "snapshot":
        raise FileDamage(0, f"not a snapshot header ({header.sessiondb!r})")
    if len(payload) != header.bytes:
        raise FileDamage(
            newline + 1 + min(len(payload), header.bytes),
            f"payload is {len(payload)} bytes, the header says {header.bytes}",
        )
    if zlib.crc32(payload) != header.crc:
        raise FileDamage(newline + 1, "snapshot checksum mismatch")
    return header, payload


def _parse_snapshot_file(blob: bytes) -> tuple[SnapshotFileHeader, bytes] | None:
    try:
        return read_snapshot_file(blob)
    except FileDamage:
        return None


def read_snapshot_headers(
    fs: Any, directory: str, names: list[str]
) -> tuple[dict[str, tuple[int, int]], dict[str, list[tuple[int, int]]]]:
    """The newest and older (version, bytes) snapshots of each session, from the files (open without checkpoint)."""
    found: dict[str, list[tuple[int, int]]] = {}
    for name in names:
        if not (name.startswith(SNAPSHOT_PREFIX) and name.endswith(SNAPSHOT_SUFFIX)):
            continue
        try:
            blob = fs.read_file(os.path.join(directory, name))
        except OSError:
            continue
        parsed = _parse_snapshot_file(blob)
        if parsed is not None and snapshot_file_name(parsed[0].session, parsed[0].version) == name:
            found.setdefault(parsed[0].session, []).append((parsed[0].version, len(blob)))
    newest: dict[str, tuple[int, int]] = {}
    older: dict[str, list[tuple[int, int]]] = {}
    for session_id, entries in found.items():
        entries.sort()
        newest[session_id] = entries[-1]
        if len(entries) > 1:
            older[session_id] = entries[:-1]
    return newest, older


__all__ = [
    "CHECKPOINT_NAME",
    "FileDamage",
    "LocalCompaction",
    "array",
    "read_checkpoint_file",
    "read_snapshot_file",
    "read_snapshot_headers",
    "snapshot_file_name",
    "verify_checkpoint_segments",
]
