"""A real compiled LangGraph graph (tool loop, interrupt and resume, subgraph) on SessionDBSaver and on InMemorySaver.

Both run the same inputs; states, histories, forks (update_state on a past checkpoint)
and replays must be equal. Checkpoint ids, timestamps and task ids differ between any
two runs, so snapshots are compared without them.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command, StateSnapshot

import sessiondb
from sessiondb.integrations.langgraph import SessionDBSaver

from ._langgraph_graph import build
from .conftest import StoreFactory

pytestmark = pytest.mark.anyio


def _snapshot(snapshot: StateSnapshot) -> dict[str, Any]:
    metadata = dict(snapshot.metadata or {})
    return {
        "values": snapshot.values,
        "next": snapshot.next,
        "source": metadata.get("source"),
        "step": metadata.get("step"),
        "parents": sorted(metadata.get("parents", {})),
        "has_parent": snapshot.parent_config is not None,
        "tasks": [(task.name, task.error, [i.value for i in task.interrupts], task.result) for task in snapshot.tasks],
        "interrupts": [i.value for i in snapshot.interrupts],
    }


async def _history(graph: Any, config: dict[str, Any]) -> list[dict[str, Any]]:
    return [_snapshot(s) async for s in graph.aget_state_history(config)]


async def _scenario(saver: BaseCheckpointSaver[Any]) -> dict[str, Any]:
    """Everything the test compares, produced by one saver."""
    graph = build().compile(checkpointer=saver)
    config: dict[str, Any] = {"configurable": {"thread_id": "conversation"}}
    seen: dict[str, Any] = {}
    await graph.ainvoke({"messages": [{"role": "user", "content": "add twice"}]}, config)
    seen["interrupted"] = _snapshot(await graph.aget_state(config))
    await graph.ainvoke(Command(resume="yes"), config)
    await graph.ainvoke(Command(resume="yes"), config)
    seen["final"] = _snapshot(await graph.aget_state(config))
    seen["subgraph"] = [_snapshot(s) for s in [await graph.aget_state(config, subgraphs=True)] if s is not None]
    history = [s async for s in graph.aget_state_history(config)]
    seen["history"] = [_snapshot(s) for s in history]
    thread = {"configurable": {"thread_id": "conversation"}}
    namespaces = {t.config["configurable"]["checkpoint_ns"].split(":")[0] async for t in saver.alist(thread)}
    seen["namespaces"] = sorted(namespaces)
    # Fork: update_state on a past checkpoint (the first interrupt) makes a new branch.
    past = next(s for s in history if s.next == ("tools",))
    fork_config = await graph.aupdate_state(past.config, {"messages": [{"role": "user", "content": "edited"}]})
    seen["fork"] = _snapshot(await graph.aget_state(fork_config))
    await graph.ainvoke(Command(resume="no"), fork_config)
    seen["after_fork"] = _snapshot(await graph.aget_state(config))
    # Replay from a checkpoint: run again from the model's first answer.
    first_model = next(s for s in history if s.next == ("model",) and s.metadata and s.metadata["step"] == 0)
    replay = [chunk async for chunk in graph.astream(None, first_model.config, stream_mode="values")]
    seen["replay"] = [  # interrupt ids derive from checkpoint ids: compare their values
        {k: [i.value for i in v] if k == "__interrupt__" else v for k, v in chunk.items()} for chunk in replay
    ]
    seen["after_replay"] = _snapshot(await graph.aget_state(config))
    seen["history_after"] = await _history(graph, config)
    root = {"configurable": {"thread_id": "conversation", "checkpoint_ns": ""}}
    seen["filtered"] = sorted(
        [(t.metadata["step"], t.metadata["source"]) async for t in saver.alist(root, filter={"source": "update"})]
    )
    return seen


async def test_graph_matches_in_memory_saver(open_fresh_store: StoreFactory) -> None:
    expected = await _scenario(InMemorySaver())
    actual = await _scenario(SessionDBSaver(await open_fresh_store()))
    assert expected["interrupted"]["interrupts"] == [{"approve": "add", "args": [1, 1]}]
    assert expected["final"]["values"]["summary"].endswith("done after 2 tools | 6 messages")
    assert expected["namespaces"] == ["", "summarize"]  # the subgraph's checkpoints were written too
    for key in expected:
        assert actual[key] == expected[key], key


async def test_state_survives_reopen(tmp_path: Any) -> None:
    config: dict[str, Any] = {"configurable": {"thread_id": "t"}}
    async with sessiondb.open_store(tmp_path / "store") as store:
        graph = build().compile(checkpointer=SessionDBSaver(store))
        await graph.ainvoke({"messages": [{"role": "user", "content": "hi"}]}, config)
        before = await _history(graph, config)
    async with sessiondb.open_store(tmp_path / "store") as store:
        graph = build().compile(checkpointer=SessionDBSaver(store))
        assert await _history(graph, config) == before
        await graph.ainvoke(Command(resume="yes"), config)  # resumes at the interrupt
        assert (await graph.aget_state(config)).next == ("tools",)
        assert len(await _history(graph, config)) > len(before)


async def test_sync_invoke_from_another_thread(tmp_path: Any) -> None:
    config: dict[str, Any] = {"configurable": {"thread_id": "sync"}}
    async with sessiondb.open_store(tmp_path / "store") as store:
        saver = SessionDBSaver(store)
        graph = build().compile(checkpointer=saver)

        def run_sync() -> list[Any]:
            graph.invoke({"messages": [{"role": "user", "content": "hi"}]}, config)
            graph.invoke(Command(resume="yes"), config)
            graph.invoke(Command(resume="yes"), config)
            return [_snapshot(s) for s in graph.get_state_history(config)]

        sync_history = await asyncio.to_thread(run_sync)
        assert sync_history == await _history(graph, config)
        assert (await graph.aget_state(config)).values["summary"].endswith("done after 2 tools | 6 messages")


async def test_sync_invoke_on_the_store_loop_says_to_use_the_async_api(tmp_path: Any) -> None:
    async with sessiondb.open_store(tmp_path / "store") as store:
        graph = build().compile(checkpointer=SessionDBSaver(store))
        with pytest.raises(sessiondb.StoreLoopError, match="ainvoke"):
            graph.invoke({"messages": []}, {"configurable": {"thread_id": "x"}})
        assert threading.current_thread() is threading.main_thread()


async def test_copy_thread_is_a_fork_without_copies(tmp_path: Any) -> None:
    async with sessiondb.open_store(tmp_path / "store") as store:
        saver = SessionDBSaver(store)
        graph = build().compile(checkpointer=saver)
        source = {"configurable": {"thread_id": "source"}}
        await graph.ainvoke({"messages": [{"role": "user", "content": "hi"}]}, source)
        before = store.statistics()["log_bytes"]
        await saver.acopy_thread("source", "copy")
        grown = store.statistics()["log_bytes"] - before
        assert grown < 1_000  # one SessionStarted, not the history
        copy = {"configurable": {"thread_id": "copy"}}
        assert await _history(graph, copy) == await _history(graph, source)
        await graph.ainvoke(Command(resume="yes"), copy)  # the copy goes its own way
        assert len(await _history(graph, copy)) > len(await _history(graph, source))
