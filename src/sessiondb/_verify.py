"""Offline checking and repair of a local store directory: ``verify_store`` and ``repair_store``.

``verify_store`` reads every segment without changing anything and reports
each problem with file and offset: a torn tail (cut on the next open, nothing
acknowledged is in it) or corruption (open refuses the store). It checks more
than open does: every record is fully decoded, not just its summary fields.

It also checks the storage compactor's files with the engine's own readers:
the index checkpoint (header, checksum, decode, the segments it covers) and
every snapshot file (header, checksum, file name, payload decode). Open ignores
such a file when it is damaged (``checkpoint_ignored``, ``snapshot_ignored``:
nothing is lost, the log is scanned or replayed instead), except where
retention already removed the segments a snapshot covers: then the snapshot was
the only copy of that history (``history_lost``).

``repair_store`` keeps everything before the first damage: it cuts the damaged
segment at the start of the damaged batch and moves every later segment aside,
into ``<store>/repair-<time>/`` together with the bytes it cut, so nothing is
destroyed. The report says exactly which sessions and versions were dropped.
It moves ignored snapshot and checkpoint files aside too, and leaves a snapshot
that holds lost history where it is (open does not need it gone). Afterwards
the store opens.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import msgspec

from ._backends._fs import FileSystem
from ._backends._local import LOCK_NAME
from ._backends._local_compaction import (
    CHECKPOINT_NAME,
    SNAPSHOT_PREFIX,
    SNAPSHOT_SUFFIX,
    Checkpoint,
    FileDamage,
    read_checkpoint_file,
    read_snapshot_file,
    snapshot_file_name,
    verify_checkpoint_segments,
)
from ._backends._segment import (
    FRAME_PREFIX,
    SEGMENT_FORMAT,
    SEGMENT_SUFFIX,
    _parse_frame,
    frame_header_decoder,
    iter_lines,
    read_record_decoder,
    scan_segment,
    segment_number,
)
from ._errors import InvalidInputError, SessionDBError, StoreLockedError
from ._events import SessionDeleted, SessionStarted
from ._ids import validate_session_id
from ._snapshots import SnapshotFormatError, decode_snapshot
from ._values import decode_deep

# What each kind of problem means (``VerifyReport.ok`` is false for the FATAL ones):
#   torn_tail           the end of the last segment: the next open cuts it; nothing acknowledged is in it
#   corruption          damage in the log: open refuses the store
#   checkpoint_ignored  the index checkpoint is damaged or does not match the log: open scans the log instead
#   snapshot_ignored    a snapshot file is damaged (or missing): open ignores it and replays the log
#   history_lost        a damaged snapshot was the only copy of history retention removed from the log:
#                       the store opens, but those versions (and the session's state) cannot be loaded
SEGMENT_KINDS = ("torn_tail", "corruption")
FATAL_KINDS = ("corruption", "history_lost")


@dataclass
class Problem:
    """One finding: where, what, and what open does about it (``kind``: see ``SEGMENT_KINDS``, ``FATAL_KINDS``).

    For snapshot files, ``session`` names the session when it is known and
    ``lost`` the first and last version whose only copy the file was.
    """

    path: str
    offset: int
    kind: str  # "torn_tail" | "corruption" | "checkpoint_ignored" | "snapshot_ignored" | "history_lost"
    detail: str
    session: str | None = None
    lost: list[int] | None = None

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
    snapshots: int = 0  # snapshot files checked
    checkpoint: str = "none"  # "none" | "ok" | "ignored"

    @property
    def ok(self) -> bool:
        """True when the store opens and nothing acknowledged is lost.

        A torn tail is fine (open cuts it), and so is an ignored checkpoint or
        snapshot (open scans or replays the log instead); corruption in the log
        and a damaged snapshot holding history retention removed are not.
        """
        return not any(problem.kind in FATAL_KINDS for problem in self.problems)

    @property
    def first_damage(self) -> Problem | None:
        """The first problem in the log (segments), where repair cuts; None if the log is whole."""
        return next((problem for problem in self.problems if problem.kind in SEGMENT_KINDS), None)

    @property
    def first_fatal(self) -> Problem | None:
        """The first problem that makes ``ok`` false."""
        return next((problem for problem in self.problems if problem.kind in FATAL_KINDS), None)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}

    def format(self) -> str:
        lines = [
            f"store {self.path}: {len(self.segments)} segment(s), {self.events} event(s), {self.sessions} session(s), "
            f"{self.snapshots} snapshot(s), checkpoint {self.checkpoint}"
        ]
        lines += [f"  {problem}" for problem in self.problems]
        lines += [
            f"  leftover temp file {name} ({_temp_file_origin(name)}; removed on open, never read)"
            for name in self.temp_files
        ]
        kinds = {problem.kind for problem in self.problems}
        if self.ok:
            notes = []
            if "torn_tail" in kinds:
                notes.append("open will cut the torn tail")
            if kinds & {"checkpoint_ignored", "snapshot_ignored"}:
                notes.append("open ignores the damaged snapshot/checkpoint files; `sessiondb repair` moves them aside")
            lines.append("OK" + (f" ({'; '.join(notes)})" if notes else ""))
        elif "corruption" in kinds:
            lines.append("CORRUPT: run `sessiondb repair` to keep everything before the first damage")
        else:
            lines.append(
                "HISTORY LOST: the store opens, but the versions named above are gone (their segments were "
                "removed by retention and their snapshot is damaged); loading those sessions fails"
            )
        return "\n".join(lines)


def _temp_file_origin(name: str) -> str:
    """What an interrupted ``FileSystem.write_file_durably`` was writing (its temp file is ``<name>.tmp``)."""
    target = name[: -len(".tmp")] if name.endswith(".tmp") else name
    if target.startswith(SNAPSHOT_PREFIX) and target.endswith(SNAPSHOT_SUFFIX):
        return "an interrupted snapshot write"
    if target == CHECKPOINT_NAME:
        return "an interrupted checkpoint write"
    if segment_number(target) is not None:
        return "an interrupted segment creation"
    return "an interrupted write"


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
class MovedAside:
    """A snapshot or checkpoint file repair moved into the repair directory (open ignored it anyway)."""

    path: str
    saved_as: str
    reason: str


@dataclass
class RepairReport:
    path: str
    before: VerifyReport
    dropped: list[Dropped] = field(default_factory=list)
    saved_to: str | None = None
    kept_events: int = 0
    moved: list[MovedAside] = field(default_factory=list)
    # Damaged snapshots left in place: the only copy of history retention removed (kind ``history_lost``).
    left: list[Problem] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.dropped or self.moved)

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
            "moved": [asdict(m) for m in self.moved],
            "left": [asdict(p) for p in self.left],
            "problems": [asdict(p) for p in self.before.problems],
        }

    def format(self) -> str:
        left = [
            f"  {'left in place' if os.path.exists(p.path) else 'cannot restore'} {p.path}: {p.detail}"
            for p in self.left
        ]
        if not self.changed:
            return "\n".join([f"store {self.path}: nothing to repair ({self.kept_events} event(s))", *left])
        if self.dropped:
            lines = [f"store {self.path}: kept {self.kept_events} event(s) before the first damage"]
            lines.append(f"  damage: {self.before.first_damage}")
        else:
            lines = [f"store {self.path}: the log is whole ({self.kept_events} event(s))"]
        for dropped in self.dropped:
            sessions = ", ".join(f"{sid} v{_ranges(versions)}" for sid, versions in sorted(dropped.versions.items()))
            lines.append(
                f"  dropped {dropped.path} bytes {dropped.from_offset}..{dropped.to_offset} "
                f"({dropped.events} readable event(s){': ' + sessions if sessions else ''}); "
                f"saved as {dropped.saved_as}"
            )
        lines += [f"  moved {moved.path} aside ({moved.reason}); saved as {moved.saved_as}" for moved in self.moved]
        return "\n".join([*lines, *left])


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
        # session -> (version of its first event in the log, that event if it is the session's start)
        self.firsts: dict[str, tuple[int, SessionStarted | None]] = {}
        self.deleted: set[str] = set()


def _check_records(walk: _Walk, path: str, data: bytes, start: int, end: int, first: int, count: int) -> str | None:
    """Fully decode one frame's records against the walk; None if good, else why (nothing is applied then)."""
    heads: dict[str, int] = {}
    firsts: dict[str, tuple[int, SessionStarted | None]] = {}
    deleted: set[str] = set()
    position = walk.next_position
    if first != position:
        return f"frame starts at position {first}, expected {position}"
    records = 0
    for offset, length in iter_lines(data, start, end):
        try:
            record = read_record_decoder.decode(data[offset : offset + length])
        except RecursionError:  # deep data on a deep stack is intact: decode it on a fresh one
            record = decode_deep(read_record_decoder.decode, data[offset : offset + length], f"{path} offset {offset}")
        except (msgspec.DecodeError, ValueError) as exc:
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
                if event.fork is not None and not walk.pruned:
                    # A fork is made of a session already in the log, at a version it had reached.
                    parent = event.fork.parent_session_id
                    parent_head = heads.get(parent, walk.heads.get(parent))
                    if parent_head is None or event.fork.parent_version > parent_head:
                        return (
                            f"record at offset {offset}: fork {record.s!r} of {parent!r} at version "
                            f"{event.fork.parent_version}, which the log does not hold"
                        )
            try:
                validate_session_id(record.s)
            except InvalidInputError as exc:
                return f"record at offset {offset}: {exc}"
            firsts[record.s] = (record.v, event if isinstance(event, SessionStarted) else None)
        elif record.v != head + 1:
            return f"record at offset {offset}: session {record.s!r} version {record.v}, expected {head + 1}"
        if isinstance(record.e, SessionDeleted):
            deleted.add(record.s)
        heads[record.s] = record.v
        position += 1
        records += 1
    if records != count:
        return f"frame declares {count} records but holds {records}"
    walk.heads.update(heads)
    walk.firsts.update(firsts)
    walk.deleted.update(deleted)
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
    _verify_storage_files(root, names, numbers, walk, report)
    return report


_INFINITE = 1 << 62


def _verify_storage_files(root: str, names: list[str], numbers: list[int], walk: _Walk, report: VerifyReport) -> None:
    """Check the checkpoint and every snapshot file with the engine's own readers; classify what open ignores."""
    fs = FileSystem()
    checkpoint: Checkpoint | None = None
    if CHECKPOINT_NAME in names:
        path = os.path.join(root, CHECKPOINT_NAME)
        offset = 0
        try:
            checkpoint = read_checkpoint_file(fs.read_file(path))
            verify_checkpoint_segments(fs, root, checkpoint, numbers, {})
        except FileDamage as exc:
            checkpoint, offset, reason = None, exc.offset, f"damaged: {exc}"
        except (OSError, ValueError) as exc:
            checkpoint, reason = None, f"does not match the log: {exc}"
        report.checkpoint = "ok" if checkpoint is not None else "ignored"
        if checkpoint is None:
            report.problems.append(
                Problem(path, offset, "checkpoint_ignored", f"{reason}; open ignores it and scans the whole log")
            )
    # Every snapshot file: readable ones by session, the others with why, by the identity their name gives.
    valid: dict[str, set[int]] = {}
    damaged: list[tuple[str, int, str, str | None, int]] = []  # (name, offset, reason, session, version)
    by_hash: dict[str, str] = {}
    for name in names:
        if not (name.startswith(SNAPSHOT_PREFIX) and name.endswith(SNAPSHOT_SUFFIX)):
            continue
        report.snapshots += 1
        name_version = name[len(SNAPSHOT_PREFIX) : -len(SNAPSHOT_SUFFIX)].rpartition("-")[2]
        version = int(name_version) if name_version.isdigit() else 0
        try:
            blob = fs.read_file(os.path.join(root, name))
            header, payload = read_snapshot_file(blob)
        except FileDamage as exc:
            damaged.append((name, exc.offset, str(exc), None, version))
            continue
        except OSError as exc:
            damaged.append((name, 0, f"cannot be read ({exc})", None, version))
            continue
        if snapshot_file_name(header.session, header.version) != name:
            damaged.append(
                (
                    name,
                    0,
                    f"header says session {header.session!r} version {header.version}, which is not this file's name",
                    None,
                    version,
                )
            )
            continue
        try:
            decode_snapshot(payload)
        except SnapshotFormatError as exc:
            damaged.append((name, len(blob) - len(payload), str(exc), header.session, header.version))
            continue
        head = walk.heads.get(header.session)
        if head is not None and header.version > head:
            # Left by a log cut short (repair, or an older copy restored): it describes events this
            # store does not have. Open forgets it; repair moves it aside.
            report.problems.append(
                Problem(
                    os.path.join(root, name),
                    0,
                    "snapshot_ignored",
                    f"snapshot of session {header.session!r} version {header.version} is ahead of the log, "
                    f"which ends at version {head}; open ignores it",
                    header.session,
                )
            )
            continue
        valid.setdefault(header.session, set()).add(header.version)
    # The sessions a damaged file can belong to: the log's, the checkpoint's and the readable snapshots'.
    known = set(walk.firsts) | set(valid)
    deleted = set(walk.deleted)
    if checkpoint is not None:
        for stream in checkpoint.streams:
            known.add(stream.info.session_id)
            if stream.info.deleted:
                deleted.add(stream.info.session_id)
        # A snapshot the checkpoint lists must exist: open trusts the list and would try to read it.
        for session_id, entries in [(sid, [entry]) for sid, entry in checkpoint.snapshots.items()] + list(
            checkpoint.older_snapshots.items()
        ):
            for version, _size in entries:
                name = snapshot_file_name(session_id, version)
                if name not in names:
                    damaged.append((name, 0, "is missing: the checkpoint lists it", session_id, version))
    for session_id in known:
        by_hash[_name_hash(session_id)] = session_id
    all_versions: dict[str, set[int]] = {sid: set(versions) for sid, versions in valid.items()}
    resolved: list[tuple[str, int, str, str | None, int]] = []
    for name, offset, reason, named, version in damaged:
        owner = named if named is not None else by_hash.get(name[len(SNAPSHOT_PREFIX) :].rpartition("-")[0])
        if owner is not None:
            all_versions.setdefault(owner, set()).add(version)
        resolved.append((name, offset, reason, owner, version))
    for name, offset, reason, owner, version in sorted(resolved, key=lambda item: item[0]):
        kind, note, lost = _classify_snapshot(walk, deleted, valid, all_versions, owner, version)
        what = f"session {owner!r} version {version}" if owner is not None else f"version {version}"
        report.problems.append(
            Problem(os.path.join(root, name), offset, kind, f"snapshot of {what}: {reason}; {note}", owner, lost)
        )


def _name_hash(session_id: str) -> str:
    """The part of a snapshot file name that stands for the session (the engine's naming)."""
    return snapshot_file_name(session_id, 0)[len(SNAPSHOT_PREFIX) :].rpartition("-")[0]


def _removed_through(walk: _Walk, session_id: str, depth: int = 0) -> int:
    """Versions 1..N of the session are no longer in the log (0: its whole history is; _INFINITE: none is)."""
    first = walk.firsts.get(session_id)
    if first is None:
        return _INFINITE if walk.pruned else 0
    version, started = first
    if started is None:
        return version - 1
    fork = started.fork
    if fork is None or depth > 1000:
        return 0
    parent = _removed_through(walk, fork.parent_session_id, depth + 1)
    return min(parent, fork.parent_version)


def _classify_snapshot(
    walk: _Walk,
    deleted: set[str],
    valid: dict[str, set[int]],
    all_versions: dict[str, set[int]],
    session_id: str | None,
    version: int,
) -> tuple[str, str, list[int] | None]:
    """(kind, what it means, lost versions) for an unusable snapshot of ``session_id`` at ``version``."""
    harmless = "open ignores it and replays the log"
    if session_id is None:
        if not walk.pruned:
            return "snapshot_ignored", f"no session in the log has this name; {harmless}", None
        return (
            "history_lost",
            "its session is unknown (not in the retained log nor in any readable snapshot or checkpoint): if it "
            "was a live session whose every event retention removed, this file was its only copy",
            None,
        )
    if session_id in deleted:
        return "snapshot_ignored", "the session is deleted; the next compaction pass removes its snapshots", None
    removed = _removed_through(walk, session_id)
    if removed == 0:
        return "snapshot_ignored", f"the session's history is still in the log; {harmless}", None
    if removed == _INFINITE:  # every event of the session was removed: only snapshots hold it
        removed = max(all_versions.get(session_id, {version}))
    readable = valid.get(session_id, set())
    if version < removed and any(other >= removed for other in readable):
        return (
            "snapshot_ignored",
            f"the log after it was removed, so nothing reads it; the snapshot at version "
            f"{min(other for other in readable if other >= removed)} holds the removed history",
            None,
        )
    cover = [other for other in readable if min(removed, version) <= other <= version and other != version]
    if cover:
        return (
            "snapshot_ignored",
            f"the snapshot at version {max(cover)} and the log after it hold the same history; {harmless} "
            "(`sessiondb repair` moves it aside, so open starts from that one)",
            None,
        )
    below = [other for other in readable if other < min(removed, version)]
    first_lost = max(below) + 1 if below else 1
    last_lost = min(removed, version)
    return (
        "history_lost",
        f"it was the only copy of versions {first_lost}-{last_lost}, whose segments retention removed: "
        f"load({session_id!r}) fails with HistoryUnavailableError",
        [first_lost, last_lost],
    )


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


def _kept_heads(fs: FileSystem, root: str, names: list[str], prefix: bytes) -> dict[str, int]:
    """The last version of each session in what repair keeps: the earlier segments and ``prefix``."""
    heads: dict[str, int] = {}
    for data in [*(fs.read_file(os.path.join(root, name)) for name in names), prefix]:
        for session, versions in _readable_events(data, 0)[1].items():
            heads[session] = max(heads.get(session, 0), *versions)
    return heads


def _add_damaged_batch(entry: Dropped, data: bytes, offset: int, kept: dict[str, int], dropped: list[Dropped]) -> None:
    """Add the damaged batch's own events to ``entry`` (it was omitted: "v7-57 dropped" when v6 was too).

    Its frame header (when readable) gives how many there were; a session's versions
    are contiguous in the log, so every version between the last kept one and the first
    dropped one read elsewhere was in the damaged batch. Its damaged records themselves
    are not trusted to name anything.
    """
    count = 0
    newline = data.find(b"\n", offset, offset + 256)
    if newline > 0:
        try:
            header = frame_header_decoder.decode(data[offset:newline])
        except (msgspec.DecodeError, ValueError, RecursionError):
            header = None
        if header is not None and header.batch > 0:
            count = header.batch  # how many; which ones only where contiguity proves it (damaged bytes lie)
    for session, head in kept.items():
        seen = [v for item in dropped for v in item.versions.get(session, ())]
        if seen and min(seen) > head + 1:
            entry.versions.setdefault(session, []).extend(range(head + 1, min(seen)))
    for session, versions in entry.versions.items():
        entry.versions[session] = sorted(set(versions))
    listed = sum(len(versions) for versions in entry.versions.values())
    entry.events = max(entry.events + count, listed)


def repair_store(path: str | os.PathLike[str], *, file_system: FileSystem | None = None) -> RepairReport:
    """Keep everything before the first damage; move the rest aside; return what was dropped.

    Takes the store's lock (``StoreLockedError`` if a process has it open).
    A torn tail counts as damage too (repair cuts it as open would).

    Then the compactor's files: an ignored checkpoint and every ignored snapshot
    are moved aside (open would not use them; the log holds their history), and
    with them a checkpoint that lists a snapshot moved aside or missing (it
    would make the engine trust a snapshot that is not there; without it open
    rebuilds the list from the files). A damaged snapshot that is the only copy
    of history retention removed (``history_lost``) is left where it is and
    reported in ``left``: open never needs it gone, and it is all there is.
    """
    fs = file_system if file_system is not None else FileSystem()
    root = os.path.abspath(os.fspath(path))
    before = verify_store(root)
    report = RepairReport(root, before, kept_events=before.events)
    try:
        lock = fs.lock(os.path.join(root, LOCK_NAME))
    except BlockingIOError:
        raise StoreLockedError(f"store {root} is open in another process; close it before repairing") from None
    try:
        if not before.problems:
            return report
        # Verify again under the lock: the store may have changed since.
        before = report.before = verify_store(root)
        report.kept_events = before.events
        current = before
        if before.first_damage is not None:
            _repair_log(fs, root, before, report)
            current = verify_store(root)  # what the cut log leaves: the checkpoint may no longer match it
        _repair_storage_files(fs, root, current, report)
        return report
    finally:
        fs.unlock(lock)


def _saved_directory(fs: FileSystem, root: str, report: RepairReport) -> str:
    """``<store>/repair-<UTC time>/``, created (durably) on first use."""
    if report.saved_to is not None:
        return report.saved_to
    saved = os.path.join(root, time.strftime("repair-%Y%m%dT%H%M%SZ", time.gmtime()))
    suffix = 0
    while fs.exists(saved + (f"-{suffix}" if suffix else "")):
        suffix += 1
    saved += f"-{suffix}" if suffix else ""
    fs.makedirs(saved)
    fs.fsync_directory(root)
    report.saved_to = saved
    return saved


def _move_aside(fs: FileSystem, root: str, saved: str, name: str) -> str:
    """Rename ``root/name`` into ``saved`` and make both directory entries durable."""
    target = os.path.join(saved, name)
    fs.rename(os.path.join(root, name), target)
    fs.fsync_directory(saved)
    fs.fsync_directory(root)
    return target


def _repair_log(fs: FileSystem, root: str, before: VerifyReport, report: RepairReport) -> None:
    """Cut the damaged segment at the damaged batch and move every later segment aside."""
    damage = before.first_damage
    assert damage is not None
    saved = _saved_directory(fs, root, report)
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
    kept = _kept_heads(fs, root, names[: names.index(damaged_name)], data[: damage.offset])
    _add_damaged_batch(report.dropped[-1 - len(later)], data, damage.offset, kept, report.dropped)
    # 2. Move later segments aside (newest first, so a crash midway still leaves a prefix), then cut.
    for name in reversed(later):
        _move_aside(fs, root, saved, name)
    if damage.offset == 0:
        _move_aside(fs, root, saved, damaged_name)
    else:
        fs.truncate(damage.path, damage.offset)


def _repair_storage_files(fs: FileSystem, root: str, current: VerifyReport, report: RepairReport) -> None:
    """Move ignored snapshot and checkpoint files aside; leave (and report) snapshots holding lost history."""
    snapshots = [p for p in current.problems if p.kind in ("snapshot_ignored", "history_lost")]
    report.left = [p for p in snapshots if p.kind == "history_lost"]
    checkpoint_reason = next(
        (f"open ignores it: {p.detail}" for p in current.problems if p.kind == "checkpoint_ignored"), None
    )
    for problem in snapshots:
        if problem.kind != "snapshot_ignored":
            continue
        if checkpoint_reason is None and current.checkpoint == "ok":
            # The checkpoint lists the session's snapshots: once one is gone it would trust a missing file.
            checkpoint_reason = "it lists a snapshot that is damaged or missing; open rebuilds the list from the files"
        name = os.path.basename(problem.path)
        if not fs.exists(problem.path):
            continue  # listed by the checkpoint but missing: moving the checkpoint aside is the repair
        saved = _saved_directory(fs, root, report)
        report.moved.append(MovedAside(problem.path, _move_aside(fs, root, saved, name), problem.detail))
    if checkpoint_reason is not None and fs.exists(os.path.join(root, CHECKPOINT_NAME)):
        saved = _saved_directory(fs, root, report)
        report.moved.append(
            MovedAside(
                os.path.join(root, CHECKPOINT_NAME), _move_aside(fs, root, saved, CHECKPOINT_NAME), checkpoint_reason
            )
        )


__all__ = [
    "FATAL_KINDS",
    "SEGMENT_KINDS",
    "Dropped",
    "MovedAside",
    "Problem",
    "RepairReport",
    "SegmentSummary",
    "VerifyReport",
    "repair_store",
    "verify_store",
]
