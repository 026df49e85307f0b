"""``repair_store``: keep everything before the first damage of a local store, move the rest aside.

It cuts the damaged segment at the start of the damaged batch and moves every
later segment aside, into ``<store>/repair-<time>/`` together with the bytes it
cut, so nothing is destroyed; the report says which sessions and versions were
dropped. Ignored snapshot and checkpoint files are moved aside too. See
``_verify.py`` for what counts as damage.
"""

from __future__ import annotations

import errno
import os
import time

import msgspec

from ..._errors import StoreLockedError, StorePermissionError
from ..._paths import refusing_directory, user_path
from .._fs import FileSystem
from ._backend import LOCK_NAME
from ._checkpoint import CHECKPOINT_NAME
from ._format import (
    FRAME_PREFIX,
    _parse_frame,
    frame_header_decoder,
    iter_lines,
    read_record_decoder,
)
from ._locks import opens_in_this_process
from ._reports import Dropped, MovedAside, RepairReport, VerifyReport
from ._verify import verify_store


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
    root = os.path.abspath(user_path(path, what="a store path"))
    before = verify_store(root)
    report = RepairReport(root, before, kept_events=before.events)
    try:
        lock = fs.lock(os.path.join(root, LOCK_NAME))
    except BlockingIOError:
        raise StoreLockedError(_held_message(root)) from None
    except OSError as exc:
        if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        where = refusing_directory(exc.filename if isinstance(exc.filename, str) else root)
        raise StorePermissionError(
            f"cannot repair store {root}: {where} refused this user ({exc.strerror}); run sessiondb repair as "
            "the store's owner (sessiondb verify reads it as any user who may read it)",
            where,
        ) from None
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


def _held_message(root: str) -> str:
    """Who holds the store: this process (named, not mistaken for another) or another one."""
    here = opens_in_this_process(root)
    if here:
        return (
            f"store {root} is open for writing in this process (pid {os.getpid()}: {here} open_store() not "
            "closed yet, and maybe in other processes too); close every store open on it, then repair"
        )
    return f"store {root} is open for writing in another process; close every store open on it, then repair"


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


__all__ = ["repair_store"]
