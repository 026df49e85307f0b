"""Rebuilding one process's index after it fell behind retention, the way open builds it.

A process that neither appends nor reads while others roll through more segments
than retention keeps can find the segment it last knew as newest removed
(``LogCatchUp`` raises ``FellBehindError``): the frames between what it knows and
the log's end went with it, so it cannot follow frame by frame.

``build_view`` runs ``Recovery`` (the checkpoint, a scan of the segments after it,
the snapshots of sessions whose start retention removed) into parts of its own, in a
worker thread, reading only: the caller holds ``WRITE.lock`` meanwhile, so no process
appends or removes a segment under the scan, and a dead writer's torn tail is cut by
the catch-up that follows, as before every batch. The live parts keep serving reads
from the old view until ``adopt_view`` has each of them take the new one, on the
event loop in one step: the reader, planner, checkpointer, retention and follower
share those parts, so they all see the new view at once.

What depends on the index outside these parts stays right by construction: cached
projection states and subscribers are keyed by version or position, and a version or
position names the same event in every process, before and after a rebuild.
"""

from __future__ import annotations

from ..._errors import StoreBrokenError
from ..._gcpause import gc_paused
from .._fs import FileSystem
from ._checkpoint import Checkpointer
from ._index import Index
from ._recovery import Recovery
from ._segments import SegmentSet
from ._snapshot_files import SnapshotFiles


class RebuiltView:
    """The parts a rebuild filled from the store's files (nothing else refers to them)."""

    __slots__ = ("checkpoints", "index", "log_pruned", "segments", "snapshots")

    def __init__(
        self, index: Index, segments: SegmentSet, snapshots: SnapshotFiles, checkpoints: Checkpointer, log_pruned: bool
    ) -> None:
        self.index = index
        self.segments = segments
        self.snapshots = snapshots
        self.checkpoints = checkpoints
        self.log_pruned = log_pruned


def build_view(directory: str, fs: FileSystem, segment_bytes: int) -> RebuiltView:
    """In a worker thread: recover the index from the files as a read-only open would (changes nothing)."""
    index = Index()
    segments = SegmentSet(directory, fs, segment_bytes)
    snapshots = SnapshotFiles(directory, fs)
    checkpoints = Checkpointer(directory, fs, index, segments, snapshots)
    recovery = Recovery(directory, fs, True, index, segments, snapshots, checkpoints)
    index.on_headless = recovery.adopt_pruned_stream
    with gc_paused():
        recovery.run(remove_compaction_temps=False)
    if not segments.segments:
        raise StoreBrokenError(f"store {directory} holds no log segment any more (was the directory emptied?)")
    return RebuiltView(index, segments, snapshots, checkpoints, recovery.log_pruned)


def adopt_view(
    view: RebuiltView,
    index: Index,
    segments: SegmentSet,
    snapshots: SnapshotFiles,
    checkpoints: Checkpointer,
    recovery: Recovery,
) -> int:
    """On the event loop, with nothing awaited: the live parts take the rebuilt view; returns the positions learned.

    Refuses (``StoreBrokenError``, nothing changed) a log that ends before what this
    process already saw: it was cut (``sessiondb repair``) or replaced, so positions
    its subscribers passed and versions its caches hold may now name other events.
    """
    if view.index.next_position < index.next_position:
        raise StoreBrokenError(
            f"the log of store {segments.directory} now ends at position {view.index.next_position - 1}, "
            f"before position {index.next_position - 1} that this process already saw: it was cut (sessiondb "
            "repair) or replaced by an older copy"
        )
    learned = view.index.next_position - index.next_position
    index.adopt(view.index)
    segments.adopt(view.segments)
    snapshots.adopt(view.snapshots)
    # Sealed segments never change: their checksums stay valid for the next checkpoint.
    checkpoints.sealed_crcs.update(view.checkpoints.sealed_crcs)
    recovery.log_pruned = view.log_pruned
    return learned


__all__ = ["RebuiltView", "adopt_view", "build_view"]
