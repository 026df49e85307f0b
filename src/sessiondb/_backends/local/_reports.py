"""What ``verify_store`` and ``repair_store`` report: problems found, files cut or moved aside, events dropped."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from ._checkpoint import CHECKPOINT_NAME
from ._format import (
    segment_number,
)
from ._snapshot_files import SNAPSHOT_PREFIX, SNAPSHOT_SUFFIX

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
