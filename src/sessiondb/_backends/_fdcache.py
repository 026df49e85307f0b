"""Read descriptors of segment files: a bounded, least-recently-used cache.

A store keeps one read descriptor per segment it reads from, so that reads cost a
``pread`` and no ``open``. Kept for every segment ever read, a long history (or a
small ``segment_bytes``) would exhaust the process's descriptors; so at most
``limit`` stay open and the least recently used one is closed first.

Reads run on the event loop and in worker threads, so a descriptor in use by a
``pread`` (pinned) is never closed under it: eviction defers its close to the last
unpin. A refusal by the system (EMFILE, ENFILE, ENOMEM) becomes ``ResourceExhaustedError``.
"""

from __future__ import annotations

import errno
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Protocol

from .._errors import ResourceExhaustedError

if TYPE_CHECKING:
    from ._fs import FileSystem

DEFAULT_MAX_READ_FDS = 32
RESOURCE_ERRNOS = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS))


class _Readable(Protocol):
    number: int
    path: str
    read_fd: int | None


def resource_error(exc: OSError, what: str) -> ResourceExhaustedError:
    """The error for a system refusal ``exc`` while doing ``what``."""
    return ResourceExhaustedError(
        f"the system refused {what} ({exc.strerror or exc!r}); raise the limit (ulimit -n for open files) "
        "or close other stores and files in this process, then retry"
    )


class ReadDescriptors:
    """At most ``limit`` open read descriptors, keyed by segment; see the module docstring."""

    def __init__(self, fs: FileSystem, limit: int = DEFAULT_MAX_READ_FDS) -> None:
        self._fs = fs
        self._limit = max(1, limit)
        self._open: OrderedDict[int, _Readable] = OrderedDict()  # segment number -> segment, oldest first
        self._pins: dict[int, int] = {}  # fd -> reads in flight
        self._doomed: set[int] = set()  # evicted while pinned: closed at the last unpin
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._open)

    def pread(self, segment: _Readable, size: int, offset: int) -> bytes:
        """``size`` bytes of ``segment`` at ``offset`` (fewer at its end)."""
        fd = self._pin(segment)
        try:
            return self._fs.pread(fd, size, offset)
        except OSError as exc:
            if exc.errno in RESOURCE_ERRNOS:
                raise resource_error(exc, f"a read of {segment.path}") from exc
            raise
        finally:
            self._unpin(fd)

    def _pin(self, segment: _Readable) -> int:
        with self._lock:
            fd = segment.read_fd
            if fd is not None and self._open.get(segment.number) is segment:
                self._open.move_to_end(segment.number)
            else:
                fd = self._open_fd(segment)
            self._pins[fd] = self._pins.get(fd, 0) + 1
            return fd

    def _unpin(self, fd: int) -> None:
        with self._lock:
            pins = self._pins[fd] - 1
            if pins:
                self._pins[fd] = pins
                return
            del self._pins[fd]
            if fd in self._doomed:
                self._doomed.discard(fd)
                self._fs.close(fd)

    def _open_fd(self, segment: _Readable) -> int:
        while len(self._open) >= self._limit:
            self._evict_oldest()
        try:
            fd = self._fs.open_read(segment.path)
        except OSError as exc:
            if exc.errno not in RESOURCE_ERRNOS:
                raise
            while self._open:  # give back every descriptor this cache holds, then try once more
                self._evict_oldest()
            try:
                fd = self._fs.open_read(segment.path)
            except OSError as again:
                if again.errno in RESOURCE_ERRNOS:
                    raise resource_error(again, f"opening {segment.path} for reading") from again
                raise
        segment.read_fd = fd
        self._open[segment.number] = segment
        return fd

    def _evict_oldest(self) -> None:
        _, segment = self._open.popitem(last=False)
        fd, segment.read_fd = segment.read_fd, None
        if fd is None:
            return  # already detached (retention took the segment)
        if fd in self._pins:
            self._doomed.add(fd)
        else:
            self._fs.close(fd)

    def detach(self, segment: _Readable) -> int | None:
        """Stop caching ``segment``'s descriptor and hand it over (retention closes it later), if any."""
        with self._lock:
            if self._open.get(segment.number) is segment:
                del self._open[segment.number]
            fd, segment.read_fd = segment.read_fd, None
            return fd

    def close_all(self) -> None:
        with self._lock:
            while self._open:
                self._evict_oldest()
            for fd in self._doomed:
                self._fs.close(fd)
            self._doomed.clear()
