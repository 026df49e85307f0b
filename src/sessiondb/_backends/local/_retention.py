"""Retention: which sealed segments may go, and one storage pass that deletes them safely.

A prefix of sealed segments beyond the retention window may be deleted once
every live session has a snapshot covering its events there (and a fork, its
inherited history). Only a snapshot that holds the state of every recorded
projection counts (``_projection_records``): one written by a process that never
registered a projection would otherwise become the floor of a history that
projection still needs. Before deleting, the covering snapshots are read back;
the deletion waits for a durable checkpoint that no longer lists the segments.
"""

from __future__ import annotations

import os
import time
from bisect import bisect_left
from typing import Any

from ..._threads import run_to_completion
from .._fs import FileSystem
from ._checkpoint import Checkpointer
from ._index import OFFSET_BITS, Index
from ._projection_records import ProjectionRecords
from ._segments import Segment, SegmentSet
from ._snapshot_files import SnapshotFiles


class Retention:
    """Plans and runs retention over the index, segments, snapshot files and checkpoints."""

    def __init__(
        self,
        directory: str,
        fs: FileSystem,
        index: Index,
        segments: SegmentSet,
        snapshots: SnapshotFiles,
        checkpoints: Checkpointer,
        records: ProjectionRecords,
    ) -> None:
        self.directory = directory
        self.fs = fs
        self.index = index
        self.segments = segments
        self.snapshots = snapshots
        self.checkpoints = checkpoints
        self.records = records
        # The recorded projections as of the last look (refresh): what a covering snapshot must hold.
        self.recorded: frozenset[str] = frozenset()
        self.bytes_reclaimed = 0

    def refresh(self, listing: list[str] | None = None) -> frozenset[str]:
        """Read the recorded projections and learn what the known snapshots hold (a worker thread: I/O)."""
        self.recorded = self.records.names(listing)
        if self.recorded:
            self.snapshots.warm_holds()
        return self.recorded

    def covered_version(self, session_id: str) -> int:
        """The version up to which retention may rely on a snapshot of the session (0: none)."""
        entry = self.snapshots.covering(session_id, self.recorded)
        return entry[0] if entry is not None else 0

    def candidates(self, keep_segments: int, keep_seconds: float | None) -> list[Segment]:
        """The oldest sealed segments beyond the retention window (a prefix of the log)."""
        live = [s for s in self.segments.segments[:-1] if s.number not in self.segments.removed]
        candidates = live[: max(0, len(live) - keep_segments)]
        if keep_seconds is not None:
            now = time.time()
            kept: list[Segment] = []
            for segment in candidates:
                try:
                    age = now - os.stat(segment.path).st_mtime
                except OSError:
                    break
                if age < keep_seconds:
                    break
                kept.append(segment)
            candidates = kept
        return candidates

    def needs(self, keep_segments: int, keep_seconds: float | None) -> dict[str, int]:
        """Sessions that need a snapshot (at >= the given version) before retention can delete segments."""
        candidates = self.candidates(keep_segments, keep_seconds)
        return self.unmet_needs(candidates)

    def unmet_needs(self, candidates: list[Segment]) -> dict[str, int]:
        return {
            session_id: needed
            for session_id, needed in self.needed_versions(candidates).items()
            if self.covered_version(session_id) < needed
        }

    def needed_versions(self, candidates: list[Segment]) -> dict[str, int]:
        """Per live session, the version a snapshot must reach before ``candidates`` can be deleted."""
        if not candidates:
            return {}
        limit = (candidates[-1].number + 1) << OFFSET_BITS
        streams = self.index.streams
        in_candidates: dict[str, int] = {}  # session -> its highest version stored in a candidate segment
        for session_id, stream in streams.items():
            count = bisect_left(stream.locations, limit)
            if count:
                in_candidates[session_id] = stream.base + count
        needs: dict[str, int] = {}
        for session_id, stream in streams.items():
            if stream.info.deleted:
                continue
            needed = in_candidates.get(session_id, 0)
            if stream.base and _ancestor_pruned(streams, stream, in_candidates):
                # A fork reads its parent's events unless its own snapshot covers the inherited history.
                needed = max(needed, stream.base + 1 if len(stream.locations) else stream.base)
            if needed:
                needs[session_id] = needed
        return needs

    def damaged_covering_snapshots(self, candidates: list[Segment]) -> list[tuple[str, int]]:
        """Sessions whose snapshot that replaces history in ``candidates`` does not read back whole.

        Run before deleting segments: a snapshot damaged since it was written (a bad
        sector, a stray write) must not become the only copy of the history it covers.
        """
        damaged = []
        for session_id in self.needed_versions(candidates):
            known = self.snapshots.covering(session_id, self.recorded)
            if known is not None and self.snapshots.read_sync(session_id, known[0]) is None:
                damaged.append((session_id, known[0]))
        return damaged

    async def run_pass(self, settings: Any) -> dict[str, Any]:
        """Delete covered sealed segments (after a checkpoint that no longer lists them) and checkpoint."""
        counters = {"segments_deleted": 0, "bytes_reclaimed": 0}
        # Looked at again right before deciding (under the write lock): a projection recorded since the
        # pass began must not lose the history its state needs.
        await run_to_completion(self.refresh)
        candidates = self.candidates(settings.keep_segments, settings.keep_seconds)
        while candidates and self.unmet_needs(candidates):
            candidates.pop()  # retention deletes a prefix only: stop before the first still-needed segment
        while candidates:
            # Read back the snapshots that will replace the history about to go. One that fails is
            # forgotten (an older one may stand in, and is read back in turn): its segments stay,
            # and the next pass writes that session a new snapshot.
            damaged = await run_to_completion(self.damaged_covering_snapshots, candidates)
            if not damaged:
                break
            for session_id, version in damaged:
                self.snapshots.forget(session_id, version)
            while candidates and self.unmet_needs(candidates):
                candidates.pop()
        removed = {segment.number for segment in candidates}
        # Marked removed first (readers get HistoryUnavailableError from now on), so the checkpoint
        # leaves them out and snapshot pruning sees what history remains.
        self.segments.removed.update(removed)
        doomed = self.snapshots.prune(self.index, self.segments.first_live_number())
        if removed or doomed or (settings.checkpoint and self.checkpoints.due()):
            await self.checkpoints.write(exclude=removed)
        # Only now, with a durable checkpoint that no longer needs them, delete what it supersedes.
        if removed:
            counters["bytes_reclaimed"] += await run_to_completion(self.segments.delete, candidates)
            counters["segments_deleted"] = len(candidates)
        for session_id, entries in doomed:
            counters["bytes_reclaimed"] += await run_to_completion(self.snapshots.delete_sync, session_id, entries)
        if doomed:
            await run_to_completion(self.fs.fsync_directory, self.directory)
        self.bytes_reclaimed += counters["bytes_reclaimed"]
        return counters


def _ancestor_pruned(streams: dict[str, Any], stream: Any, in_candidates: dict[str, int]) -> bool:
    fork = stream.info.fork
    seen = 0
    while fork is not None and seen < 1000:
        if fork.parent_session_id in in_candidates:
            return True
        parent = streams.get(fork.parent_session_id)
        if parent is None:
            return False
        fork = parent.info.fork
        seen += 1
    return False
