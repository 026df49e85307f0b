"""Public test support: fault-injecting file systems and the backend conformance suite.

Other backends (and users' own wrappers) run the same conformance tests the
built-in backends pass.
"""

from ._conformance import BackendConformance, BackendFactory
from ._faults import CRASH_MODES, Fault, FaultyFileSystem, PowerLoss, corrupt, flip_bit

__all__ = [
    "CRASH_MODES",
    "BackendConformance",
    "BackendFactory",
    "Fault",
    "FaultyFileSystem",
    "PowerLoss",
    "corrupt",
    "flip_bit",
]
