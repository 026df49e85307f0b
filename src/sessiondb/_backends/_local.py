"""The local backend: one segmented, append-only log per store directory, indexed in memory.

Every session's events share one log, so a batch of appends from a thousand
sessions costs one write and one fdatasync. The index (session -> where each
of its events lies) is rebuilt on open by scanning the segments.
"""

from __future__ import annotations

import errno
import os
from array import array
from bisect import bisect_right
from collections.abc import Sequence
from typing import Any

import anyio
import msgspec

from .._errors import (
    ConflictError,
    CorruptionError,
    DiskFullError,
    EventTooLargeError,
    HistoryUnavailableError,
    InvalidInputError,
    ResourceExhaustedError,
    SchemaVersionError,
    SessionDBError,
    SessionExistsError,
    SessionNotFoundError,
    StoreBrokenError,
    StoreLockedError,
)
from .._events import Message, RecordedEvent, SessionDeleted, SessionStarted
from .._gcpause import gc_paused
from .._ids import validate_session_id
from .._values import decode_deep
from ._base import AppendRequest, Backend, SessionInfo, apply_to_info
from ._fdcache import DEFAULT_MAX_READ_FDS, RESOURCE_ERRNOS, ReadDescriptors, resource_error
from ._fs import FileSystem
from ._local_compaction import LocalCompaction
from ._segment import (
    SEGMENT_FORMAT,
    FrameBuilder,
    ReadRecord,
    WriteRecord,
    encode_segment_header,
    frame_header_decoder,
    index_record_decoder,
    iter_lines,
    read_record_decoder,
    record_encoder,
    scan_segment,
    segment_name,
    segment_number,
)

DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_EVENT_BYTES = 16 * 1024 * 1024
LOCK_NAME = "LOCK"
_OFFSET_BITS = 40
_OFFSET_MASK = (1 << _OFFSET_BITS) - 1
# Reading a session, runs of events closer than this are fetched with one pread.
_COALESCE_GAP = 64 * 1024
# ... and one pread fetches at most about this much, so the bytes are still in cache when decoded.
_MAX_READ = 1024 * 1024
# Sessions with more events than this are decoded in a worker thread.
_THREAD_READ_THRESHOLD = 512


class _Stream:
    """One session's index: its summary and where each of its own events lies."""

    __slots__ = ("base", "event_ids", "info", "lengths", "locations")

    def __init__(self, info: SessionInfo, base: int) -> None:
        self.info = info
        self.base = base  # a fork's own events start after the parent's version
        self.locations = array("Q")  # segment << 40 | byte offset
        self.lengths = array("I")
        self.event_ids: dict[str, int] | None = None


# Store directories this process holds the write lock of: flock conflicts between two
# opens in one process too, and the lock file's pid would then name the caller itself.
_OPEN_IN_THIS_PROCESS: set[str] = set()


class _Segment:
    __slots__ = ("first_position", "frame_offsets", "frame_positions", "number", "path", "read_fd", "size")

    def __init__(self, number: int, path: str, first_position: int, size: int) -> None:
        self.number = number
        self.path = path
        self.first_position = first_position
        self.frame_positions = array("Q")
        self.frame_offsets = array("Q")
        self.size = size
        self.read_fd: int | None = None


class _Planned:
    """A batch after planning: encoded frame payload records and who gets what."""

    __slots__ = ("admitted", "frame", "new_streams")

    def __init__(self) -> None:
        self.frame = FrameBuilder()
        self.admitted: list[tuple[AppendRequest, _Stream]] = []
        self.new_streams: dict[str, _Stream] = {}


class LocalBackend(LocalCompaction, Backend):
    """Sessions in a directory on the local file system (the embedded default)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        read_only: bool = False,
        file_system: FileSystem | None = None,
        max_read_fds: int = DEFAULT_MAX_READ_FDS,
    ) -> None:
        self.path = os.path.abspath(os.fspath(path))
        self.segment_bytes = segment_bytes
        self.max_event_bytes = max_event_bytes
        self.read_only = read_only
        self.fs = file_system if file_system is not None else FileSystem()
        self._read_fds = ReadDescriptors(self.fs, max_read_fds)  # bounded: one per segment would exhaust them
        self._streams: dict[str, _Stream] = {}
        self._segments: list[_Segment] = []
        self._segment_starts: list[int] = []  # first positions, for bisect
        self._write_fd: int | None = None
        self._lock_fd: int | None = None
        self._next_position = 1
        self._broken: StoreBrokenError | None = None
        self._closed = False
        self.recovery: dict[str, Any] = {}
        self._stats = {"batches": 0, "events": 0, "bytes_written": 0, "segments_created": 0}
        self._init_compaction()  # snapshots, checkpoint, retention: _local_compaction.py

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        try:
            await anyio.to_thread.run_sync(self._open_sync)
        except OSError as exc:
            # An I/O error while recovering is reported like one while writing (a
            # full disk as DiskFullError naming the path), not as a bare OSError.
            raise _open_error(exc, self.path) from exc

    def _open_sync(self) -> None:
        fs = self.fs
        if self.read_only:
            if not os.path.isdir(self.path):
                raise SessionDBError(f"no store at {self.path}: the directory does not exist")
        elif fs.makedirs(self.path):
            fs.fsync_directory(os.path.dirname(self.path))
        if not self.read_only:
            try:
                self._lock_fd = fs.lock(os.path.join(self.path, LOCK_NAME))
            except BlockingIOError:
                if self.path in _OPEN_IN_THIS_PROCESS:
                    raise StoreLockedError(
                        f"store {self.path} is already open for writing in this process (pid {os.getpid()}), "
                        "by another open_store() of the same directory; use that Store, or close it first"
                    ) from None
                raise StoreLockedError(
                    f"store {self.path} is open for writing in another process ({self._lock_owner()}); "
                    "close it there, or open this one read-only"
                ) from None
            _OPEN_IN_THIS_PROCESS.add(self.path)
        try:
            with gc_paused():
                self._recover()
        except BaseException:
            self._release()
            raise

    def _lock_owner(self) -> str:
        try:
            pid = self.fs.read_file(os.path.join(self.path, LOCK_NAME)).decode().strip()
        except OSError:
            return "pid unknown"
        return f"pid {pid}" if pid else "pid unknown"

    def _recover(self) -> None:
        fs = self.fs
        names = fs.listdir(self.path)
        removed = []
        if not self.read_only:
            for name in names:
                if ".tmp" in name:  # never read: a temp file was never renamed into place
                    fs.unlink(os.path.join(self.path, name))
                    removed.append(name)
            if removed:
                fs.fsync_directory(self.path)
        numbers = sorted(n for n in (segment_number(name) for name in names) if n is not None)
        truncated: list[tuple[str, int, int, str]] = []
        # The checkpoint (when valid) restores the index of the segments it covers: scan only what follows.
        resume = self._resume_from_checkpoint(numbers, names, truncated)
        for index, number in enumerate(numbers):
            if index < resume:
                continue
            last = index == len(numbers) - 1
            cut = self._recover_segment(number, last)
            if cut is not None:
                truncated.append(cut)
        self._adopt_snapshot_only_sessions()  # sessions whose every event retention removed
        self._forget_snapshots_ahead_of_log()  # a log cut by repair: its snapshots may describe lost events
        if not self._segments and not self.read_only:
            self._create_segment(1, 1)
        if self._segments and not self.read_only:
            active = self._segments[-1]
            self._write_fd = fs.open_write(active.path, create=False)
        self.recovery = {**self.recovery, "removed_temp_files": removed, "truncated_tails": truncated}

    def _recover_segment(self, number: int, last: bool) -> tuple[str, int, int, str] | None:
        path = os.path.join(self.path, segment_name(number))
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
        if self._segments and scan.header.first_position != self._next_position:
            raise CorruptionError(
                path, 0, f"segment starts at position {scan.header.first_position}, expected {self._next_position}"
            )
        segment = _Segment(number, path, scan.header.first_position, scan.valid_end)
        self._next_position = scan.header.first_position
        for frame in scan.frames:
            self._index_frame(segment, data, frame.offset, frame.payload_offset, frame.end, frame.first_position)
            if self._next_position - frame.first_position != frame.count:
                # The header's count is outside the checksum: a damaged count must not pass unseen.
                raise CorruptionError(
                    path,
                    frame.offset,
                    f"frame declares {frame.count} records but holds {self._next_position - frame.first_position}",
                )
        self._segments.append(segment)
        self._segment_starts.append(segment.first_position)
        return cut

    def _index_frame(
        self, segment: _Segment, data: bytes, offset: int, start: int, end: int, first_position: int
    ) -> None:
        if first_position != self._next_position:
            raise CorruptionError(
                segment.path, offset, f"frame starts at position {first_position}, expected {self._next_position}"
            )
        segment.frame_positions.append(first_position)
        segment.frame_offsets.append(offset)
        # The payload's lines decode in one call; only a frame that fails is decoded record by
        # record, to name the offset of the bad one (per-call overhead dominates small records).
        try:
            records = index_record_decoder.decode_lines(memoryview(data)[start:end])
        except (msgspec.DecodeError, ValueError, RecursionError):  # RecursionError: absurd nesting
            records = self._decode_frame_one_by_one(segment.path, data, start, end)
        high = segment.number << _OFFSET_BITS
        streams = self._streams
        find = data.find
        line_offset = start
        for record in records:
            newline = find(b"\n", line_offset, end)
            if newline < 0:
                raise CorruptionError(segment.path, line_offset, "frame payload does not end with a newline")
            length = newline - line_offset
            if record.p != self._next_position:
                raise CorruptionError(segment.path, line_offset, f"position {record.p}, expected {self._next_position}")
            self._next_position += 1
            stream = streams.get(record.s)
            if stream is None:
                try:
                    # Ids are checked once per session: an unsafe one (``../x``) in a damaged or
                    # crafted file must not reach code that names files after sessions.
                    validate_session_id(record.s)
                except InvalidInputError as exc:
                    raise CorruptionError(segment.path, line_offset, str(exc)) from None
                if record.e.type != "session_started":
                    # Allowed only where retention removed the start (raises CorruptionError otherwise).
                    stream = streams[record.s] = self._adopt_pruned_stream(record, segment.path, line_offset)
                else:
                    fork = record.e.fork
                    base = fork.parent_version if fork is not None else 0
                    if record.v != base + 1:  # a crafted or damaged start must not set the stream's base
                        raise CorruptionError(
                            segment.path,
                            line_offset,
                            f"session {record.s!r} starts at version {record.v}, expected {base + 1}",
                        )
                    stream = streams[record.s] = _Stream(SessionInfo(record.s), base)
            expected = stream.base + len(stream.locations) + 1
            if record.v != expected:
                raise CorruptionError(
                    segment.path, line_offset, f"session {record.s!r} version {record.v}, expected {expected}"
                )
            stream.locations.append(high | line_offset)
            stream.lengths.append(length)
            if record.i is not None:
                if stream.event_ids is None:
                    stream.event_ids = {}
                stream.event_ids[record.i] = record.v
            info = stream.info
            if record.v > info.version:  # not when a snapshot's summary already covers it
                event = record.e
                if event.type == "message":  # most events: folded inline, as apply_to_info would
                    info.version = record.v
                    info.updated_at_ms = record.t
                    info.message_count += 1
                    usage = event.usage
                    if usage is not None:
                        info.input_tokens += usage.input_tokens
                        info.output_tokens += usage.output_tokens
                        info.cache_creation_input_tokens += usage.cache_creation_input_tokens
                        info.cache_read_input_tokens += usage.cache_read_input_tokens
                else:
                    apply_to_info(info, event, record.v, record.t)
            line_offset = newline + 1
        if line_offset != end:
            raise CorruptionError(segment.path, line_offset, "frame payload holds more lines than records")

    @staticmethod
    def _decode_frame_one_by_one(path: str, data: bytes, start: int, end: int) -> list[Any]:
        """Decode a frame's records one at a time, naming the offset of the first that fails."""
        view = memoryview(data)
        records = []
        for line_offset, length in iter_lines(data, start, end):
            line = view[line_offset : line_offset + length]
            try:
                records.append(index_record_decoder.decode(line))
            except RecursionError:  # deep data on a deep stack: intact, decode it on a fresh one
                records.append(decode_deep(index_record_decoder.decode, line, f"{path} offset {line_offset}"))
            except (msgspec.DecodeError, ValueError) as exc:
                raise CorruptionError(path, line_offset, f"record does not decode ({exc})") from None
        return records

    def _create_segment(self, number: int, first_position: int) -> None:
        name = segment_name(number)
        self.fs.write_file_durably(self.path, name, encode_segment_header(number, first_position))
        path = os.path.join(self.path, name)
        segment = _Segment(number, path, first_position, self.fs.size(path))
        self._segments.append(segment)
        self._segment_starts.append(first_position)
        self._stats["segments_created"] += 1

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._close_checkpoint()  # the next open then scans nothing
        finally:
            self._release()

    def _release(self) -> None:
        fs = self.fs
        self._read_fds.close_all()
        for segment in self._segments:  # descriptors retention detached but has not closed yet
            if segment.read_fd is not None:
                fs.close(segment.read_fd)
                segment.read_fd = None
        if self._write_fd is not None:
            fs.close(self._write_fd)
            self._write_fd = None
        if self._lock_fd is not None:
            fs.unlock(self._lock_fd)
            self._lock_fd = None
            _OPEN_IN_THIS_PROCESS.discard(self.path)

    # ------------------------------------------------------------------ writing

    async def commit(self, batch: Sequence[AppendRequest]) -> None:
        if self._broken is not None:
            raise self._broken
        if self.read_only:
            # Each refused append fails alone: raising here would mark the store broken.
            for request in batch:
                request.error = InvalidInputError(
                    f"store {self.path} was opened read-only; open it for writing to append to "
                    f"session {request.session_id!r}"
                )
            return
        plan = self._plan(batch)
        if not plan.frame.count:
            return
        data, header_length = plan.frame.finish()
        # Once bytes may be on disk the index must learn where they are, so a
        # cancellation must not interrupt between the write and the bookkeeping.
        with anyio.CancelScope(shield=True):
            try:
                segment, offset = await anyio.to_thread.run_sync(self._write_frame, data, plan.frame.first_position)
            except BaseException as exc:
                self._broken = _broken_error(exc, self._segments[-1].path)
                raise self._broken from exc
            self._apply(plan, segment, offset + header_length, len(data))

    def _plan(self, batch: Sequence[AppendRequest]) -> _Planned:
        """Check each request, assign versions and positions, and encode the admitted ones."""
        plan = _Planned()
        frame = plan.frame
        streams = self._streams
        heads: dict[str, int] = {}
        # What earlier requests of this batch did, which the index learns only in _apply:
        # a retry queued behind its own first attempt (say, after a cancelled await) must be
        # recognised, and an append queued behind a delete must not land on a deleted session.
        batch_ids: dict[str, dict[str, int]] = {}
        deleted_now: set[str] = set()
        position = self._next_position
        limit = self.max_event_bytes
        payload = frame.payload
        spans = frame.spans
        spans_append = spans.append
        encode_into = record_encoder.encode_into
        for request in batch:
            session_id = request.session_id
            stream = streams.get(session_id) or plan.new_streams.get(session_id)
            if request.creates:
                if stream is not None:
                    request.error = SessionExistsError(session_id)
                    continue
                started = request.events[0]
                base = started.fork.parent_version if started.fork is not None else 0
                stream = _Stream(SessionInfo(session_id), base)
                head = base
            elif stream is None or stream.info.deleted or session_id in deleted_now:
                request.error = SessionNotFoundError(session_id)
                continue
            else:
                head = heads.get(session_id, stream.info.version)
            if request.event_ids is not None and self._is_retry(request, stream, head, batch_ids.get(session_id)):
                continue
            expected = request.expected_version
            if expected is not None and expected != head:
                request.error = ConflictError(session_id, expected, head)
                continue
            # Encode straight into the frame (FrameBuilder.add, inlined: this loop is the hot path).
            event_ids = request.event_ids
            timestamp = request.timestamp_ms
            mark_size = len(payload)
            mark_spans = len(spans)
            first_position = position
            for index, event in enumerate(request.events):
                head += 1
                start = len(payload)
                try:
                    record = WriteRecord(
                        session_id,
                        head,
                        position,
                        timestamp,
                        event,
                        event_ids[index] if event_ids else None,  # type: ignore[arg-type]
                    )
                    encode_into(record, payload, -1)
                except (TypeError, ValueError, RecursionError, msgspec.EncodeError) as exc:
                    # Unencodable data (a lone surrogate, an object JSON cannot hold, absurd nesting)
                    # fails this append only; it must not break the batch and the store with it.
                    del payload[mark_size:]
                    del spans[mark_spans:]
                    request.error = InvalidInputError(
                        f"an event for session {session_id!r} cannot be encoded ({exc}); nothing was written"
                    )
                    break
                size = len(payload) - start
                payload += b"\n"
                spans_append((start, size))
                position += 1
                if size > limit:
                    del payload[mark_size:]
                    del spans[mark_spans:]
                    request.error = EventTooLargeError(
                        f"an event for session {session_id!r} encodes to {size} bytes, over the store's "
                        f"max_event_bytes of {limit}; split it or raise the limit"
                    )
                    break
            if request.error is not None:
                position = first_position
                continue
            if request.creates:
                plan.new_streams[session_id] = stream
            request.first_position = first_position
            request.version = head
            heads[session_id] = head
            plan.admitted.append((request, stream))
            if event_ids is not None:
                admitted_ids = batch_ids.setdefault(session_id, {})
                first_version = head - len(request.events) + 1
                for index, event_id in enumerate(event_ids):
                    if event_id is not None:
                        admitted_ids[event_id] = first_version + index
            if type(request.events[0]) is SessionDeleted:
                deleted_now.add(session_id)
        frame.count = len(spans)
        frame.first_position = self._next_position
        return plan

    def _is_retry(
        self, request: AppendRequest, stream: _Stream, head: int, in_batch: dict[str, int] | None = None
    ) -> bool:
        """True when every event id of ``request`` is already stored (or admitted earlier in this batch)."""
        assert request.event_ids is not None
        known = stream.event_ids or {}
        pending = in_batch or {}
        found = [known.get(event_id) or pending.get(event_id) for event_id in request.event_ids if event_id is not None]
        if not found or all(version is None for version in found):
            return False
        if any(version is None for version in found):
            request.error = InvalidInputError(
                f"some event ids of this append to session {request.session_id!r} are already stored and "
                "some are not; a retry must repeat the same events with the same ids"
            )
            return True
        request.version = max(v for v in found if v is not None)
        request.duplicate = True
        return True

    def _write_frame(self, data: bytes, first_position: int) -> tuple[_Segment, int]:
        """In a worker thread: one write and one fdatasync for the whole batch."""
        active = self._segments[-1]
        if active.size >= self.segment_bytes:
            active = self._roll(first_position)
        offset = active.size
        assert self._write_fd is not None
        self.fs.write(self._write_fd, data)
        self.fs.fdatasync(self._write_fd)
        active.size = offset + len(data)
        return active, offset

    def _roll(self, first_position: int) -> _Segment:
        """Seal the active segment and start the next; the sealed one is never written again."""
        fs = self.fs
        assert self._write_fd is not None
        fs.close(self._write_fd)
        self._write_fd = None
        self._create_segment(self._segments[-1].number + 1, first_position)
        active = self._segments[-1]
        self._write_fd = fs.open_write(active.path, create=False)
        return active

    def _apply(self, plan: _Planned, segment: _Segment, offset: int, size: int) -> None:
        """Record where the batch's events landed; ``offset`` is where its records start."""
        frame = plan.frame
        spans = frame.spans
        self._streams.update(plan.new_streams)
        segment.frame_positions.append(frame.first_position)
        segment.frame_offsets.append(offset - (size - len(frame.payload)))
        high = segment.number << _OFFSET_BITS
        span_index = 0
        for request, stream in plan.admitted:
            locations = stream.locations
            lengths = stream.lengths
            info = stream.info
            version = request.version - len(request.events)
            timestamp = request.timestamp_ms
            event_ids = request.event_ids
            for index, event in enumerate(request.events):
                version += 1
                start, length = spans[span_index]
                span_index += 1
                locations.append(high | (offset + start))
                lengths.append(length)
                if type(event) is Message:  # the common case, inlined
                    info.version = version
                    info.updated_at_ms = timestamp
                    info.message_count += 1
                    usage = event.usage
                    if usage is not None:
                        info.input_tokens += usage.input_tokens
                        info.output_tokens += usage.output_tokens
                        info.cache_creation_input_tokens += usage.cache_creation_input_tokens
                        info.cache_read_input_tokens += usage.cache_read_input_tokens
                else:
                    apply_to_info(info, event, version, timestamp)
                if event_ids is not None and event_ids[index] is not None:
                    if stream.event_ids is None:
                        stream.event_ids = {}
                    stream.event_ids[event_ids[index]] = version  # type: ignore[index]
        self._next_position = frame.first_position + frame.count
        self._stats["batches"] += 1
        self._stats["events"] += frame.count
        self._stats["bytes_written"] += size

    # ------------------------------------------------------------------ reading

    async def info(self, session_id: str) -> SessionInfo | None:
        stream = self._streams.get(session_id)
        return stream.info.copy() if stream is not None else None

    async def list_sessions(self) -> list[SessionInfo]:
        return [s.info.copy() for s in self._streams.values() if not s.info.deleted]

    @property
    def last_position(self) -> int:
        return self._next_position - 1

    async def read_session(self, session_id: str, after_version: int, up_to_version: int | None) -> list[RecordedEvent]:
        stream = self._streams.get(session_id)
        if stream is None:
            raise SessionNotFoundError(session_id)
        first = max(after_version - stream.base, 0)
        last = (
            len(stream.locations) if up_to_version is None else min(up_to_version - stream.base, len(stream.locations))
        )
        if last <= first:
            return []
        self.check_history(session_id, stream, first)  # HistoryUnavailableError where retention removed it
        locations = stream.locations[first:last]
        lengths = stream.lengths[first:last]
        if last - first > _THREAD_READ_THRESHOLD:
            return await anyio.to_thread.run_sync(self._read_locations_paused, locations, lengths)
        return self._read_locations(locations, lengths)

    def _read_locations_paused(self, locations: array[int], lengths: array[int]) -> list[RecordedEvent]:
        with gc_paused():
            return self._read_locations(locations, lengths)

    def _pread(self, segment: _Segment, size: int, offset: int) -> bytes:
        """Read from a segment through the bounded descriptor cache."""
        return self._read_fds.pread(segment, size, offset)

    def _segment_by_number(self, number: int) -> _Segment:
        segments = self._segments  # read once: retention may shorten the list from the loop
        first = segments[0].number
        if number < first or number in self._removed_segments:
            raise HistoryUnavailableError(
                f"segment {number} of store {self.path} was removed by retention; its events are covered by snapshots"
            )
        segment = segments[number - first]
        assert segment.number == number
        return segment

    def _read_locations(self, locations: array[int], lengths: array[int]) -> list[RecordedEvent]:
        """Fetch and decode events: one pread per run of nearby events, one decode per block of lines.

        A location is ``segment << 40 | offset``, so comparing whole locations also
        compares segments: one past the end of the previous record is the next line
        of the same file. Line-adjacent records (one session's events in one batch)
        form a block that decodes in a single ``decode_lines`` call; the per-call
        overhead is a large share of decoding a small record.
        """
        out: list[RecordedEvent] = []
        count = len(locations)
        i = 0
        while i < count:
            run_start = locations[i]
            run_end = run_start + lengths[i]
            run_limit = run_start + _MAX_READ
            blocks = [i]  # index of each block's first record; the run ends at j
            j = i + 1
            while j < count:
                location = locations[j]
                if location == run_end + 1 and run_end < run_limit:  # the next line: same block
                    run_end = location + lengths[j]
                elif location < run_end or location - run_end > _COALESCE_GAP or run_end >= run_limit:
                    break  # another segment, out of order, too far, or enough for one read
                else:
                    blocks.append(j)
                    run_end = location + lengths[j]
                j += 1
            blocks.append(j)
            number = run_start >> _OFFSET_BITS
            segment = self._segment_by_number(number)
            path = segment.path
            offset = run_start & _OFFSET_MASK
            data = self._pread(segment, run_end - run_start, offset)
            if len(data) != run_end - run_start:
                raise CorruptionError(path, offset, "the file is shorter than the index says")
            view = memoryview(data)
            for b in range(len(blocks) - 1):
                k, m = blocks[b], blocks[b + 1]
                start = locations[k] - run_start
                end = locations[m - 1] - run_start + lengths[m - 1]
                try:
                    records = read_record_decoder.decode_lines(view[start:end])
                except (msgspec.DecodeError, ValueError, RecursionError):
                    records = []
                if len(records) != m - k:  # find the record that does not decode and say where
                    records = self._decode_one_by_one(view, locations, lengths, k, m, run_start, path)
                out += [RecordedEvent(r.s, r.v, r.p, r.t, r.e, r.i) for r in records]
            i = j
        return out

    @staticmethod
    def _decode_one_by_one(
        view: memoryview, locations: array[int], lengths: array[int], k: int, m: int, run_start: int, path: str
    ) -> list[ReadRecord]:
        """Decode records ``k..m-1`` one at a time, naming the file and offset of the first that fails.

        ``run_start`` is the location (segment and offset) where ``view`` begins.
        """
        records = []
        for n in range(k, m):
            start = locations[n] - run_start
            line = view[start : start + lengths[n]]
            try:
                records.append(read_record_decoder.decode(line))
            except RecursionError:  # deep data on a deep stack: intact, decode it on a fresh one
                where = f"{path} offset {(run_start & _OFFSET_MASK) + start}"
                records.append(decode_deep(read_record_decoder.decode, line, where))
            except (msgspec.DecodeError, ValueError) as exc:
                offset = (run_start & _OFFSET_MASK) + start
                raise CorruptionError(path, offset, f"record does not decode ({exc})") from None
        return records

    async def read_all(self, after_position: int, limit: int) -> list[RecordedEvent]:
        if after_position >= self.last_position or limit <= 0:
            return []
        first_available = self.first_available_position()
        if after_position + 1 < first_available:
            raise HistoryUnavailableError(
                f"positions {after_position + 1}..{first_available - 1} of store {self.path} were removed by "
                f"retention; read from after={first_available - 1}"
            )
        return await anyio.to_thread.run_sync(self._read_all_sync, after_position, limit)

    def _read_all_sync(self, after_position: int, limit: int) -> list[RecordedEvent]:
        """Events with position > ``after_position``, reading whole frames ~1 MiB at a time."""
        out: list[RecordedEvent] = []
        wanted = after_position + 1
        last = self.last_position
        decode = read_record_decoder.decode
        while len(out) < limit and wanted <= last:
            segment = self._segments[bisect_right(self._segment_starts, wanted) - 1]
            first_frame = bisect_right(segment.frame_positions, wanted) - 1
            if first_frame < 0:
                break  # cannot happen for a position below last_position; refuse to spin
            start = segment.frame_offsets[first_frame]
            end_frame = bisect_right(segment.frame_offsets, start + 1024 * 1024)
            end = segment.frame_offsets[end_frame] if end_frame < len(segment.frame_offsets) else segment.size
            path = segment.path
            data = self._pread(segment, end - start, start)
            offset = 0
            while offset < len(data) and len(out) < limit:
                newline = data.index(b"\n", offset)
                header = frame_header_decoder.decode(data[offset:newline])
                payload_end = newline + 1 + header.bytes
                if header.first + header.batch > wanted:  # the frame holds wanted positions
                    for line, length in iter_lines(data, newline + 1, payload_end):
                        try:
                            record = decode(data[line : line + length])
                        except RecursionError:  # intact, but deeper than this stack: decode on a fresh one
                            record = decode_deep(decode, data[line : line + length], f"{path} offset {start + line}")
                        except (msgspec.DecodeError, ValueError) as exc:
                            raise CorruptionError(path, start + line, f"record does not decode ({exc})") from None
                        if record.p >= wanted:
                            out.append(RecordedEvent(record.s, record.v, record.p, record.t, record.e, record.i))
                            if len(out) >= limit:
                                break
                if len(out) < limit:  # the whole frame was consumed
                    wanted = max(wanted, header.first + header.batch)
                offset = payload_end
        return out

    def statistics(self) -> dict[str, Any]:
        return {
            **self._stats,
            "segments": len(self._segments),
            "sessions": sum(1 for s in self._streams.values() if not s.info.deleted),
            "log_bytes": sum(s.size for s in self._segments),
            "last_position": self.last_position,
            **self.compaction_statistics(),  # segments/log_bytes counted without removed segments
        }


def _open_error(exc: OSError, path: str) -> StoreBrokenError | ResourceExhaustedError:
    where = exc.filename if isinstance(exc.filename, str) else path
    if exc.errno in RESOURCE_ERRNOS:
        return resource_error(exc, f"opening store {path} (at {where})")
    if exc.errno == errno.ENOSPC:
        return DiskFullError(
            f"the disk holding {where} is full, so store {path} could not be opened; free space and retry"
        )
    return StoreBrokenError(
        f"opening store {path} failed at {where} ({exc.strerror or exc!r}); fix the cause and open it again"
    )


def _broken_error(exc: BaseException, path: str) -> StoreBrokenError:
    if isinstance(exc, StoreBrokenError):
        return exc
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return DiskFullError(
            f"the disk holding {path} is full; nothing after the last acknowledged append was kept. "
            "Free space, then reopen the store"
        )
    return StoreBrokenError(
        f"writing {path} failed ({exc!r}); the store refuses writes until it is reopened, "
        "which recovers everything that was acknowledged"
    )


__all__ = ["DEFAULT_MAX_EVENT_BYTES", "DEFAULT_SEGMENT_BYTES", "LocalBackend", "SessionStarted"]
