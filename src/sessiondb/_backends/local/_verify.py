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

import msgspec

from ..._errors import InvalidInputError, SessionDBError
from ..._events import SessionDeleted, SessionStarted
from ..._ids import validate_session_id
from ..._paths import not_a_directory, user_path
from ..._values import decode_deep
from .._fs import FileSystem
from .._snapshot_payload import SnapshotFormatError, decode_snapshot
from ._checkpoint import CHECKPOINT_NAME, Checkpoint, read_checkpoint_file, verify_checkpoint_segments
from ._format import (
    SEGMENT_FORMAT,
    SEGMENT_SUFFIX,
    iter_lines,
    read_record_decoder,
    scan_segment,
    segment_number,
)
from ._reports import Problem, SegmentSummary, VerifyReport
from ._snapshot_files import SNAPSHOT_PREFIX, SNAPSHOT_SUFFIX, FileDamage, read_snapshot_file, snapshot_file_name


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
            try:
                record = decode_deep(
                    read_record_decoder.decode, data[offset : offset + length], f"{path} offset {offset}"
                )
            except SessionDBError as exc:
                # Deeper than this process can decode at all: open would refuse the store, so it
                # counts as damage here and repair can keep what precedes it (the message says so).
                return f"record at offset {offset}: {exc}"
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
                validate_session_id(record.s, stored=True)
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
    root = os.path.abspath(user_path(path, what="a store path"))
    if not os.path.isdir(root):
        if os.path.lexists(root):
            raise InvalidInputError(not_a_directory(root))
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
