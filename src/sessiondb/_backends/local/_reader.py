"""Reading events back from the segments: by session (index locations) and by position (frames).

``Reader`` owns no state of its own: it reads through the segment set's
descriptors and decodes with the read-side record type. Both paths coalesce
nearby records into one pread and decode runs of lines in one call.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right

import msgspec

from ..._errors import CorruptionError
from ..._events import RecordedEvent
from ..._gcpause import gc_paused
from ..._values import decode_deep
from .._fs import FileSystem
from ._format import ReadRecord, frame_header_decoder, iter_lines, read_record_decoder
from ._index import OFFSET_BITS, OFFSET_MASK
from ._segments import SegmentSet

# Reading a session, runs of events closer than this are fetched with one pread.
_COALESCE_GAP = 64 * 1024
# ... and one pread fetches at most about this much, so the bytes are still in cache when decoded.
_MAX_READ = 1024 * 1024


class Reader:
    """Fetch and decode events from the segment files."""

    def __init__(self, segments: SegmentSet, fs: FileSystem) -> None:
        self.segments = segments
        self.fs = fs

    def read_locations_paused(self, locations: array[int], lengths: array[int]) -> list[RecordedEvent]:
        with gc_paused():
            return self.read_locations(locations, lengths)

    def read_locations(self, locations: array[int], lengths: array[int]) -> list[RecordedEvent]:
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
            number = run_start >> OFFSET_BITS
            offset = run_start & OFFSET_MASK
            with self.segments.read_fd(number) as (fd, path):
                data = self.fs.pread(fd, run_end - run_start, offset)
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
                where = f"{path} offset {(run_start & OFFSET_MASK) + start}"
                records.append(decode_deep(read_record_decoder.decode, line, where))
            except (msgspec.DecodeError, ValueError) as exc:
                offset = (run_start & OFFSET_MASK) + start
                raise CorruptionError(path, offset, f"record does not decode ({exc})") from None
        return records

    def read_all_sync(self, after_position: int, limit: int, last: int) -> list[RecordedEvent]:
        """Events with position > ``after_position``, reading whole frames ~1 MiB at a time."""
        out: list[RecordedEvent] = []
        wanted = after_position + 1
        decode = read_record_decoder.decode
        while len(out) < limit and wanted <= last:
            segment = self.segments.containing(wanted)
            first_frame = bisect_right(segment.frame_positions, wanted) - 1
            if first_frame < 0:
                break  # cannot happen for a position below last_position; refuse to spin
            start = segment.frame_offsets[first_frame]
            end_frame = bisect_right(segment.frame_offsets, start + 1024 * 1024)
            end = segment.frame_offsets[end_frame] if end_frame < len(segment.frame_offsets) else segment.size
            with self.segments.read_fd(segment.number) as (fd, path):
                data = self.fs.pread(fd, end - start, start)
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
