"""Crash: a child runs LangGraph graphs with durability="sync" on a store directory and is SIGKILLed mid-run.

After reopening, every checkpoint the child saw acknowledged is there, each thread's
newest checkpoint is at or after its last acknowledged one with an unbroken parent
chain, and the graph resumes from it to the end.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import sessiondb
from sessiondb.integrations.langgraph import SessionDBSaver

from ._langgraph_crash_child import build

pytestmark = [pytest.mark.anyio, pytest.mark.crash]

THREADS = 8
TARGET = 150


def _run_and_kill(path: Path, seed: int) -> list[dict[str, Any]]:
    """Start the child, SIGKILL it after a random number of acknowledged checkpoints; return what it printed."""
    kill_after = random.Random(seed).randrange(20, THREADS * TARGET // 2)
    acked: list[dict[str, Any]] = []
    with subprocess.Popen(
        [sys.executable, "-m", "tests.integrations._langgraph_crash_child", str(path), str(THREADS), str(TARGET)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
    ) as child:
        assert child.stdout is not None
        for line in child.stdout:
            record = json.loads(line)
            assert "done" not in record, "the child finished before it was killed: raise TARGET"
            acked.append(record)
            if len(acked) >= kill_after:
                os.kill(child.pid, signal.SIGKILL)
                break
        acked.extend(json.loads(line) for line in child.stdout)  # lines already written before the kill
    assert child.returncode == -signal.SIGKILL
    return [record for record in acked if "done" not in record]


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_sigkill_mid_run_loses_nothing_acknowledged(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "store"
    acked = _run_and_kill(path, seed)
    async with sessiondb.open_store(path) as store:
        saver = SessionDBSaver(store)
        graph = build().compile(checkpointer=saver)
        last: dict[str, dict[str, Any]] = {}
        for record in acked:
            config = {
                "configurable": {"thread_id": record["thread"], "checkpoint_ns": "", "checkpoint_id": record["id"]}
            }
            assert await saver.aget_tuple(config) is not None, record
            last[record["thread"]] = record

        async def resume(thread: str, record: dict[str, Any]) -> None:
            config: dict[str, Any] = {"configurable": {"thread_id": thread}, "recursion_limit": TARGET * 4}
            newest = await saver.aget_tuple(config)
            assert newest is not None and newest.checkpoint["id"] >= record["id"]
            # An unbroken chain of parents back to the first checkpoint.
            chain = [newest]
            while chain[-1].parent_config is not None:
                parent = await saver.aget_tuple(chain[-1].parent_config)
                assert parent is not None
                chain.append(parent)
            assert chain[-1].metadata["step"] == -1
            await graph.ainvoke(None, config, durability="sync")  # resume from the newest checkpoint
            state = await graph.aget_state(config)
            assert state.values["count"] == TARGET and state.next == ()

        await asyncio.gather(*(resume(thread, record) for thread, record in last.items()))
