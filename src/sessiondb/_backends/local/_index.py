"""The in-memory index of the log: per session, its summary and where each of its events lies.

``Index`` owns the streams (one per session), the next store-wide position and
the history floors retention left. It learns frames in two ways, both in log
order: ``index_frame`` decodes a frame's bytes (recovery's scan; the same call
serves anyone who must catch up on frames appended by others), and ``apply``
records a batch this process planned and wrote (no decode: the planner knows
every record). A location is ``segment << 40 | byte offset`` of a record line.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from ..._errors import CorruptionError, HistoryUnavailableError, InvalidInputError
from ..._events import Message, PinChanged, SessionDeleted, SessionStarted, TagsChanged, TitleChanged
from ..._ids import validate_session_id
from ..._values import decode_deep
from .._base import AppendRequest, SessionInfo, apply_to_info
from ._format import FrameBuilder, index_record_decoder, iter_lines
from ._label_index import LabelIndex

if TYPE_CHECKING:
    from ._segments import Segment, SegmentSet

OFFSET_BITS = 40
# The events that can move a session between the label sets (the rest fold without looking at them).
_RELABELLING_TYPES = frozenset((SessionStarted, SessionDeleted, TitleChanged, TagsChanged, PinChanged))
_RELABELLING_TAGS = frozenset(("session_started", "session_deleted", "title", "tags", "pin"))
OFFSET_MASK = (1 << OFFSET_BITS) - 1


class Stream:
    """One session's index: its summary and where each of its own events lies."""

    __slots__ = ("base", "event_ids", "info", "lengths", "locations")

    def __init__(self, info: SessionInfo, base: int) -> None:
        self.info = info
        self.base = base  # a fork's own events start after the parent's version
        self.locations = array("Q")  # segment << 40 | byte offset
        self.lengths = array("I")
        self.event_ids: dict[str, int] | None = None


# Called for a record of a session the index has not seen that is not its start:
# (record, segment path, offset) -> the stream to index it in, or CorruptionError.
HeadlessHandler = Callable[[Any, str, int], Stream]


def _headless_is_corruption(record: Any, path: str, offset: int) -> Stream:
    raise CorruptionError(path, offset, f"session {record.s!r} has events before its start")


class Index:
    """Streams by session id, the next position, and history floors (versions retention removed)."""

    def __init__(self) -> None:
        self.streams: dict[str, Stream] = {}
        self.next_position = 1
        # Sessions whose versions below this were removed by retention (an index rebuilt without them).
        self.floors: dict[str, int] = {}
        # Recovery replaces this where retention may have removed a session's start.
        self.on_headless: HeadlessHandler = _headless_is_corruption
        # What this process appended (statistics; the checkpoint's cost model reads bytes_written).
        self.batches = 0
        self.events = 0
        self.bytes_written = 0
        # Live sessions by scope, tag and pin, for filtered listings (maintained by _fold_other).
        self.labels = LabelIndex()

    def clear(self) -> None:
        self.streams.clear()
        self.labels.clear()
        self.next_position = 1

    def adopt(self, rebuilt: Index) -> None:
        """Take the streams, next position, floors and label sets of an index rebuilt from the files.

        The counters stay: they count what this process appended. Replaced whole (never
        changed in place), on the event loop, in one step with the other parts.
        """
        self.streams = rebuilt.streams
        self.next_position = rebuilt.next_position
        self.floors = rebuilt.floors
        self.labels = rebuilt.labels

    def _fold_other(self, info: SessionInfo, event: Any, version: int, timestamp_ms: int) -> None:
        """Fold an event that may change a session's scope, labels or liveness, and move it between label sets."""
        scope, tags, pinned, deleted = info.scope, info.tags, info.pinned, info.deleted
        apply_to_info(info, event, version, timestamp_ms)
        if info.tags is not tags or info.pinned != pinned or info.deleted != deleted or info.scope != scope:
            self.labels.change(info, scope, tags, pinned, deleted)

    @property
    def last_position(self) -> int:
        return self.next_position - 1

    # ------------------------------------------------------------------ learning frames from bytes

    def index_frame(
        self, segment: Segment, data: bytes, offset: int, start: int, end: int, first_position: int, base: int = 0
    ) -> None:
        """Learn one verified frame: ``data`` holds the segment's bytes from file offset ``base`` on."""
        if first_position != self.next_position:
            raise CorruptionError(
                segment.path,
                base + offset,
                f"frame starts at position {first_position}, expected {self.next_position}",
            )
        segment.frame_positions.append(first_position)
        segment.frame_offsets.append(base + offset)
        # The payload's lines decode in one call; only a frame that fails is decoded record by
        # record, to name the offset of the bad one (per-call overhead dominates small records).
        try:
            records = index_record_decoder.decode_lines(memoryview(data)[start:end])
        except (msgspec.DecodeError, ValueError, RecursionError):  # RecursionError: absurd nesting
            records = _decode_frame_one_by_one(segment.path, data, start, end, base)
        high = (segment.number << OFFSET_BITS) + base
        streams = self.streams
        find = data.find
        line_offset = start
        for record in records:
            newline = find(b"\n", line_offset, end)
            if newline < 0:
                raise CorruptionError(segment.path, base + line_offset, "frame payload does not end with a newline")
            length = newline - line_offset
            if record.p != self.next_position:
                raise CorruptionError(
                    segment.path, base + line_offset, f"position {record.p}, expected {self.next_position}"
                )
            self.next_position += 1
            stream = streams.get(record.s)
            if stream is None:
                try:
                    # Ids are checked once per session: an unsafe one (``../x``) in a damaged or
                    # crafted file must not reach code that names files after sessions.
                    validate_session_id(record.s, stored=True)
                except InvalidInputError as exc:
                    raise CorruptionError(segment.path, base + line_offset, str(exc)) from None
                if record.e.type != "session_started":
                    # Allowed only where retention removed the start (raises CorruptionError otherwise).
                    stream = streams[record.s] = self.on_headless(record, segment.path, base + line_offset)
                    self.labels.add(stream.info)  # its summary may come from a snapshot
                else:
                    fork = record.e.fork
                    fork_base = fork.parent_version if fork is not None else 0
                    if record.v != fork_base + 1:  # a crafted or damaged start must not set the stream's base
                        raise CorruptionError(
                            segment.path,
                            line_offset,
                            f"session {record.s!r} starts at version {record.v}, expected {fork_base + 1}",
                        )
                    stream = streams[record.s] = Stream(SessionInfo(record.s), fork_base)
            expected = stream.base + len(stream.locations) + 1
            if record.v != expected:
                raise CorruptionError(
                    segment.path, base + line_offset, f"session {record.s!r} version {record.v}, expected {expected}"
                )
            stream.locations.append(high + line_offset)
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
                elif event.type in _RELABELLING_TAGS:
                    self._fold_other(info, event, record.v, record.t)
                else:
                    apply_to_info(info, event, record.v, record.t)
            line_offset = newline + 1
        if line_offset != end:
            raise CorruptionError(segment.path, base + line_offset, "frame payload holds more lines than records")

    # ------------------------------------------------------------------ learning a batch this process wrote

    def apply(
        self,
        frame: FrameBuilder,
        admitted: list[tuple[AppendRequest, Stream]],
        new_streams: dict[str, Stream],
        segment: Segment,
        offset: int,
        size: int,
    ) -> None:
        """Record where a planned batch's events landed; ``offset`` is where its records start.

        ``admitted`` and ``new_streams`` come from ``plan_batch``; ``size`` is the whole frame's.
        """
        spans = frame.spans
        self.streams.update(new_streams)
        segment.frame_positions.append(frame.first_position)
        segment.frame_offsets.append(offset - (size - len(frame.payload)))
        high = segment.number << OFFSET_BITS
        if len(admitted) == len(spans):
            # Every admitted append holds one event (the common batch): one pass, nothing nested.
            for (request, stream), (start, length) in zip(admitted, spans):  # noqa: B905 - equal lengths
                stream.locations.append(high | (offset + start))
                stream.lengths.append(length)
                event = request.events[0]
                info = stream.info
                if type(event) is Message:  # the common case, inlined
                    info.version = request.version
                    info.updated_at_ms = request.timestamp_ms
                    info.message_count += 1
                    usage = event.usage
                    if usage is not None:
                        info.input_tokens += usage.input_tokens
                        info.output_tokens += usage.output_tokens
                        info.cache_creation_input_tokens += usage.cache_creation_input_tokens
                        info.cache_read_input_tokens += usage.cache_read_input_tokens
                elif type(event) in _RELABELLING_TYPES:
                    self._fold_other(info, event, request.version, request.timestamp_ms)
                else:
                    apply_to_info(info, event, request.version, request.timestamp_ms)
                event_ids = request.event_ids
                if event_ids is not None and event_ids[0] is not None:
                    if stream.event_ids is None:
                        stream.event_ids = {}
                    stream.event_ids[event_ids[0]] = request.version
        else:
            span_index = 0
            for request, stream in admitted:
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
                    if type(event) in _RELABELLING_TYPES:
                        self._fold_other(info, event, version, timestamp)
                    else:
                        apply_to_info(info, event, version, timestamp)
                    if event_ids is not None and event_ids[index] is not None:
                        if stream.event_ids is None:
                            stream.event_ids = {}
                        stream.event_ids[event_ids[index]] = version  # type: ignore[index]
        self.next_position = frame.first_position + frame.count
        self.batches += 1
        self.events += frame.count
        self.bytes_written += size

    # ------------------------------------------------------------------ history retention removed

    def first_available_version(self, session_id: str, stream: Stream, first_live_number: int) -> int:
        floor = self.floors.get(session_id, 0)
        if not stream.locations:
            return max(floor, stream.base + 1)
        return max(floor, stream.base + bisect_left(stream.locations, first_live_number << OFFSET_BITS) + 1)

    def check_history(self, session_id: str, stream: Stream, first_index: int, segments: SegmentSet) -> None:
        """Raise HistoryUnavailableError when a read starting at ``first_index`` needs removed history."""
        floor = self.floors.get(session_id)
        wanted = stream.base + first_index + 1
        if floor is not None and wanted < floor:
            raise HistoryUnavailableError(
                unavailable(session_id, wanted, floor), session_id=session_id, first_available=floor
            )
        if first_index < len(stream.locations) and segments.segments:
            number = stream.locations[first_index] >> OFFSET_BITS
            if number in segments.removed or number < segments.segments[0].number:
                first_kept = segments.first_live_number()
                available = stream.base + bisect_left(stream.locations, first_kept << OFFSET_BITS) + 1
                raise HistoryUnavailableError(
                    unavailable(session_id, wanted, available), session_id=session_id, first_available=available
                )


def unavailable(session_id: str, wanted: int, available: int) -> str:
    return (
        f"history of session {session_id!r} from version {wanted} is no longer stored: retention removed "
        f"versions below {available} (they are covered by a snapshot); load the latest state, read from "
        f"version {available - 1}, or keep more segments (CompactionSettings.keep_segments/keep_seconds)"
    )


def _decode_frame_one_by_one(path: str, data: bytes, start: int, end: int, base: int = 0) -> list[Any]:
    """Decode a frame's records one at a time, naming the file offset (``base`` + where in ``data``) that fails."""
    view = memoryview(data)
    records = []
    for line_offset, length in iter_lines(data, start, end):
        line = view[line_offset : line_offset + length]
        try:
            records.append(index_record_decoder.decode(line))
        except RecursionError:  # deep data on a deep stack (a read's catch-up): intact, decode on a fresh one
            records.append(decode_deep(index_record_decoder.decode, line, f"{path} offset {base + line_offset}"))
        except (msgspec.DecodeError, ValueError) as exc:
            raise CorruptionError(path, base + line_offset, f"record does not decode ({exc})") from None
    return records
