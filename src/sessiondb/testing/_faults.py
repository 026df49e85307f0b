"""A fault-injecting file system: fails chosen operations and simulates power loss on real files.

``FaultyFileSystem`` performs every operation on the real disk (so a store
runs normally on it) while keeping a model of what is *durable*: the bytes of
each file up to its last fsync/fdatasync, and the directory entries as of each
directory's last fsync. ``crash()`` then rewrites the real directory to what a
machine that lost power would show: files created or renamed without a
directory fsync disappear (or come back under their old name), unsynced
appended bytes are dropped, torn at a random byte, or replaced by garbage.
The store can then be reopened from those files with an ordinary file system.

It also fails the n-th call of an operation with ``EIO`` or ``ENOSPC``, once or
forever, and can cut the power at the k-th operation (every later operation
fails, as in a machine that stopped), to sweep a workload over every step.

Slightly over the ~400-line aim: one override per ``FileSystem`` operation.
"""

from __future__ import annotations

import errno as errno_codes
import os
import random
import shutil
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from .._backends._fs import FileSystem
from .._backends.local._locks import LOCK_FILES

# The operation names faults and the operation log use.
OPERATIONS = (
    "makedirs",
    "open",  # open_write: a file opened for appending (created or not)
    "open_read",
    "write",
    "fdatasync",
    "fsync",
    "rename",
    "unlink",
    "truncate",
    "fsync_directory",
    "read",  # read_file and pread
)
# Operations that change what is on disk or make it durable: the steps a power-cut sweep visits.
MUTATING = ("makedirs", "open", "write", "fdatasync", "fsync", "rename", "unlink", "truncate", "fsync_directory")

CRASH_MODES = ("drop", "tear", "garbage", "keep")


class PowerLoss(OSError):
    """Raised by every operation once the simulated power is cut: the 'machine' has stopped."""

    def __init__(self, operation: str, path: str) -> None:
        super().__init__(errno_codes.EIO, f"simulated power loss (at {operation})", path)


@dataclass
class Fault:
    """Fail the ``nth`` call (1-based) of ``operation`` with ``code``; with ``forever``, every call after it too.

    ``partial`` makes a failing write put a prefix of its bytes on disk first
    (as a real short write followed by an error may).
    """

    operation: str
    nth: int
    code: int = errno_codes.EIO
    forever: bool = False
    partial: bool = False
    path_contains: str | None = None
    fired: int = 0

    def __post_init__(self) -> None:
        if self.operation not in OPERATIONS:
            raise ValueError(f"unknown operation {self.operation!r}; one of {', '.join(OPERATIONS)}")
        if self.nth < 1:
            raise ValueError("nth counts from 1")


@dataclass
class _Inode:
    data: bytearray = field(default_factory=bytearray)  # what the running process sees
    synced: bytes = b""  # what survives a power loss
    last_write: tuple[int, int] | None = None  # (offset, length) of the newest unsynced write


class FaultyFileSystem(FileSystem):
    """Real file operations with injected failures and a durable-state model for power-loss crashes.

    ``root`` is the store directory whose durability is modelled (its files,
    and subdirectories created through this object). Files elsewhere pass
    through unmodelled.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        faults: Iterable[Fault] = (),
        *,
        power_cut_at: int | None = None,
        seed: int = 0,
    ) -> None:
        self.root = os.path.abspath(os.fspath(root))
        self.faults = list(faults)
        self.power_cut_at = power_cut_at  # the index (1-based) of the mutating op that never happens
        self.rng = random.Random(seed)
        self.calls: Counter[str] = Counter()
        self.log: list[tuple[str, str]] = []  # (operation, path) of every call, failed ones included
        # (operation, path, errno, index in ``log``) of each injected failure
        self.failures: list[tuple[str, str, int, int]] = []
        self.mutations = 0
        self.powered = True
        self._inodes: dict[int, _Inode] = {}
        self._next_inode = 1
        # directory path -> {name: inode id or a directory path}; the current and the durable view.
        self._entries: dict[str, dict[str, int | str]] = {}
        self._durable: dict[str, dict[str, int | str]] = {}
        self._fds: dict[int, int] = {}  # write fd -> inode id
        self._root_durable = os.path.isdir(self.root)
        if self._root_durable:
            self._adopt(self.root)

    # ------------------------------------------------------------------ model bookkeeping

    def _adopt(self, directory: str) -> None:
        """Take what is on disk now as durable (the state before the run)."""
        entries: dict[str, int | str] = {}
        for name in os.listdir(directory):
            path = os.path.join(directory, name)
            if os.path.isdir(path):
                self._adopt(path)
                entries[name] = path
            elif os.path.isfile(path) and name not in LOCK_FILES:
                with open(path, "rb") as handle:
                    content = handle.read()
                entries[name] = self._new_inode(content, synced=True)
        self._entries[directory] = entries
        self._durable[directory] = dict(entries)

    def _new_inode(self, content: bytes = b"", *, synced: bool = False) -> int:
        number = self._next_inode
        self._next_inode += 1
        self._inodes[number] = _Inode(bytearray(content), content if synced else b"")
        return number

    def _modelled(self, path: str) -> bool:
        directory = os.path.dirname(path)
        return directory in self._entries and os.path.basename(path) not in LOCK_FILES

    def _lookup(self, path: str) -> _Inode | None:
        entries = self._entries.get(os.path.dirname(path))
        if entries is None:
            return None
        number = entries.get(os.path.basename(path))
        return self._inodes[number] if isinstance(number, int) else None

    # ------------------------------------------------------------------ fault machinery

    def _enter(self, operation: str, path: str, *, mutating: bool = True) -> Fault | None:
        """Count the call; raise for a power cut; return the fault to apply, if any."""
        self.calls[operation] += 1
        self.log.append((operation, path))
        if not self.powered:
            raise PowerLoss(operation, path)
        if mutating:
            self.mutations += 1
            if self.power_cut_at is not None and self.mutations >= self.power_cut_at:
                self.powered = False
                raise PowerLoss(operation, path)
        for fault in self.faults:
            if fault.operation != operation:
                continue
            if fault.path_contains is not None and fault.path_contains not in path:
                continue
            count = self.calls[operation]
            if count == fault.nth or (fault.forever and count > fault.nth):
                fault.fired += 1
                self.failures.append((operation, path, fault.code, len(self.log) - 1))
                return fault
        return None

    @staticmethod
    def _raise(fault: Fault, operation: str, path: str) -> None:
        raise OSError(fault.code, f"injected {errno_codes.errorcode[fault.code]} in {operation}", path)

    def _check(self, operation: str, path: str, *, mutating: bool = True) -> None:
        fault = self._enter(operation, path, mutating=mutating)
        if fault is not None:
            self._raise(fault, operation, path)

    def count(self, operation: str) -> int:
        """How many times ``operation`` was called so far."""
        return self.calls[operation]

    # ------------------------------------------------------------------ FileSystem operations

    def makedirs(self, path: str) -> bool:
        self._check("makedirs", path)
        created = super().makedirs(path)
        path = os.path.abspath(path)
        if created and path == self.root:
            self._entries[path] = {}
            self._durable[path] = {}
        elif created and os.path.dirname(path) in self._entries:
            self._entries[path] = {}
            self._durable[path] = {}
            self._entries[os.path.dirname(path)][os.path.basename(path)] = path
        return created

    def open_write(self, path: str, *, create: bool) -> int:
        self._check("open", path)
        fd = super().open_write(path, create=create)
        if self._modelled(path):
            if create:
                number = self._new_inode()
                self._entries[os.path.dirname(path)][os.path.basename(path)] = number
            else:
                entry = self._entries[os.path.dirname(path)].get(os.path.basename(path))
                if not isinstance(entry, int):  # a file made behind the model's back
                    raise AssertionError(f"FaultyFileSystem: {path} is not in the model")
                number = entry
            self._fds[fd] = number
        return fd

    def open_read(self, path: str) -> int:
        self._check("open_read", path, mutating=False)
        return super().open_read(path)

    def write(self, fd: int, data: bytes | bytearray | memoryview) -> None:
        fault = self._enter("write", str(fd))
        inode = self._inodes.get(self._fds.get(fd, -1))
        payload = bytes(data)
        if fault is not None:
            if fault.partial and len(payload) > 1:
                prefix = payload[: self.rng.randrange(1, len(payload))]
                super().write(fd, prefix)
                if inode is not None:
                    inode.last_write = (len(inode.data), len(prefix))
                    inode.data += prefix
            self._raise(fault, "write", str(fd))
        super().write(fd, payload)
        if inode is not None:
            inode.last_write = (len(inode.data), len(payload))
            inode.data += payload

    def _sync(self, operation: str, fd: int) -> None:
        self._check(operation, str(fd))
        if operation == "fdatasync":
            super().fdatasync(fd)
        else:
            super().fsync(fd)
        inode = self._inodes.get(self._fds.get(fd, -1))
        if inode is not None:
            inode.synced = bytes(inode.data)
            inode.last_write = None

    def fdatasync(self, fd: int) -> None:
        self._sync("fdatasync", fd)

    def fsync(self, fd: int) -> None:
        self._sync("fsync", fd)

    def pread(self, fd: int, length: int, offset: int) -> bytes:
        self._check("read", str(fd), mutating=False)
        return super().pread(fd, length, offset)

    def read_file(self, path: str) -> bytes:
        self._check("read", path, mutating=False)
        return super().read_file(path)

    def close(self, fd: int) -> None:
        # Never fails: a dead store must still release its descriptors in the test process.
        self._fds.pop(fd, None)
        super().close(fd)

    def rename(self, source: str, target: str) -> None:
        self._check("rename", source)
        super().rename(source, target)
        if self._modelled(source) and self._modelled(target):
            entry = self._entries[os.path.dirname(source)].pop(os.path.basename(source))
            self._entries[os.path.dirname(target)][os.path.basename(target)] = entry

    def unlink(self, path: str) -> None:
        self._check("unlink", path)
        super().unlink(path)
        if self._modelled(path):
            self._entries[os.path.dirname(path)].pop(os.path.basename(path), None)

    def truncate(self, path: str, size: int) -> None:
        self._check("truncate", path)
        super().truncate(path, size)  # ftruncate + fsync: durable once it returns
        inode = self._lookup(path)
        if inode is not None:
            del inode.data[size:]
            inode.synced = bytes(inode.data)
            inode.last_write = None

    def fsync_directory(self, path: str) -> None:
        self._check("fsync_directory", path)
        super().fsync_directory(path)
        path = os.path.abspath(path)
        if path in self._entries:
            self._durable[path] = dict(self._entries[path])
        if path == os.path.dirname(self.root):
            self._root_durable = True
        parent = os.path.dirname(path)
        if parent in self._entries:
            self._durable[parent] = dict(self._entries[parent])

    def lock(self, path: str) -> int:
        return super().lock(path)

    def unlock(self, fd: int) -> None:
        super().unlock(fd)

    # ------------------------------------------------------------------ power loss

    def cut_power(self) -> None:
        """Stop the 'machine' now: every later operation raises ``PowerLoss``."""
        self.powered = False

    def check_mirror(self) -> None:
        """Assert the model's current view equals the real directory (catches unmodelled operations)."""
        for directory, entries in self._entries.items():
            if not os.path.isdir(directory):
                raise AssertionError(f"FaultyFileSystem: directory {directory} vanished behind the model's back")
            real = {name for name in os.listdir(directory) if name not in LOCK_FILES}
            if real != set(entries):
                raise AssertionError(f"FaultyFileSystem: {directory} holds {sorted(real)}, model {sorted(entries)}")
            for name, entry in entries.items():
                if isinstance(entry, int):
                    with open(os.path.join(directory, name), "rb") as handle:
                        if handle.read() != bytes(self._inodes[entry].data):
                            raise AssertionError(f"FaultyFileSystem: {name} differs from the model")

    def crash(self, mode: str = "drop") -> dict[str, object]:
        """Apply a power loss to the real files; return what it did.

        ``mode``: ``drop`` keeps only synced bytes; ``tear`` also keeps a random
        prefix of each file's newest unsynced write; ``garbage`` puts random
        bytes of that length instead; ``keep`` keeps every written byte (what a
        process kill leaves) while still losing unsynced directory entries.
        The store using this object must be closed (or abandoned) first.
        """
        if mode not in CRASH_MODES:
            raise ValueError(f"crash mode must be one of {CRASH_MODES}")
        self.powered = False
        report: dict[str, object] = {"mode": mode, "lost_entries": [], "lost_bytes": {}}
        if not self._root_durable:
            shutil.rmtree(self.root, ignore_errors=True)
            report["lost_entries"] = [self.root]
            return report
        self._restore(self.root, mode, report)
        return report

    def _restore(self, directory: str, mode: str, report: dict[str, object]) -> None:
        durable = self._durable.get(directory, {})
        lost_entries: list[str] = report["lost_entries"]  # type: ignore[assignment]
        lost_bytes: dict[str, int] = report["lost_bytes"]  # type: ignore[assignment]
        if os.path.isdir(directory):
            for name in os.listdir(directory):
                path = os.path.join(directory, name)
                if name == "LOCK" and directory == self.root:
                    continue
                if name not in durable:
                    lost_entries.append(path)
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                else:
                    os.unlink(path)
        else:
            os.makedirs(directory, mode=self.dir_mode)
        for name, entry in durable.items():
            path = os.path.join(directory, name)
            if isinstance(entry, str):
                self._restore(entry if entry == path else path, mode, report)
                continue
            inode = self._inodes[entry]
            content = bytearray(inode.synced)
            unsynced = len(inode.data) - len(inode.synced)
            if mode == "keep":
                content = bytearray(inode.data)
            elif unsynced > 0 and mode in ("tear", "garbage"):
                # The newest write may be torn anywhere; older unsynced writes come through whole.
                if inode.last_write is not None and inode.last_write[0] >= len(inode.synced):
                    start, length = inode.last_write
                else:
                    start, length = len(inode.synced), unsynced
                content = bytearray(inode.data[:start])
                keep = self.rng.randrange(0, length + 1)
                if mode == "tear":
                    content += inode.data[start : start + keep]
                else:
                    content += self.rng.randbytes(keep)
            lost_bytes[path] = len(inode.data) - len(content)
            with open(path, "wb") as handle:
                handle.write(content)
            os.chmod(path, self.file_mode)


def corrupt(path: str | os.PathLike[str], offset: int, data: bytes) -> None:
    """Overwrite bytes of a file in place (for corruption tests)."""
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(data)


def flip_bit(path: str | os.PathLike[str], offset: int, bit: int = 0) -> None:
    """Flip one bit of the byte at ``offset``."""
    with open(path, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ (1 << bit)]))


__all__ = ["CRASH_MODES", "MUTATING", "OPERATIONS", "Fault", "FaultyFileSystem", "PowerLoss", "corrupt", "flip_bit"]
