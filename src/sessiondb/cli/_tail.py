"""Following a local store that another process writes: read new frames from the segment files, read-only.

``tail`` reads the log itself from where its read-only open ended: complete,
checksummed frames only (a frame still being written is read on a later poll),
then the next segment once the writer has rolled over to it.

A tail that fell behind (stopped with Ctrl-Z while writers rolled on) can find
the segment it was reading removed by another process's retention. It goes on
at the first segment left when that begins where it stopped (it had read
everything), and says which positions are gone otherwise: never a silent skip.
"""

from __future__ import annotations

import os

from .._backends.local._format import (
    _parse_frame,
    iter_lines,
    read_record_decoder,
    segment_header_decoder,
    segment_name,
    segment_number,
)
from .._errors import HistoryUnavailableError, SessionDBError
from .._events import RecordedEvent


class LogFollower:
    """New events of a store directory, from segment ``number`` at byte ``offset`` (position ``next_position``)."""

    def __init__(self, directory: str, number: int, offset: int, next_position: int) -> None:
        self.directory = directory
        self.number = number
        self.offset = offset
        self.next_position = next_position

    def _path(self, number: int) -> str:
        return os.path.join(self.directory, segment_name(number))

    def poll(self) -> list[RecordedEvent]:
        """Every event durably framed since the last poll (maybe none)."""
        out: list[RecordedEvent] = []
        while True:
            path = self._path(self.number)
            try:
                with open(path, "rb") as handle:
                    handle.seek(self.offset)
                    data = handle.read()
            except FileNotFoundError:
                if not os.path.isdir(self.directory):
                    raise SessionDBError(f"store {self.directory} disappeared while following it") from None
                self._after_removed_segment()
                continue
            if self.offset == 0 and data:
                newline = data.find(b"\n")
                if newline < 0:
                    return out  # the header line is being written
                segment_header_decoder.decode(data[:newline])
                self.offset = newline + 1
                data = data[newline + 1 :]
            consumed = self._frames(data, path, out)
            self.offset += consumed
            if consumed < len(data) or not os.path.exists(self._path(self.number + 1)):
                return out  # a frame still being written, or the end of the newest segment
            # The writer rolled over: this segment is sealed and fully read.
            self.number += 1
            self.offset = 0

    def _after_removed_segment(self) -> None:
        """Retention removed the segment being read: go on at the first one left, if it begins where this stopped."""
        later = sorted(n for n in map(segment_number, os.listdir(self.directory)) if n is not None and n > self.number)
        if not later:
            raise SessionDBError(
                f"segment {self.number} of store {self.directory} disappeared and no later segment exists; "
                "was the store removed or replaced?"
            )
        try:
            with open(self._path(later[0]), "rb") as handle:
                head = handle.read(4096)
        except FileNotFoundError:
            return  # removed too, meanwhile: the caller looks again
        header = segment_header_decoder.decode(head[: head.index(b"\n")])
        if header.first_position != self.next_position:
            raise HistoryUnavailableError(
                f"positions {self.next_position}..{header.first_position - 1} of store {self.directory} were removed "
                "by retention before tail read them; run tail again to follow from the log's end (writers keep "
                "more history with CompactionSettings.keep_segments)"
            )
        self.number, self.offset = later[0], 0

    def _frames(self, data: bytes, path: str, out: list[RecordedEvent]) -> int:
        decode = read_record_decoder.decode
        offset = 0
        while offset < len(data):
            frame, _reason = _parse_frame(data, offset)
            if frame is None:
                break  # incomplete: the writer is mid-write (or left a torn tail it will cut)
            for start, length in iter_lines(data, frame.payload_offset, frame.end):
                record = decode(data[start : start + length])
                if record.p >= self.next_position:
                    out.append(RecordedEvent(record.s, record.v, record.p, record.t, record.e, record.i))
                    self.next_position = record.p + 1
            offset = frame.end
        return offset


__all__ = ["LogFollower"]
