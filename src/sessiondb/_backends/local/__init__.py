"""The local backend: one segmented, append-only log per store directory, indexed in memory.

``LocalBackend`` (``_backend.py``) wires the parts; ``verify_store`` and
``repair_store`` check and repair a directory offline. See docs/architecture.md
for the map of the modules.
"""

from ._backend import DEFAULT_MAX_EVENT_BYTES, DEFAULT_SEGMENT_BYTES, LOCK_NAME, LocalBackend
from ._repair import repair_store
from ._reports import Dropped, MovedAside, Problem, RepairReport, SegmentSummary, VerifyReport
from ._verify import verify_store

__all__ = [
    "DEFAULT_MAX_EVENT_BYTES",
    "DEFAULT_SEGMENT_BYTES",
    "LOCK_NAME",
    "Dropped",
    "LocalBackend",
    "MovedAside",
    "Problem",
    "RepairReport",
    "SegmentSummary",
    "VerifyReport",
    "repair_store",
    "verify_store",
]
