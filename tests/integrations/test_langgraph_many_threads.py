"""1,000 LangGraph threads at once: in one process (every backend), and in four processes on one store directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import sessiondb
from sessiondb.integrations.langgraph import SessionDBSaver

from ._langgraph_crash_child import build
from ._langgraph_many_child import run_threads
from .conftest import StoreFactory

pytestmark = pytest.mark.anyio

TARGET = 3  # steps per thread: input checkpoint + 3 loop checkpoints


async def _check(store: sessiondb.Store, thread_ids: list[str]) -> None:
    # One session per thread: concurrent first writes to a thread (aput, aput_writes) share its session.
    sessions = [s.session_id for s in await store.list_sessions()]
    assert sorted(sessions) == sorted(f"lg~{thread_id}" for thread_id in thread_ids)
    saver = SessionDBSaver(store)
    graph = build().compile(checkpointer=saver)
    for thread_id in thread_ids:
        config: dict[str, Any] = {"configurable": {"thread_id": thread_id}}
        state = await graph.aget_state(config)
        assert state.values == {"count": TARGET, "target": TARGET}, thread_id
        steps = [s.metadata["step"] async for s in graph.aget_state_history(config) if s.metadata]
        assert steps == list(range(TARGET, -2, -1)), thread_id


async def test_one_thousand_threads_in_one_process(open_fresh_store: StoreFactory) -> None:
    store = await open_fresh_store()
    await run_threads(store, "t", 1000, TARGET)
    await _check(store, [f"t{i}" for i in range(1000)])


def test_one_thousand_threads_in_four_processes_on_one_directory(tmp_path: Path) -> None:
    path = tmp_path / "store"
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.integrations._langgraph_many_child", str(path), f"p{n}-", "250", str(TARGET)],
            cwd=Path(__file__).parents[2],
        )
        for n in range(4)
    ]
    for child in children:
        assert child.wait(timeout=240) == 0

    async def check() -> None:
        async with sessiondb.open_store(path) as store:
            await _check(store, [f"p{n}-{i}" for n in range(4) for i in range(250)])

    import anyio

    anyio.run(check)
