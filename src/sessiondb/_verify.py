"""Offline checking and repair of a local store directory: ``verify_store`` and ``repair_store``.

``verify_store`` reads every segment without changing anything and reports
each problem with file and offset: a torn tail (cut on the next open, nothing
acknowledged is in it) or corruption (open refuses the store). It checks more
than open does: every record is fully decoded, not just its summary fields.

``repair_store`` keeps everything before the first damage: it cuts the damaged
segment at the start of the damaged batch and moves every later segment aside,
into ``<store>/repair-<time>/`` together with the bytes it cut, so nothing is
destroyed. The report says exactly which sessions and versions were dropped.
Afterwards the store opens.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import msgspec

from ._backends._fs import FileSystem
from ._backends._local import LOCK_NAME
from ._backends._segment import (
    FRAME_PREFIX,
    SEGMENT_FORMAT,
    SEGMENT_SUFFIX,
    _parse_frame,
    iter_lines,
    read_record_decoder,
    scan_segment,
    segment_number,
)
from ._errors import InvalidInputError, SessionDBError, StoreLockedError
from ._events import SessionStarted
from ._ids import validate_session_id


@dataclass
class Problem:
    """One finding: where, what, and whether open would cut it (``torn_tail``) or refuse (``corruption``)."""

    path: str
    offset: int
    kind: str  # "torn_tail" | "corruption"
    detail: str

    def __str__(self) -> str:
        return f"{self.kind} in {self.path} at byte offset {self.offset}: {self.detail}"


@dataclass
class SegmentSummary:
    name: str
    size: int
    frames: int = 0
    events: int = 0
    first_position: int = 0
    last_position: int = 0


@dataclass
class VerifyReport:
    path: str
    segments: list[SegmentSummary] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    temp_files: list[str] = field(default_factory=list)
    sessions: int = 0
    events: int = 0  # events before the first problem (what open would recover, or repair keep)

    @property
    def ok(self) -> bool:
        """True when open would succeed (a torn tail is fine: open cuts it)."""
        return not any(problem.kind == "corruption" for problem in self.problems)

    @property
    def first_damage(self) -> Problem | None:
        return self.problems[0] if self.problems else None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}

    def format(self) -> str:
        lines = [
            f"store {self.path}: {len(self.segments)} segment(s), {self.events} event(s), {self.sessions} session(s)"
        ]
        lines += [f"  {problem}" for problem in self.problems]
        lines += [f"  leftover temp file {name} (removed on open, never read)" for name in self.temp_files]
        if self.ok:
            lines.append("OK" + (" (open will cut the torn tail)" if self.problems else ""))
        else:
            lines.append("CORRUPT: run `sessiondb repair` to keep everything before the first damage")
        return "\n".join(lines)


@dataclass
class Dropped:
    """What a repair removed from one file: the byte range, and the events in it that were readable."""

    path: str
    from_offset: int
    to_offset: int
    saved_as: str
    events: int = 0
    versions: dict[str, list[int]] = field(default_factory=dict)  # session -> dropped versions it could read


@dataclass
class RepairReport:
    path: str
    before: VerifyReport
    dropped: list[Dropped] = field(default_factory=list)
    saved_to: str | None = None
    kept_events: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.dropped)

    @property
    def dropped_events(self) -> int:
        return sum(d.events for d in self.dropped)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "changed": self.changed,
            "kept_events": self.kept_events,
            "dropped_events": self.dropped_events,
            "saved_to": self.saved_to,
            "dropped": [asdict(d) for d in self.dropped],
            "problems": [asdict(p) for p in self.before.problems],
        }

    def format(self) -> str:
        if not self.changed:
            return f"store {self.path}: nothing to repair ({self.kept_events} event(s))"
        lines = [f"store {self.path}: kept {self.kept_events} event(s) before the first damage"]
        lines.append(f"  damage: {self.before.first_damage}")
        for dropped in self.dropped:
            sessions = ", ".join(f"{sid} v{_ranges(versions)}" for sid, versions in sorted(dropped.versions.items()))
            lines.append(
                f"  dropped {dropped.path} bytes {dropped.from_offset}..{dropped.to_offset} "
                f"({dropped.events} readable event(s){': ' + sessions if sessions else ''}); "
                f"saved as {dropped.saved_as}"
            )
        return "\n".join(lines)


def _ranges(values: list[int]) -> str:
    values = sorted(values)
    parts: list[str] = []
    start = previous = values[0]
    for value in [*values[1:], None]:  # type: ignore[list-item]
        if value is not None and value == previous + 1:
            previous = value
            continue
        parts.append(str(start) if start == previous else f"{start}-{previous}")
        if value is not None:
            start = previous = value
    return ",".join(parts)


class _Walk:
    """The state of a verification pass over the segments, in order."""

    def __init__(self) -> None:
        self.next_position = 1
        self.heads: dict[str, int] = {}  # session -> version of its last event
        self.events = 0
        # True when storage-compaction retention removed the oldest segments: sessions may then
        # start mid-history (their snapshots hold the rest).
        self.pruned = False


def _check_records(walk: _Walk, path: str, data: bytes, start: int, end: int, first: int, count: int) -> str | None:
    """Fully decode one frame's records against the walk; None if good, else why (nothing is applied then)."""
    heads: dict[str, int] = {}
    position = walk.next_position
    if first != position:
        return f"frame starts at position {first}, expected {position}"
    records = 0
    for offset, length in iter_lines(data, start, end):
        try:
            record = read_record_decoder.decode(data[offset : offset + length])
        except (msgspec.DecodeError, ValueError, RecursionError) as exc:
            return f"record at offset {offset} does not decode ({exc})"
        if record.p != position:
            return f"record at offset {offset} has position {record.p}, expected {position}"
        head = heads.get(record.s, walk.heads.get(record.s))
        if head is None:
            event = record.e
            if not isinstance(event, SessionStarted):
                if not walk.pruned:
                    return f"record at offset {offset}: session {record.s!r} has events before its start"
            else:
                start_version = event.fork.parent_version + 1 if event.fork is not None else 1
                if record.v != start_version:
                    return f"record at offset {offset}: session {record.s!r} starts at version {record.v}"
            try:
                validate_session_id(record.s)
            except InvalidInputError as exc:
                return f"record at offset {offset}: {exc}"
        elif record.v != head + 1:
            return f"record at offset {offset}: session {record.s!r} version {record.v}, expected {head + 1}"
        heads[record.s] = record.v
        position += 1
        records += 1
    if records != count:
        return f"frame declares {count} records but holds {records}"
    walk.heads.update(heads)
    walk.next_position = position
    walk.events += records
    return None


def verify_store(path: str | os.PathLike[str]) -> VerifyReport:
    """Check every segment of the store at ``path``; change nothing."""
    root = os.path.abspath(os.fspath(path))
    if not os.path.isdir(root):
        raise SessionDBError(f"no store at {root}: the directory does not exist")
    report = VerifyReport(root)
    names = sorted(os.listdir(root))
    report.temp_files = [name for name in names if ".tmp" in name]
    numbers = sorted(n for n in (segment_number(name) for name in names) if n is not None)
    walk = _Walk()
    for index, number in enumerate(numbers):
        name = f"{number:010d}{SEGMENT_SUFFIX}"
        segment_path = os.path.join(root, name)
        with open(segment_path, "rb") as handle:
            data = handle.read()
        summary = SegmentSummary(name, len(data), first_position=walk.next_position)
        report.segments.append(summary)
        last = index == len(numbers) - 1
        problem = _verify_segment(walk, segment_path, number, data, last, summary, first=index == 0)
        summary.last_position = walk.next_position - 1
        if problem is not None:
            report.problems.append(problem)
            # Later segments cannot be trusted to continue the history: stop checking content,
            # but say that they exist (repair moves them aside).
            for later in numbers[index + 1 :]:
                later_name = f"{later:010d}{SEGMENT_SUFFIX}"
                report.segments.append(SegmentSummary(later_name, os.path.getsize(os.path.join(root, later_name))))
            break
    report.events = walk.events
    report.sessions = len(walk.heads)
    return report


def _verify_segment(
    walk: _Walk, path: str, number: int, data: bytes, last: bool, summary: SegmentSummary, first: bool = False
) -> Problem | None:
    scan = scan_segment(data)
    header = scan.header
    if header is None:
        return Problem(path, 0, "corruption", scan.bad_reason)
    if not 1 <= header.format <= SEGMENT_FORMAT:
        return Problem(path, 0, "corruption", f"segment format {header.format} is not one this sessiondb reads")
    if header.segment != number:
        return Problem(path, 0, "corruption", f"segment header says {header.segment}, file name says {number}")
    if first and number > 1:
        # The oldest remaining segment of a log whose prefix retention removed (the engine's rule too).
        walk.pruned = True
        walk.next_position = summary.first_position = header.first_position
    if header.first_position != walk.next_position:
        return Problem(
            path, 0, "corruption", f"segment starts at position {header.first_position}, expected {walk.next_position}"
        )
    for frame in scan.frames:
        reason = _check_records(walk, path, data, frame.payload_offset, frame.end, frame.first_position, frame.count)
        if reason is not None:
            return Problem(path, frame.offset, "corruption", reason)
        summary.frames += 1
        summary.events += frame.count
    if scan.bad_offset is not None:
        torn = last and not scan.valid_after_bad
        kind = "torn_tail" if torn else "corruption"
        detail = scan.bad_reason + (
            f" ({len(data) - scan.bad_offset} bytes of an unacknowledged batch; open cuts them)"
            if torn
            else " (valid data follows)"
            if scan.valid_after_bad
            else " (in a sealed segment: later segments hold acknowledged data)"
        )
        return Problem(path, scan.bad_offset, kind, detail)
    return None


def _readable_events(data: bytes, start: int) -> tuple[int, dict[str, list[int]]]:
    """Events in checksum-valid frames of ``data[start:]``, for the report of what was dropped.

    The damaged batch itself is not listed (its bytes cannot be trusted to say
    which events they were); valid frames after it are found by resynchronising
    on the next frame header.
    """
    count = 0
    versions: dict[str, list[int]] = {}
    position = data.find(FRAME_PREFIX, start)
    while position >= 0:
        frame, _ = _parse_frame(data, position)
        if frame is None:
            position = data.find(FRAME_PREFIX, position + 1)
            continue
        for offset, length in iter_lines(data, frame.payload_offset, frame.end):
            try:
                record = read_record_decoder.decode(data[offset : offset + length])
            except (msgspec.DecodeError, ValueError, RecursionError):
                continue
            count += 1
            versions.setdefault(record.s, []).append(record.v)
        position = data.find(FRAME_PREFIX, frame.end)
    return count, versions


def repair_store(path: str | os.PathLike[str], *, file_system: FileSystem | None = None) -> RepairReport:
    """Keep everything before the first damage; move the rest aside; return what was dropped.

    Takes the store's lock (``StoreLockedError`` if a process has it open).
    A torn tail counts as damage too (repair cuts it as open would).
    """
    fs = file_system if file_system is not None else FileSystem()
    root = os.path.abspath(os.fspath(path))
    before = verify_store(root)
    report = RepairReport(root, before, kept_events=before.events)
    damage = before.first_damage
    try:
        lock = fs.lock(os.path.join(root, LOCK_NAME))
    except BlockingIOError:
        raise StoreLockedError(f"store {root} is open in another process; close it before repairing") from None
    try:
        if damage is None:
            return report
        # Verify again under the lock: the store may have changed since.
        before = report.before = verify_store(root)
        damage = before.first_damage
        if damage is None:
            return report
        report.kept_events = before.events
        saved = os.path.join(root, time.strftime("repair-%Y%m%dT%H%M%SZ", time.gmtime()))
        suffix = 0
        while fs.exists(saved + (f"-{suffix}" if suffix else "")):
            suffix += 1
        saved += f"-{suffix}" if suffix else ""
        fs.makedirs(saved)
        fs.fsync_directory(root)
        report.saved_to = saved
        damaged_name = os.path.basename(damage.path)
        names = [summary.name for summary in before.segments]
        later = names[names.index(damaged_name) + 1 :]
        # 1. Save a copy of the bytes that will be cut, durably, before changing anything.
        data = fs.read_file(damage.path)
        tail_name = f"{damaged_name}.from-{damage.offset}" if damage.offset else damaged_name
        if damage.offset:
            fs.write_file_durably(saved, tail_name, data[damage.offset :])
        events, versions = _readable_events(data, damage.offset)
        report.dropped.append(
            Dropped(damage.path, damage.offset, len(data), os.path.join(saved, tail_name), events, versions)
        )
        for name in later:
            later_path = os.path.join(root, name)
            later_data = fs.read_file(later_path)
            events, versions = _readable_events(later_data, 0)
            report.dropped.append(Dropped(later_path, 0, len(later_data), os.path.join(saved, name), events, versions))
        # 2. Move later segments aside (newest first, so a crash midway still leaves a prefix), then cut.
        for name in reversed(later):
            fs.rename(os.path.join(root, name), os.path.join(saved, name))
            fs.fsync_directory(saved)
            fs.fsync_directory(root)
        if damage.offset == 0:
            fs.rename(damage.path, os.path.join(saved, damaged_name))
            fs.fsync_directory(saved)
            fs.fsync_directory(root)
        else:
            fs.truncate(damage.path, damage.offset)
        return report
    finally:
        fs.unlock(lock)


__all__ = ["Dropped", "Problem", "RepairReport", "SegmentSummary", "VerifyReport", "repair_store", "verify_store"]
