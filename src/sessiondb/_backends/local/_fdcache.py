"""Read descriptors of segment files: a bounded, least-recently-used cache.

A store keeps a read descriptor per segment it reads from, so that reads cost a
``pread`` and no ``open``. Kept for every segment ever read, a long history (or a
small ``segment_bytes``) would exhaust the process's descriptors; so at most
``limit`` stay open and the least recently used one is closed first.

Reads run on the event loop and in worker threads, and the log catch-up holds
the active segment's descriptor across an ``fstat`` and several ``pread`` calls;
so a user *pins* a descriptor for as long as it uses it, and one in use is never
closed under it: eviction or retention defers the close to the last unpin. A
refusal by the system (EMFILE, ENFILE, ENOMEM) becomes ``ResourceExhaustedError``.
"""

from __future__ import annotations

import errno
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING

from ..._errors import ResourceExhaustedError

if TYPE_CHECKING:
    from .._fs import FileSystem
    from ._segments import Segment

DEFAULT_MAX_READ_FDS = 32
RESOURCE_ERRNOS = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS))


def resource_error(exc: OSError, what: str) -> ResourceExhaustedError:
    """The error for a system refusal ``exc`` while doing ``what``."""
    return ResourceExhaustedError(
        f"the system refused {what} ({exc.strerror or exc!r}); raise the limit (ulimit -n for open files) "
        "or close other stores and files in this process, then retry"
    )


class ReadDescriptors:
    """At most ``limit`` open read descriptors, one per segment; see the module docstring.

    ``Segment.read_fd`` is the segment's cached descriptor (None when it has none);
    only this class sets it, under its lock.
    """

    def __init__(self, fs: FileSystem, limit: int = DEFAULT_MAX_READ_FDS) -> None:
        self._fs = fs
        self._limit = max(1, limit)
        self._open: OrderedDict[Segment, None] = OrderedDict()  # segments with a read fd, oldest use first
        self._pins: dict[int, int] = {}  # fd -> users in flight
        self._doomed: set[int] = set()  # dropped while pinned: closed at the last unpin
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._open)

    def pin(self, segment: Segment) -> int:
        """``segment``'s read descriptor, opened if needed; it stays open until ``unpin``.

        ``FileNotFoundError`` when the file is gone; ``ResourceExhaustedError`` when the
        system refuses a descriptor even after this cache gave all of its own back.
        """
        with self._lock:
            fd = segment.read_fd
            if fd is not None:
                self._open.move_to_end(segment)
            else:
                fd = self._open_fd(segment)
            self._pins[fd] = self._pins.get(fd, 0) + 1
            return fd

    def unpin(self, fd: int) -> None:
        with self._lock:
            pins = self._pins[fd] - 1
            if pins:
                self._pins[fd] = pins
                return
            del self._pins[fd]
            if fd in self._doomed:
                self._doomed.discard(fd)
                self._fs.close(fd)

    def _open_fd(self, segment: Segment) -> int:
        while len(self._open) >= self._limit:
            self._drop(self._open.popitem(last=False)[0])
        try:
            fd = self._fs.open_read(segment.path)
        except OSError as exc:
            if exc.errno not in RESOURCE_ERRNOS:
                raise
            while self._open:  # give back every descriptor this cache holds, then try once more
                self._drop(self._open.popitem(last=False)[0])
            try:
                fd = self._fs.open_read(segment.path)
            except OSError as again:
                if again.errno in RESOURCE_ERRNOS:
                    raise resource_error(again, f"opening {segment.path} for reading") from again
                raise
        segment.read_fd = fd
        self._open[segment] = None
        return fd

    def _drop(self, segment: Segment) -> None:
        """Close ``segment``'s descriptor now, or at its last unpin if a user holds it."""
        fd, segment.read_fd = segment.read_fd, None
        if fd is None:
            return
        if fd in self._pins:
            self._doomed.add(fd)
        else:
            self._fs.close(fd)

    def discard(self, segment: Segment) -> None:
        """Retention deleted ``segment``: stop caching its descriptor (a read using it finishes first)."""
        with self._lock:
            if segment in self._open:
                del self._open[segment]
                self._drop(segment)

    def close_all(self) -> None:
        """Close every descriptor; one still in use (a read in a worker thread) closes at its unpin."""
        with self._lock:
            while self._open:
                self._drop(self._open.popitem(last=False)[0])

    def abandon(self) -> None:
        """Forget every descriptor without closing it (a forked child: they are the parent's)."""
        with self._lock:
            for segment in self._open:
                segment.read_fd = None
            self._open.clear()
            self._doomed.clear()
            self._pins.clear()
