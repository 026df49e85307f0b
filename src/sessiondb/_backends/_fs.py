"""The file operations the local backend performs, behind one object.

Every durable step goes through here, so a test can substitute a layer that
fails the n-th write, fsync or rename, or simulates a power loss. The
production implementation is a thin veneer over ``os``.
"""

from __future__ import annotations

import errno
import fcntl
import os


class FileSystem:
    """Real file operations. Subclass and override to inject faults."""

    file_mode = 0o600
    dir_mode = 0o700

    def makedirs(self, path: str) -> bool:
        """Create ``path`` (and parents); return True when it was created."""
        if os.path.isdir(path):
            return False
        os.makedirs(path, mode=self.dir_mode, exist_ok=True)
        return True

    def listdir(self, path: str) -> list[str]:
        return os.listdir(path)

    def isdir(self, path: str) -> bool:
        return os.path.isdir(path)

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def size(self, path: str) -> int:
        return os.stat(path).st_size

    def open_write(self, path: str, *, create: bool) -> int:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC
        if create:
            flags |= os.O_CREAT | os.O_EXCL
        return os.open(path, flags, self.file_mode)

    def open_read(self, path: str) -> int:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)

    def write(self, fd: int, data: bytes | bytearray | memoryview) -> None:
        """Write all of ``data`` (looping over short writes)."""
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            if written <= 0:  # pragma: no cover - os.write raises instead
                raise OSError(errno.EIO, "write made no progress")
            view = view[written:]

    def fdatasync(self, fd: int) -> None:
        os.fdatasync(fd)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def pread(self, fd: int, length: int, offset: int) -> bytes:
        return os.pread(fd, length, offset)

    def read_file(self, path: str) -> bytes:
        with open(path, "rb") as handle:
            return handle.read()

    def close(self, fd: int) -> None:
        os.close(fd)

    def rename(self, source: str, target: str) -> None:
        os.rename(source, target)

    def unlink(self, path: str) -> None:
        os.unlink(path)

    def truncate(self, path: str, size: int) -> None:
        """Cut ``path`` to ``size`` bytes and make that durable."""
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.ftruncate(fd, size)
            os.fsync(fd)
        finally:
            os.close(fd)

    def fsync_directory(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def lock(self, path: str) -> int:
        """Take an exclusive, non-blocking lock on ``path``; raise BlockingIOError if held.

        flock is released by the kernel when the process dies, even by SIGKILL.
        """
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, self.file_mode)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return fd

    def unlock(self, fd: int) -> None:
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    # ------------------------------------------------------------------ locks shared between processes

    def open_lock(self, path: str) -> int:
        """Open (creating) a lock file; lock it with ``flock``."""
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, self.file_mode)

    def flock(self, fd: int, *, exclusive: bool, blocking: bool) -> None:
        """Lock ``fd`` shared or exclusive; without ``blocking``, raise BlockingIOError if it is held.

        flock belongs to the open file description and is released by the kernel
        when the last descriptor of it closes, so a process killed by SIGKILL
        releases its locks at once.
        """
        operation = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        if not blocking:
            operation |= fcntl.LOCK_NB
        fcntl.flock(fd, operation)

    def funlock(self, fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)

    def fstat_size(self, fd: int) -> int:
        """The current size of an open file (what other processes appended included)."""
        return os.fstat(fd).st_size

    def write_file_durably(self, directory: str, name: str, data: bytes) -> None:
        """Write ``directory/name`` atomically: tmp, fsync, rename, fsync the directory."""
        target = os.path.join(directory, name)
        temporary = target + ".tmp"
        if self.exists(temporary):
            self.unlink(temporary)
        fd = self.open_write(temporary, create=True)
        try:
            self.write(fd, data)
            self.fsync(fd)
        finally:
            self.close(fd)
        self.rename(temporary, target)
        self.fsync_directory(directory)
