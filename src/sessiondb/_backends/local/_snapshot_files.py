"""Snapshot files of the local backend: one checksummed file per (session, version), and what is known of them.

``SnapshotFiles`` owns the map of each session's newest snapshot and the older
ones kept for time travel, and writes, reads, prunes and deletes the files.
A file is written tmp -> fsync -> rename -> fsync directory; one that fails its
checksum is skipped (an older one, or the log, stands in), never trusted.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from typing import TYPE_CHECKING, Any

import msgspec

from ..._threads import run_to_completion
from .._fs import FileSystem
from .._snapshot_payload import snapshot_projection_names

if TYPE_CHECKING:
    from ._index import Index

SNAPSHOT_PREFIX = "snapshot-"
SNAPSHOT_SUFFIX = ".snap"
# Snapshots at most this large are read on the event loop; larger ones in a worker thread.
_INLINE_SNAPSHOT_BYTES = 256 * 1024
# A header names the projection states its payload holds, so it may be longer than the fixed fields.
_MAX_HEADER_BYTES = 1024 * 1024
_HEADER_READ_BYTES = 64 * 1024


class SnapshotFileHeader(msgspec.Struct, gc=False):
    sessiondb: str
    format: int
    session: str
    version: int
    bytes: int
    crc: int
    # The projection states the payload holds (None in files written before sessiondb recorded it).
    projections: list[str] | None = None


_json = msgspec.json.Encoder()
_snapshot_header_decoder = msgspec.json.Decoder(SnapshotFileHeader)


def snapshot_file_name(session_id: str, version: int) -> str:
    # Hashed: a session id may hold characters (or ".tmp") that must not shape file names.
    return f"{SNAPSHOT_PREFIX}{hashlib.sha256(session_id.encode()).hexdigest()[:40]}-{version:012d}{SNAPSHOT_SUFFIX}"


class SnapshotFiles:
    """The snapshot files of one store directory: newest and older (version, bytes) per session."""

    def __init__(self, directory: str, fs: FileSystem) -> None:
        self.directory = directory
        self.fs = fs
        # session -> (version, bytes) of its newest snapshot, and of older ones kept for time travel.
        self.newest: dict[str, tuple[int, int]] = {}
        self.older: dict[str, list[tuple[int, int]]] = {}
        self.stats: dict[str, Any] = {"snapshots_written": 0, "snapshot_bytes_written": 0, "snapshots_deleted": 0}
        # (session, version) -> the projection states that snapshot holds (None: unreadable); see holds_sync.
        self.holds: dict[tuple[str, int], frozenset[str] | None] = {}

    def load_headers(self, names: list[str]) -> None:
        """Learn the snapshots from the files themselves (an open without a usable checkpoint)."""
        self.newest, self.older = read_snapshot_headers(self.fs, self.directory, names)

    def adopt(self, rebuilt: SnapshotFiles) -> None:
        """Take the snapshot map of a rebuild from the files (what it learned they hold is kept: files never change)."""
        self.newest = rebuilt.newest
        self.older = rebuilt.older
        self.holds.update(rebuilt.holds)

    def resync(self, names: list[str]) -> bool:
        """Learn snapshot files another process wrote or deleted (``names``: the directory now); True if any.

        Merges: files this process knows keep their entries (and what it decided about them),
        new files are read and added, entries whose file is gone are dropped.
        """
        on_disk = {name for name in names if name.endswith(SNAPSHOT_SUFFIX)}
        known: dict[str, tuple[str, tuple[int, int]]] = {}
        for sid, entry in self.newest.items():
            known[snapshot_file_name(sid, entry[0])] = (sid, entry)
        for sid, entries in self.older.items():
            for entry in entries:
                known[snapshot_file_name(sid, entry[0])] = (sid, entry)
        gone = [known[name] for name in known.keys() - on_disk]
        new = sorted(on_disk - known.keys())
        if not gone and not new:
            return False
        by_session: dict[str, list[tuple[int, int]]] = {}
        for name, (sid, entry) in known.items():
            if name in on_disk:
                by_session.setdefault(sid, []).append(entry)
        found_newest, found_older = read_snapshot_headers(self.fs, self.directory, new)
        for sid, entry in found_newest.items():
            by_session.setdefault(sid, []).append(entry)
        for sid, entries in found_older.items():
            by_session.setdefault(sid, []).extend(entries)
        self.newest, self.older = {}, {}
        for sid, entries in by_session.items():
            entries.sort()
            self.newest[sid] = entries.pop()
            if entries:
                self.older[sid] = entries
        return True

    async def write(self, session_id: str, version: int, data: bytes, holds: frozenset[str] | None = None) -> None:
        held = sorted(holds) if holds is not None else None
        header = SnapshotFileHeader("snapshot", 1, session_id, version, len(data), zlib.crc32(data), held)
        blob = b"".join((_json.encode(header), b"\n", data))
        name = snapshot_file_name(session_id, version)
        await run_to_completion(self.fs.write_file_durably, self.directory, name, blob)
        current = self.newest.get(session_id)
        if current is None or current[0] < version:
            self.newest[session_id] = (version, len(blob))
            if current is not None:
                # The older one stays while the log after it is retained: it serves time travel.
                self.older.setdefault(session_id, []).append(current)
        if holds is not None:
            self.holds[(session_id, version)] = holds
        self.stats["snapshots_written"] += 1
        self.stats["snapshot_bytes_written"] += len(blob)

    async def read(self, session_id: str, max_version: int) -> tuple[int, bytes] | None:
        """The newest readable snapshot at a version <= ``max_version``.

        One that fails its checksum is skipped for the next older one, which leaves
        a longer tail to replay but may still avoid history retention removed.
        """
        known = self.newest.get(session_id)
        if known is None:
            return None
        entries = [known, *self.older.get(session_id, ())]
        for version, size in sorted((entry for entry in entries if entry[0] <= max_version), reverse=True):
            if size > _INLINE_SNAPSHOT_BYTES:
                found = await run_to_completion(self.read_sync, session_id, version)
            else:
                found = self.read_sync(session_id, version)
            if found is not None:
                return found
        return None

    def read_sync(self, session_id: str, version: int) -> tuple[int, bytes] | None:
        path = os.path.join(self.directory, snapshot_file_name(session_id, version))
        try:
            blob = self.fs.read_file(path)
        except FileNotFoundError:
            return None
        parsed = _parse_snapshot_file(blob)
        if parsed is None or parsed[0].session != session_id or parsed[0].version != version:
            self.stats["snapshots_damaged"] = self.stats.get("snapshots_damaged", 0) + 1
            return None
        return parsed[0].version, parsed[1]

    def versions(self) -> dict[str, tuple[int, int]]:
        return dict(self.newest)

    def delete_sync(self, session_id: str, entries: list[tuple[int, int]]) -> int:
        """Unlink the given snapshot files of a session; return the bytes freed."""
        freed = 0
        for version, size in entries:
            try:
                self.fs.unlink(os.path.join(self.directory, snapshot_file_name(session_id, version)))
            except FileNotFoundError:
                continue
            self.holds.pop((session_id, version), None)
            self.stats["snapshots_deleted"] += 1
            freed += size
        return freed

    def prune(self, index: Index, first_live_number: int) -> list[tuple[str, list[tuple[int, int]]]]:
        """Snapshot files nothing can use any more; dropped from the maps (unlink them after a checkpoint).

        All of a deleted session's; and older snapshots of a live one whose tail
        retention removed (they could only serve time travel the log no longer backs).
        """
        doomed: list[tuple[str, list[tuple[int, int]]]] = []
        for session_id in list(self.newest):
            stream = index.streams.get(session_id)
            if stream is None or stream.info.deleted:
                entries = [self.newest.pop(session_id), *self.older.pop(session_id, [])]
                doomed.append((session_id, entries))
                continue
            older = self.older.get(session_id)
            if not older:
                continue
            available = index.first_available_version(session_id, stream, first_live_number)
            useless = [entry for entry in older if entry[0] < available - 1]
            if useless:
                self.older[session_id] = [entry for entry in older if entry[0] >= available - 1]
                doomed.append((session_id, useless))
        return doomed

    def candidates(self, index: Index, min_events: int, min_bytes: int, state_ratio: float) -> list[tuple[str, int]]:
        """Sessions whose unsnapshotted tail is worth a snapshot: (session id, tail bytes).

        A tail qualifies when it has ``min_events`` events or ``min_bytes`` bytes
        AND at least ``state_ratio`` times the bytes of the session's current
        snapshot: so a large state is never rewritten for a small tail, and the
        snapshot bytes written stay within a constant factor of the bytes appended.
        """
        out: list[tuple[str, int]] = []
        for session_id, stream in index.streams.items():
            if stream.info.deleted:
                continue
            known = self.newest.get(session_id)
            snapshot_version, snapshot_bytes = known if known is not None else (0, 0)
            first = max(snapshot_version - stream.base, 0)
            tail_events = len(stream.locations) - first
            if tail_events <= 0 or (tail_events < min_events and tail_events * 64 < min_bytes):
                continue  # cheap rejection before summing lengths (records are >= 64 bytes)
            tail_bytes = sum(stream.lengths[first:]) if first else sum(stream.lengths)
            if tail_events < min_events and tail_bytes < min_bytes:
                continue
            if tail_bytes < snapshot_bytes * state_ratio:
                continue
            out.append((session_id, tail_bytes))
        return out

    def forget(self, session_id: str, version: int | None = None) -> None:
        """Stop counting on a session's snapshot at ``version`` (default: its newest).

        When that is the newest, its newest older one (if any) takes its place.
        """
        newest = self.newest.get(session_id)
        if newest is None:
            return
        if version is not None and version != newest[0]:
            kept = [entry for entry in self.older.get(session_id, []) if entry[0] != version]
            self.older[session_id] = kept
            return
        self.newest.pop(session_id, None)
        older = self.older.get(session_id)
        if older:
            replacement = max(older)
            older.remove(replacement)
            self.newest[session_id] = replacement

    def entries(self, session_id: str) -> list[tuple[int, int]]:
        """(version, bytes) of every snapshot of a session, newest first."""
        known = self.newest.get(session_id)
        if known is None:
            return []
        return sorted([known, *self.older.get(session_id, ())], reverse=True)

    def holds_sync(self, session_id: str, version: int) -> frozenset[str] | None:
        """The projection states the snapshot at ``version`` holds; None if it cannot be read.

        From the file's header (written since sessiondb records it), else from the
        payload's keys (older files, read once). Cached: a snapshot file never changes.
        """
        key = (session_id, version)
        if key in self.holds:
            return self.holds[key]
        held: frozenset[str] | None = None
        path = os.path.join(self.directory, snapshot_file_name(session_id, version))
        try:
            header = self._read_header(path)
            if (
                header is not None
                and header.session == session_id
                and header.version == version
                and header.projections is not None
            ):
                self.holds[key] = frozenset(header.projections)
                return self.holds[key]
            blob = self.fs.read_file(path)  # an older file: the payload's keys say (checked whole)
        except FileNotFoundError:
            return None  # not cached: the file may yet appear (another process's rename)
        parsed = _parse_snapshot_file(blob)
        if parsed is not None and parsed[0].session == session_id and parsed[0].version == version:
            if parsed[0].projections is not None:
                held = frozenset(parsed[0].projections)
            else:
                held = snapshot_projection_names(parsed[1])
        self.holds[key] = held
        return held

    def _read_header(self, path: str) -> SnapshotFileHeader | None:
        """The header line alone (a snapshot may be large); None if it does not decode."""
        fd = self.fs.open_read(path)
        try:
            head = self.fs.pread(fd, _HEADER_READ_BYTES, 0)
            newline = head.find(b"\n")
            if newline < 0:
                head = self.fs.pread(fd, _MAX_HEADER_BYTES, 0)
                newline = head.find(b"\n")
        finally:
            self.fs.close(fd)
        if newline < 0:
            return None
        try:
            return _snapshot_header_decoder.decode(head[:newline])
        except (msgspec.DecodeError, ValueError):
            return None

    def covering(self, session_id: str, recorded: frozenset[str]) -> tuple[int, int] | None:
        """The newest snapshot of a session that holds every ``recorded`` projection state (retention's floor).

        With nothing recorded (a store no snapshotted projection was ever registered
        on), every snapshot qualifies, as before records existed. Uses the cache only
        (``warm_holds`` fills it first): a snapshot not known to hold them does not count.
        """
        entries = self.entries(session_id)
        if not recorded:
            return entries[0] if entries else None
        for entry in entries:
            held = self.holds.get((session_id, entry[0]))
            if held is not None and recorded <= held:
                return entry
        return None

    def warm_holds(self) -> None:
        """Learn what every known snapshot holds (in a worker thread: reads the files not yet known)."""
        for session_id in list(self.newest):
            for version, _size in self.entries(session_id):
                if (session_id, version) not in self.holds:
                    self.holds_sync(session_id, version)


class FileDamage(ValueError):
    """Why a snapshot or checkpoint file cannot be used, and the byte offset where it shows (for verify)."""

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(reason)
        self.offset = offset


def read_snapshot_file(blob: bytes) -> tuple[SnapshotFileHeader, bytes]:
    """The header and payload of a snapshot file whose checksum holds (``FileDamage`` if it cannot be used)."""
    newline = blob.find(b"\n", 0, _MAX_HEADER_BYTES)
    if newline < 0:
        raise FileDamage(0, "snapshot header is missing")
    try:
        header = _snapshot_header_decoder.decode(blob[:newline])
    except (msgspec.DecodeError, ValueError) as exc:
        raise FileDamage(0, f"snapshot header does not decode ({exc})") from None
    payload = blob[newline + 1 :]
    if header.sessiondb != "snapshot":
        raise FileDamage(0, f"not a snapshot header ({header.sessiondb!r})")
    if len(payload) != header.bytes:
        raise FileDamage(
            newline + 1 + min(len(payload), header.bytes),
            f"payload is {len(payload)} bytes, the header says {header.bytes}",
        )
    if zlib.crc32(payload) != header.crc:
        raise FileDamage(newline + 1, "snapshot checksum mismatch")
    return header, payload


def _parse_snapshot_file(blob: bytes) -> tuple[SnapshotFileHeader, bytes] | None:
    try:
        return read_snapshot_file(blob)
    except FileDamage:
        return None


def read_snapshot_headers(
    fs: Any, directory: str, names: list[str]
) -> tuple[dict[str, tuple[int, int]], dict[str, list[tuple[int, int]]]]:
    """The newest and older (version, bytes) snapshots of each session, from the files (open without checkpoint)."""
    found: dict[str, list[tuple[int, int]]] = {}
    for name in names:
        if not (name.startswith(SNAPSHOT_PREFIX) and name.endswith(SNAPSHOT_SUFFIX)):
            continue
        try:
            blob = fs.read_file(os.path.join(directory, name))
        except OSError:
            continue
        parsed = _parse_snapshot_file(blob)
        if parsed is not None and snapshot_file_name(parsed[0].session, parsed[0].version) == name:
            found.setdefault(parsed[0].session, []).append((parsed[0].version, len(blob)))
    newest: dict[str, tuple[int, int]] = {}
    older: dict[str, list[tuple[int, int]]] = {}
    for session_id, entries in found.items():
        entries.sort()
        newest[session_id] = entries[-1]
        if len(entries) > 1:
            older[session_id] = entries[:-1]
    return newest, older
