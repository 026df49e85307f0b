"""Snapshots and storage compaction for the PostgreSQL backend (a part ``PostgresBackend`` holds).

A snapshot is one row per session (the newest replaces older ones), with a
CRC32 of its bytes so a damaged one is never trusted. ``snapshot_versions``
and ``snapshot_candidates`` must answer without I/O, so they are served from
memory: the snapshot map is loaded at open and kept current by this process's
writes, and the unsnapshotted tail of each session is counted as this process
commits to it. So each process's compactor snapshots the sessions that process
writes; a snapshot written by another process shows up after a reopen, which
at worst makes a compactor write one again.
"""

from __future__ import annotations

import zlib
from collections.abc import Awaitable, Callable
from typing import Any

from ..._events import SessionDeleted


class PostgresSnapshots:
    """Snapshot storage and compaction over the backend's read pool.

    ``read`` runs one operation on a pooled connection (``PostgresBackend._read``);
    ``prune_batch_outcomes`` is the backend's; ``stats`` is the backend's counter dict.
    """

    def __init__(
        self,
        schema: str,
        read: Callable[[Callable[[Any], Awaitable[Any]]], Awaitable[Any]],
        prune_batch_outcomes: Callable[[], Awaitable[int]],
        stats: dict[str, int],
    ) -> None:
        self.schema = schema
        self._read = read
        self.prune_batch_outcomes = prune_batch_outcomes
        self._stats = stats
        self._snapshot_map: dict[str, tuple[int, int]] = {}
        # session id -> [version, events, bytes] appended by this process since its last snapshot
        self._tails: dict[str, list[int]] = {}

    def note_committed(self, arrays: Any) -> None:
        """Count what the batch added to each session's unsnapshotted tail."""
        tails = self._tails
        for request, size in zip(arrays.sent, arrays.sizes, strict=True):
            if request.error is not None or request.duplicate:
                continue
            if type(request.events[0]) is SessionDeleted:
                tails.pop(request.session_id, None)
                continue
            tail = tails.get(request.session_id)
            if tail is None:
                tail = tails[request.session_id] = [0, 0, 0]
            tail[0] = request.version
            tail[1] += len(request.events)
            tail[2] += size

    def snapshot_candidates(self, min_events: int, min_bytes: int, state_ratio: float) -> list[tuple[str, int]]:
        """Sessions this process wrote whose unsnapshotted tail is worth a snapshot: (session id, tail bytes)."""
        out: list[tuple[str, int]] = []
        for session_id, (_, events, size) in self._tails.items():
            if events < min_events and size < min_bytes:
                continue
            if size < self._snapshot_map.get(session_id, (0, 0))[1] * state_ratio:
                continue
            out.append((session_id, size))
        return out

    def retention_needs(self, keep_segments: int, keep_seconds: float | None) -> dict[str, int]:
        """Nothing: a live session's history is never removed here, so no snapshot is needed first."""
        return {}

    async def load_snapshot_map(self, conn: Any) -> None:
        rows = await conn.fetch(f"select session_id, version, length(data) from {self.schema}.snapshots")
        self._snapshot_map = {row[0]: (row[1], row[2]) for row in rows}

    async def write_snapshot(self, session_id: str, version: int, data: bytes) -> bool:
        # Never replace a newer snapshot (another process may have written one).
        query = (
            f"insert into {self.schema}.snapshots (session_id, version, data, crc) values ($1, $2, $3, $4) "
            "on conflict (session_id) do update set version = excluded.version, data = excluded.data, "
            f"crc = excluded.crc, created_at = now() where {self.schema}.snapshots.version <= excluded.version"
        )
        crc = zlib.crc32(data)
        await self._read(lambda conn: conn.execute(query, session_id, version, data, crc))
        current = self._snapshot_map.get(session_id)
        if current is None or current[0] <= version:
            self._snapshot_map[session_id] = (version, len(data))
        tail = self._tails.get(session_id)
        if tail is not None:
            if tail[0] <= version:
                del self._tails[session_id]
            else:  # appends landed while the snapshot was built: one event per version after it
                remaining = min(tail[0] - version, tail[1])
                tail[2] = tail[2] * remaining // max(tail[1], 1)
                tail[1] = remaining
        self._stats["snapshots_written"] += 1
        return True

    async def read_snapshot(self, session_id: str, max_version: int) -> tuple[int, bytes] | None:
        query = f"select version, data, crc from {self.schema}.snapshots where session_id = $1"
        row = await self._read(lambda conn: conn.fetchrow(query, session_id))
        if row is None or row[0] > max_version:
            return None  # only the newest snapshot is kept: older versions replay from the log
        if zlib.crc32(row[1]) != row[2]:
            self._stats["snapshots_damaged"] += 1
            return None
        return int(row[0]), bytes(row[1])

    def snapshot_versions(self) -> dict[str, tuple[int, int]]:
        return dict(self._snapshot_map)

    async def compact_storage(self, settings: Any) -> dict[str, Any]:
        """Free the events and snapshots of deleted sessions that no fork still reads.

        The summary row stays (the id stays taken and ``info`` reports the
        session as deleted, as on the local backend). A live session's history
        is kept: the database is the log, and its retention is an operator's
        decision (``docs/postgres.md``).
        """
        s = self.schema
        query = f"""
            with gone as (
                select t.session_id from {s}.sessions as t
                 where t.deleted
                   and not exists (select 1 from {s}.sessions as c where c.parent_session_id = t.session_id)
                   and (exists (select 1 from {s}.events as e where e.session_id = t.session_id)
                        or exists (select 1 from {s}.snapshots as n where n.session_id = t.session_id))),
            events_gone as (delete from {s}.events as e using gone where e.session_id = gone.session_id
                            returning length(e.payload) as size),
            snapshots_gone as (delete from {s}.snapshots as n using gone where n.session_id = gone.session_id
                               returning n.session_id, length(n.data) as size)
            select (select count(*) from events_gone), (select coalesce(sum(size), 0) from events_gone),
                   (select coalesce(array_agg(session_id), '{{}}') from snapshots_gone),
                   (select coalesce(sum(size), 0) from snapshots_gone)
        """
        row = await self._read(lambda conn: conn.fetchrow(query))
        for session_id in row[2]:
            self._snapshot_map.pop(session_id, None)
        counters = {
            "events_deleted": int(row[0]),
            "snapshots_deleted": len(row[2]),
            "bytes_reclaimed": int(row[1]) + int(row[3]),
        }
        self._stats["events_deleted"] += counters["events_deleted"]
        counters["batch_outcomes_deleted"] = await self.prune_batch_outcomes()
        return counters
