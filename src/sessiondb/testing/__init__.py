"""Public test support: fault-injecting file systems and the backend conformance suite.

Other backends (and users' own wrappers) run the same conformance tests the
built-in backends pass. The fault-injecting file systems need nothing beyond
sessiondb; the conformance suite is a set of pytest tests, so ``BackendConformance``
needs pytest (``pip install '.[testing]'`` from a checkout, or pytest) and is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._faults import CRASH_MODES, Fault, FaultyFileSystem, PowerLoss, corrupt, flip_bit

if TYPE_CHECKING:
    from ._conformance import BackendConformance, BackendFactory

_NEEDS_PYTEST = ("BackendConformance", "BackendFactory")


def __getattr__(name: str) -> Any:
    if name not in _NEEDS_PYTEST:
        raise AttributeError(f"module 'sessiondb.testing' has no attribute {name!r}")
    try:
        from . import _conformance
    except ModuleNotFoundError as exc:
        if exc.name not in ("pytest", "_pytest"):
            raise
        raise ImportError(
            f"sessiondb.testing.{name} is a pytest test suite and needs pytest: "
            "pip install pytest (or '.[testing]' from a sessiondb checkout)"
        ) from exc
    return getattr(_conformance, name)


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
