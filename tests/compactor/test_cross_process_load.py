"""A load at the latest version while another store on the directory compacts (two stores, one process).

Store A appends and compacts eagerly; store B, which learned A's first snapshot, starts
a load. Between B's look at the session's head and its snapshot read, A appends more,
snapshots above B's head, prunes the older snapshot and retention deletes the segments
below the new one (the race the multi-process compaction test hit under load). B's load
of the latest version must still succeed: the latest version is never removed history.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import sessiondb
from sessiondb import CompactionSettings, Message

pytestmark = pytest.mark.anyio


def _settings(keep_segments: int | None) -> CompactionSettings:
    return CompactionSettings(background=False, min_tail_events=5, min_tail_bytes=10**9, keep_segments=keep_segments)


def _snapshot_files(path: Path) -> set[str]:
    return {name for name in os.listdir(path) if name.endswith(".snap")}


async def _turns(store: sessiondb.Store, session_id: str, first: int, count: int) -> None:
    for turn in range(first, first + count):
        await store.append(session_id, Message.user(f"turn {turn} " + "z" * 80))


async def test_load_of_the_latest_version_survives_another_stores_compaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s"
    async with (
        sessiondb.open_store(path, segment_bytes=2048, compaction=_settings(keep_segments=0)) as a,
        sessiondb.open_store(path, segment_bytes=2048, compaction=_settings(keep_segments=None)) as b,
    ):
        await a.create_session(session_id="s0")
        await b.load("s0")  # B follows the log from its first segment on
        await _turns(a, "s0", 0, 30)
        await b.session_info("s0")  # B follows A's rotations (a follower behind retention is another matter)
        first = await a.compact()
        assert first["snapshots_written"] == 1 and first["segments_deleted"] > 0, first
        assert (await b.load("s0")).version == 31  # B learns A's snapshot at 31
        old_snapshots = _snapshot_files(path)

        await _turns(a, "s0", 30, 30)  # B's next load sees head 61 ...
        real_read = b.backend.read_snapshot
        raced: list[dict[str, Any]] = []

        async def read_after_a_compacts(session_id: str, max_version: int) -> tuple[int, bytes] | None:
            if not raced:  # ... then, before B reads a snapshot, A moves on and compacts
                await _turns(a, "s0", 60, 30)
                await b.session_info("s0")  # B's index follows; this load keeps the head it saw
                raced.append(await a.compact())
                # Another read of B's looked around since (a load elsewhere, B's own pass): it knows
                # the segments and the snapshot A removed, and A's new snapshot.
                await b.backend.resync()
            return await real_read(session_id, max_version)

        monkeypatch.setattr(b.backend, "read_snapshot", read_after_a_compacts)
        session = await b.load("s0")

        assert raced and raced[0]["snapshots_written"] == 1 and raced[0]["segments_deleted"] > 0, raced
        assert not old_snapshots & _snapshot_files(path)  # the snapshot B knew is gone
        assert session.version == 91
        assert session == await a.load("s0")


@pytest.mark.parametrize("checkpoint", [True, False], ids=["from-checkpoint", "from-scan"])
async def test_a_store_that_fell_behind_retention_rebuilds_its_index_and_goes_on(
    tmp_path: Path, checkpoint: bool
) -> None:
    """Store B looks at the log once, then idles while A rolls through many segments and retention removes
    them, B's newest among them. B must neither write into the removed file (its acknowledgement would be
    lost) nor serve its old view: it rebuilds its index as open does (from the checkpoint, or by a scan when
    there is none) and goes on, and a reopened store holds everything both acknowledged."""
    path = tmp_path / "s"
    async with sessiondb.open_store(path, segment_bytes=2048, compaction=_settings(keep_segments=0)) as a:
        await a.create_session(session_id="s0")
        b = sessiondb.open_store(path, segment_bytes=2048, compaction=_settings(keep_segments=None))
        await b.start()
        try:
            assert (await b.load("s0")).version == 1
            newest_known = path / f"{b.statistics()['segments_sealed'] + 1:010d}.seg"
            await _turns(a, "s0", 0, 60)
            compacted = await a.compact()
            assert compacted["segments_deleted"] > 0 and not newest_known.exists(), compacted
            if not checkpoint:
                os.unlink(path / "CHECKPOINT")  # the log is the truth: the rebuild scans it
            assert (await b.session_info("s0")).version == 61
            assert b.statistics()["index_rebuilds"] == 1
            assert await b.append("s0", Message.user("from the store that fell behind"), expected_version=61) == 62
            assert await a.load("s0") == await b.load("s0")
        finally:
            await b.aclose()
        async with sessiondb.open_store(path, segment_bytes=2048, compaction=_settings(keep_segments=None)) as again:
            assert (await again.load("s0")).version == 62
            await again.append("s0", Message.user("after reopening"))
        assert (await a.load("s0")).version == 63
