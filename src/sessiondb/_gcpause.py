"""Pausing the cyclic garbage collector during bulk decodes.

Decoding a long session allocates a tracked list per message; with the
collector running, each full collection rescans everything decoded so far, so
bulk decoding slows down as it goes. The decoded structs cannot form cycles,
so pausing the collector for the duration is safe. Nested and concurrent
pauses (threads) are counted; the collector resumes when the last one ends,
and only if it was enabled to begin with.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_was_enabled = False


@contextmanager
def gc_paused() -> Iterator[None]:
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()
