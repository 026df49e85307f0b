"""A process that never appends snapshots what other processes appended (store directory).

Its compaction pass catches up on the log first (``begin_maintenance``), so
the sessions other processes wrote are among its snapshot candidates, with
their tails. (The PostgreSQL backend counts tails only for the sessions its
own process wrote, so there a process that only compacts writes no snapshot.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

import sessiondb
from sessiondb import CompactionSettings

from ._helpers import create_sessions, result_of, wait_line
from .conftest import Children

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

SESSIONS = ["foreign-1", "foreign-2", "foreign-3"]


async def test_compaction_snapshots_sessions_only_other_processes_wrote(tmp_path: Path, children: Children) -> None:
    target = str(tmp_path / "store")
    await create_sessions(target, SESSIONS)
    settings = CompactionSettings(background=False, min_tail_events=20, min_tail_bytes=1 << 30)
    # Opened before the other process appends: what it knows of those appends comes from catching up.
    async with sessiondb.open_store(target, compaction=settings) as compactor:
        assert (await compactor.compact())["snapshots_written"] == 0  # one event per session: below the threshold
        writer = children.start("append", target, "30", ",".join(SESSIONS))
        await wait_line(writer, "READY")
        written = await result_of(writer)
        assert written["versions"] == dict.fromkeys(SESSIONS, 31)
        done = await compactor.compact()
        assert done["snapshots_written"] == len(SESSIONS), done
        assert {sid: version for sid, (version, _) in compactor.backend.snapshot_versions().items()} == dict.fromkeys(
            SESSIONS, 31
        )
    # Another process (here: a fresh open) reads the sessions from those snapshot files.
    async with sessiondb.open_store(target, compaction=CompactionSettings(background=False)) as reader:
        assert reader.backend.snapshot_versions().keys() == set(SESSIONS)
        for sid in SESSIONS:
            assert (await reader.load(sid)).version == 31
