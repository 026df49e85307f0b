"""Planning a batch: check each append against the index, assign versions and positions, encode.

Runs on the event loop with no await, so the index cannot change under it.
What earlier appends of the same batch did counts (a retry behind its own
first attempt, an append behind a delete), although the index learns them
only after the frame is durable (``Index.apply``).
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from ..._errors import ConflictError, EventTooLargeError, InvalidInputError, SessionExistsError, SessionNotFoundError
from ..._events import SessionDeleted
from .._base import AppendRequest, SessionInfo, apply_to_info, compaction_error
from ._format import FrameBuilder, WriteRecord, record_encoder
from ._index import Index, Stream


class Planned:
    """A batch after planning: encoded frame payload records and who gets what."""

    __slots__ = ("admitted", "frame", "new_streams")

    def __init__(self) -> None:
        self.frame = FrameBuilder()
        self.admitted: list[tuple[AppendRequest, Stream]] = []
        self.new_streams: dict[str, Stream] = {}


def plan_batch(log_index: Index, batch: Sequence[AppendRequest], max_event_bytes: int) -> Planned:
    """Check each request, assign versions and positions, and encode the admitted ones."""
    plan = Planned()
    frame = plan.frame
    streams = log_index.streams
    new_streams = plan.new_streams
    # Each session's head after the earlier requests of this batch (the index learns them
    # only in Index.apply), or None once one of them deleted it: an append queued behind
    # a delete must not land on a deleted session.
    heads: dict[str, int | None] = {}
    # Event ids admitted earlier in this batch: a retry queued behind its own first attempt
    # (say, after a cancelled await) must be recognised.
    batch_ids: dict[str, dict[str, int]] = {}
    position = log_index.next_position
    limit = max_event_bytes
    payload = frame.payload
    spans = frame.spans
    spans_append = spans.append
    admitted_append = plan.admitted.append
    encode_into = record_encoder.encode_into
    for request in batch:
        session_id = request.session_id
        events = request.events
        stream = streams.get(session_id)
        if (
            stream is not None
            and len(events) == 1
            and request.event_ids is None
            and not request.full_check
            and not stream.info.deleted
            and session_id not in heads
        ):
            # The common case, inlined (this loop is the hot path): one event, no ids, for an
            # existing session that no earlier request of this batch touched.
            head = stream.info.version
            expected = request.expected_version
            if expected is not None and expected != head:
                request.error = ConflictError(session_id, expected, head)
                continue
            head += 1
            start = len(payload)
            event = events[0]
            try:
                encode_into(WriteRecord(session_id, head, position, request.timestamp_ms, event), payload, -1)
            except (TypeError, ValueError, RecursionError, msgspec.EncodeError) as exc:
                del payload[start:]
                request.error = _unencodable(session_id, exc)
                continue
            size = len(payload) - start
            if size > limit:
                del payload[start:]
                request.error = _too_large(session_id, size, limit)
                continue
            payload += b"\n"
            spans_append((start, size))
            request.first_position = position
            request.version = head
            position += 1
            heads[session_id] = None if type(event) is SessionDeleted else head
            admitted_append((request, stream))
            continue
        # Everything else: creations, compactions, several events, event ids, a session seen earlier in this batch.
        if stream is None:
            stream = new_streams.get(session_id)
        if request.creates:
            if stream is not None:
                request.error = SessionExistsError(session_id)
                continue
            started = events[0]
            base = started.fork.parent_version if started.fork is not None else 0
            stream = Stream(SessionInfo(session_id), base)
            head = base
        elif stream is None or stream.info.deleted:
            request.error = SessionNotFoundError(session_id)
            continue
        else:
            planned = heads.get(session_id, stream.info.version)
            if planned is None:  # deleted earlier in this batch
                request.error = SessionNotFoundError(session_id)
                continue
            head = planned
        if request.event_ids is not None and _is_retry(request, stream, head, batch_ids.get(session_id)):
            continue
        expected = request.expected_version
        if expected is not None and expected != head:
            request.error = ConflictError(session_id, expected, head)
            continue
        if request.full_check and not request.creates:
            error = _compaction_error(request, stream, plan.admitted)
            if error is not None:
                request.error = error
                continue
        event_ids = request.event_ids
        timestamp = request.timestamp_ms
        mark_size = len(payload)
        mark_spans = len(spans)
        first_position = position
        for index, event in enumerate(events):
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
                request.error = _unencodable(session_id, exc)
                break
            size = len(payload) - start
            payload += b"\n"
            spans_append((start, size))
            position += 1
            if size > limit:
                del payload[mark_size:]
                del spans[mark_spans:]
                request.error = _too_large(session_id, size, limit)
                break
        if request.error is not None:
            position = first_position
            continue
        if request.creates:
            new_streams[session_id] = stream
        request.first_position = first_position
        request.version = head
        heads[session_id] = None if type(events[0]) is SessionDeleted else head
        admitted_append((request, stream))
        if event_ids is not None:
            admitted_ids = batch_ids.setdefault(session_id, {})
            first_version = head - len(events) + 1
            for index, event_id in enumerate(event_ids):
                if event_id is not None:
                    admitted_ids[event_id] = first_version + index
    frame.count = len(spans)
    frame.first_position = log_index.next_position
    return plan


def _compaction_error(
    request: AppendRequest, stream: Stream, admitted: list[tuple[AppendRequest, Stream]]
) -> InvalidInputError | None:
    """Whether a compaction of ``request`` removes more than the live messages, here where nothing can race it.

    The live messages are the index's summary plus what the earlier admitted appends of
    this batch to the session add (the index learns those only after the frame is durable).
    Only requests the store marked ``full_check`` come here: plain appends never pay for it.
    """
    info = stream.info.copy()
    for earlier, _ in admitted:
        if earlier.session_id == request.session_id:
            for event in earlier.events:
                apply_to_info(info, event, 0, 0)
    return compaction_error(request.session_id, info.message_count, info.compacted, request.events)


def _unencodable(session_id: str, exc: BaseException) -> InvalidInputError:
    return InvalidInputError(f"an event for session {session_id!r} cannot be encoded ({exc}); nothing was written")


def _too_large(session_id: str, size: int, limit: int) -> EventTooLargeError:
    return EventTooLargeError(
        f"an event for session {session_id!r} encodes to {size} bytes, over the store's "
        f"max_event_bytes of {limit}; split it or raise the limit"
    )


def _is_retry(request: AppendRequest, stream: Stream, head: int, in_batch: dict[str, int] | None = None) -> bool:
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
