"""Processes sharing a store where only one registered a snapshotted projection.

A (this process) registers a projection whose state goes into snapshots and
appends; other real processes open the same store without it: a script that
appends and compacts with retention (``keep_segments=0``, purge), and the CLI's
``sessiondb compact --purge``. A's ``project`` must still return the whole state,
before and after a reopen: on a directory retention keeps the history the
recorded projection needs, and PostgreSQL never removes a live session's history.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

import sessiondb
from compactor._tally import TALLY
from sessiondb import CompactionSettings, Message

from .conftest import is_postgres

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(180)]


# The other process: an application that never registered "tally", appending and compacting with retention.
SCRIPT = """
import asyncio, json, sys
import sessiondb

async def main(target):
    settings = sessiondb.CompactionSettings(background=False, min_tail_events=5, state_ratio=0, keep_segments=0)
    async with sessiondb.open_store(target, segment_bytes=2048, compaction=settings) as store:
        for turn in range(60, 80):
            await store.append("t", sessiondb.Message.user(f"t turn {turn} " + "z" * 60))
        done = await store.compact(purge=True)
        print("RESULT " + json.dumps({k: v for k, v in done.items() if k != "seconds"}), flush=True)

asyncio.run(main(sys.argv[1]))
"""


def _run(*argv: str) -> str:
    done = subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout + done.stderr


async def test_other_processes_without_the_projection_keep_its_history(store_target: str) -> None:
    settings = CompactionSettings(background=False, min_tail_events=5, keep_segments=None)
    texts = [f"t turn {turn} " + "z" * 60 for turn in range(80)]
    async with sessiondb.open_store(store_target, segment_bytes=2048, compaction=settings) as a:
        a.register_projection(TALLY)
        await a.create_session(session_id="t")
        for text in texts[:60]:
            await a.append("t", Message.user(text))
        await a.compact()  # A's own snapshot (with the state) at version 61
        script = await asyncio.to_thread(_run, "-c", SCRIPT, store_target)
        result = json.loads(script.split("RESULT ", 1)[1].splitlines()[0])
        cli = await asyncio.to_thread(_run, "-m", "sessiondb", "compact", "--purge", store_target)
        if not is_postgres(store_target):
            assert result["projections_not_registered"] == ["tally"]
            assert result["segments_deleted"] > 0  # what A's snapshot covers went
            assert "'tally'" in cli and "kept the history" in cli
            assert "projection 'tally' is recorded in this store but not registered" in script
        assert (await a.project("t", "tally")).texts == texts
    async with sessiondb.open_store(store_target, compaction=settings) as a:
        a.register_projection(TALLY)
        assert (await a.project("t", "tally")).texts == texts
        assert len((await a.load("t")).messages) == 80
