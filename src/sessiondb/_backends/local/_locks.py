"""The store directory's three file locks, which let several processes share one log.

- ``LOCK``: held *shared* by every process that has the store open for writing,
  and *exclusively* by a maintenance command that needs the directory alone
  (``repair``). A writable open fails at once while an exclusive holder exists.
- ``WRITE.lock``: held exclusively for each batch (catch up on what others
  appended, plan, write, fdatasync), for recovery on open, and while retention
  unlinks segments. Only its holder writes to the log, so a torn tail found
  under it is always a dead writer's and may be cut.
- ``COMPACT.lock``: held exclusively for a storage-compaction pass (snapshots,
  checkpoint, retention) and for the checkpoint written on close; a process
  that finds it taken skips its pass, so one process at a time does that work.

These are ``flock`` locks: the kernel releases them when the holding process
dies, even by SIGKILL, so there is no leader to elect and nothing to fail over.
A stopped (SIGSTOP) holder of ``WRITE.lock`` stalls the other writers until it
continues, as a stopped SQLite or LMDB writer does. Locks belong to an *open
file description*: two opens in one process exclude each other like two
processes, and a child made by ``fork()`` shares its parent's locks (so the
child must never use, unlock or reuse them; see ``Store``'s fork check).
"""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter

from .._fs import FileSystem

STORE_LOCK = "LOCK"
WRITE_LOCK = "WRITE.lock"
COMPACT_LOCK = "COMPACT.lock"
# Lock files hold no data: nothing durable is modelled for them (the fault-injecting file system skips them).
LOCK_FILES = frozenset((STORE_LOCK, WRITE_LOCK, COMPACT_LOCK))

# File systems whose flock is emulated, advisory across hosts only in part, or absent.
_NETWORK_FILE_SYSTEMS = frozenset(
    ("nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "afs", "9p", "ceph", "glusterfs", "lustre", "gpfs", "sshfs")
)
_logger = logging.getLogger("sessiondb")
# Store directories this process has open for writing, and how many times: a refusal of
# the store lock (``repair``) can then say whether this very process holds it.
_OPEN_HERE: Counter[str] = Counter()
_OPEN_HERE_LOCK = threading.Lock()


def opens_in_this_process(directory: str) -> int:
    """How many writable opens of ``directory`` this process holds (not closed yet)."""
    with _OPEN_HERE_LOCK:
        return _OPEN_HERE[os.path.realpath(directory)]


class StoreLocks:
    """The lock files of one store directory, opened once per backend."""

    def __init__(self, directory: str, fs: FileSystem) -> None:
        self.directory = directory
        self.fs = fs
        self._store_fd: int | None = None
        self._write_fd: int | None = None
        self._compact_fd: int | None = None
        self.write_held = False
        self.compact_held = False
        self._counted: str | None = None  # the key this open holds in _OPEN_HERE

    def _path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    @property
    def is_open(self) -> bool:
        """Whether ``open_shared`` succeeded and ``close`` has not run since."""
        return self._compact_fd is not None

    # ------------------------------------------------------------------ the store lock

    def open_shared(self) -> None:
        """Join the processes that have the store open; BlockingIOError if one holds it exclusively."""
        fd = self.fs.open_lock(self._path(STORE_LOCK))
        try:
            self.fs.flock(fd, exclusive=False, blocking=False)
        except BaseException:
            self.fs.close(fd)
            raise
        self._store_fd = fd
        self._write_fd = self.fs.open_lock(self._path(WRITE_LOCK))
        self._compact_fd = self.fs.open_lock(self._path(COMPACT_LOCK))
        with _OPEN_HERE_LOCK:
            self._counted = os.path.realpath(self.directory)
            _OPEN_HERE[self._counted] += 1

    def _uncount(self) -> None:
        with _OPEN_HERE_LOCK:
            if self._counted is not None:
                _OPEN_HERE[self._counted] -= 1
                if _OPEN_HERE[self._counted] <= 0:
                    del _OPEN_HERE[self._counted]
                self._counted = None

    # ------------------------------------------------------------------ the write lock

    def try_write(self) -> bool:
        """Take the write lock if it is free (no wait): the common case of one process."""
        assert self._write_fd is not None and not self.write_held
        try:
            self.fs.flock(self._write_fd, exclusive=True, blocking=False)
        except BlockingIOError:
            return False
        self.write_held = True
        return True

    def wait_write(self) -> None:
        """Block until the write lock is ours (call in a worker thread)."""
        assert self._write_fd is not None and not self.write_held
        self.fs.flock(self._write_fd, exclusive=True, blocking=True)
        self.write_held = True

    def release_write(self) -> None:
        if self.write_held:
            assert self._write_fd is not None
            self.write_held = False
            self.fs.funlock(self._write_fd)

    # ------------------------------------------------------------------ the compaction lock

    def try_compact(self) -> bool:
        """Take the compaction lock if no other process is compacting."""
        assert self._compact_fd is not None and not self.compact_held
        try:
            self.fs.flock(self._compact_fd, exclusive=True, blocking=False)
        except BlockingIOError:
            return False
        self.compact_held = True
        return True

    def release_compact(self) -> None:
        if self.compact_held:
            assert self._compact_fd is not None
            self.compact_held = False
            self.fs.funlock(self._compact_fd)

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        """Release every lock and close the lock files (closing releases a flock too)."""
        self.release_write()
        self.release_compact()
        self._uncount()
        for name in ("_write_fd", "_compact_fd", "_store_fd"):
            fd = getattr(self, name)
            if fd is not None:
                setattr(self, name, None)
                self.fs.close(fd)

    def abandon(self) -> None:
        """Forget the descriptors without unlocking: in a forked child, they are the parent's locks."""
        self._store_fd = self._write_fd = self._compact_fd = None
        self.write_held = self.compact_held = False
        self._uncount()  # the child holds no open of its own: a refusal there names the parent as another process


def mount_type(path: str, mountinfo: str) -> str | None:
    """The type of the network file system holding ``path`` (NFS, SMB, sshfs …) per ``mountinfo``, else None.

    ``mountinfo`` is the text of ``/proc/self/mountinfo``; the deepest mount point holding ``path`` wins.
    """
    best, best_type = "", None
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields = left.split()
        if len(fields) < 5 or not right:
            continue
        mount_point = fields[4].replace("\\040", " ")
        inside = path == mount_point or path.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, best_type = mount_point, right.split()[0]
    if best_type is None:
        return None
    base = best_type.removeprefix("fuse.")
    return best_type if base in _NETWORK_FILE_SYSTEMS else None


def network_file_system(path: str) -> str | None:
    """``mount_type`` of ``path`` on this machine (Linux); None where mountinfo cannot be read."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as handle:
            mountinfo = handle.read()
    except OSError:
        return None
    return mount_type(os.path.realpath(path), mountinfo)


def warn_if_network_file_system(path: str) -> None:
    kind = network_file_system(path)
    if kind is not None:
        _logger.warning(
            "store %s is on a network file system (%s): its file locks may not exclude writers on other "
            "hosts, so open it for writing from one host only (several processes on that host are safe "
            "where the client implements flock), or use the PostgreSQL backend for many hosts",
            path,
            kind,
        )
