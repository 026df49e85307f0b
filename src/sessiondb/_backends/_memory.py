"""An in-memory file system, so ``open_store(":memory:")`` runs the very same log engine.

Nothing touches the disk; syncs are no-ops. Users' own tests get the exact
semantics of the local backend (versions, conflicts, forks, limits) without files.
"""

from __future__ import annotations

import errno
import posixpath

from ._fs import FileSystem


class MemoryFileSystem(FileSystem):
    """Files and directories held in dicts. Not shared between instances."""

    def __init__(self) -> None:
        self.files: dict[str, bytearray] = {}
        self.directories: set[str] = {"/"}
        self._handles: dict[int, str] = {}
        self._next_fd = 1000

    def _fd(self, path: str) -> int:
        self._next_fd += 1
        self._handles[self._next_fd] = path
        return self._next_fd

    def makedirs(self, path: str) -> bool:
        if path in self.directories:
            return False
        while path not in self.directories:
            self.directories.add(path)
            path = posixpath.dirname(path)
        return True

    def listdir(self, path: str) -> list[str]:
        prefix = path.rstrip("/") + "/"
        names = {p[len(prefix) :].split("/", 1)[0] for p in [*self.files, *self.directories] if p.startswith(prefix)}
        return sorted(n for n in names if n)

    def exists(self, path: str) -> bool:
        return path in self.files or path in self.directories

    def isdir(self, path: str) -> bool:
        return path in self.directories

    def size(self, path: str) -> int:
        return len(self._file(path))

    def _file(self, path: str) -> bytearray:
        try:
            return self.files[path]
        except KeyError:
            raise FileNotFoundError(errno.ENOENT, "no such file", path) from None

    def open_write(self, path: str, *, create: bool) -> int:
        if create:
            if path in self.files:
                raise FileExistsError(errno.EEXIST, "file exists", path)
            self.files[path] = bytearray()
        else:
            self._file(path)
        return self._fd(path)

    def open_read(self, path: str) -> int:
        self._file(path)
        return self._fd(path)

    def write(self, fd: int, data: bytes | bytearray | memoryview) -> None:
        self._file(self._handles[fd]).extend(data)

    def fdatasync(self, fd: int) -> None:
        self._handles[fd]

    fsync = fdatasync

    def pread(self, fd: int, length: int, offset: int) -> bytes:
        return bytes(self._file(self._handles[fd])[offset : offset + length])

    def read_file(self, path: str) -> bytes:
        return bytes(self._file(path))

    def close(self, fd: int) -> None:
        del self._handles[fd]

    def rename(self, source: str, target: str) -> None:
        self.files[target] = self.files.pop(source)

    def unlink(self, path: str) -> None:
        self._file(path)
        del self.files[path]

    def truncate(self, path: str, size: int) -> None:
        del self._file(path)[size:]

    def fsync_directory(self, path: str) -> None:
        return None

    def lock(self, path: str) -> int:
        self.files.setdefault(path, bytearray())
        return self._fd(path)

    def unlock(self, fd: int) -> None:
        self.close(fd)

    # One instance serves one store: nothing to exclude, so locks are descriptors and no more.
    def open_lock(self, path: str) -> int:
        self.files.setdefault(path, bytearray())
        return self._fd(path)

    def flock(self, fd: int, *, exclusive: bool, blocking: bool) -> None:
        self._handles[fd]

    def funlock(self, fd: int) -> None:
        self._handles[fd]

    def fstat_size(self, fd: int) -> int:
        return len(self._file(self._handles[fd]))
