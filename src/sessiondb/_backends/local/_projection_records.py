"""The store's record of its snapshotted projections: one small file per projection name.

Retention removes log history only under snapshots that hold the state of every
recorded projection, so a process that never registered a projection cannot
make another process's projection state unrecoverable. One file per name (not
one shared list) so that processes recording at once never rewrite each other's
records and need no lock; each is written tmp -> fsync -> rename -> fsync dir.
"""

from __future__ import annotations

import hashlib
import os
import threading

import msgspec

from ..._errors import SessionDBError
from .._fs import FileSystem

PROJECTION_RECORD_PREFIX = "projection-"
PROJECTION_RECORD_SUFFIX = ".json"


class ProjectionRecord(msgspec.Struct, gc=False):
    sessiondb: str  # "projection"
    name: str


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(ProjectionRecord)


def projection_record_name(name: str) -> str:
    # Hashed: a projection name may hold characters that must not shape file names.
    return f"{PROJECTION_RECORD_PREFIX}{hashlib.sha256(name.encode()).hexdigest()[:40]}{PROJECTION_RECORD_SUFFIX}"


def is_projection_record(name: str) -> bool:
    return name.startswith(PROJECTION_RECORD_PREFIX) and name.endswith(PROJECTION_RECORD_SUFFIX)


class ProjectionRecords:
    """Records, reads and forgets the snapshotted projections of one store directory."""

    def __init__(self, directory: str, fs: FileSystem) -> None:
        self.directory = directory
        self.fs = fs
        self._known: dict[str, str] = {}  # file name -> projection name (files are never rewritten)

    def record(self, name: str) -> bool:
        """Durably record ``name`` unless it is recorded already; True if this call recorded it."""
        file_name = projection_record_name(name)
        target = os.path.join(self.directory, file_name)
        if self.fs.exists(target):
            return False
        data = _encoder.encode(ProjectionRecord("projection", name)) + b"\n"
        # A temp name of this thread's own: another process, or another thread of this one (each
        # registering the projection on its own store), may record the same name at the same time.
        temporary = f"{target}.{os.getpid()}.{threading.get_ident()}.tmp"
        for attempt in range(3):
            if self.fs.exists(temporary):
                self.fs.unlink(temporary)
            fd = self.fs.open_write(temporary, create=True)
            try:
                self.fs.write(fd, data)
                self.fs.fsync(fd)
            finally:
                self.fs.close(fd)
            try:
                self.fs.rename(temporary, target)
            except FileNotFoundError:
                # Another process opening the store removed temp files (it takes them for a dead
                # compaction's); the record is written again from the start.
                if attempt == 2:
                    raise
                continue
            break
        self.fs.fsync_directory(self.directory)
        self._known[file_name] = name
        return True

    def forget(self, name: str) -> bool:
        """Remove the record of ``name`` (durably); True if there was one."""
        file_name = projection_record_name(name)
        try:
            self.fs.unlink(os.path.join(self.directory, file_name))
        except FileNotFoundError:
            return False
        self.fs.fsync_directory(self.directory)
        self._known.pop(file_name, None)
        return True

    def names(self, listing: list[str] | None = None) -> frozenset[str]:
        """The recorded projection names (``listing``: the directory's entries, when the caller has them)."""
        entries = self.fs.listdir(self.directory) if listing is None else listing
        found: set[str] = set()
        for entry in entries:
            if not is_projection_record(entry):
                continue
            name = self._known.get(entry)
            if name is None:
                try:
                    name = _decoder.decode(self.fs.read_file(os.path.join(self.directory, entry))).name
                except FileNotFoundError:
                    continue  # forgotten meanwhile
                except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                    # Never guess: an unreadable record keeps retention from relying on any snapshot.
                    raise ProjectionRecordError(os.path.join(self.directory, entry), str(exc)) from None
                self._known[entry] = name
            found.add(name)
        return frozenset(found)


class ProjectionRecordError(SessionDBError):
    """A projection record file does not decode."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(
            f"projection record {path} does not decode ({reason}); retention keeps all history until it is "
            "fixed: delete the file and register the projection again (a store re-records it on registration)"
        )
        self.path = path


__all__ = [
    "PROJECTION_RECORD_PREFIX",
    "ProjectionRecordError",
    "ProjectionRecords",
    "is_projection_record",
    "projection_record_name",
]
