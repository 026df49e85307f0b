"""LangGraph's `AsyncSqliteSaver`: one checkpoint holding the whole conversation per step."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

import msgspec

from benchmarks.records import Record
from benchmarks.systems.base import System
from benchmarks.systems.sessiondb_store import to_message
from benchmarks.systems.sqlite_settings import sqlite_settings


class LangGraphSystem(System):
    def prepare(self, script: Sequence[Record]) -> None:
        # Plain dicts as messages: cheaper to serialise than langchain message objects.
        self.messages = [msgspec.to_builtins(to_message(r)) for r in script]
        # Import before any clock starts.
        from langgraph.checkpoint.base import empty_checkpoint
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        self.saver_class = AsyncSqliteSaver
        self.empty_checkpoint = empty_checkpoint

    async def open(self, directory: Path) -> None:
        AsyncSqliteSaver = self.saver_class
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "checkpoints.db"
        self.stack = contextlib.AsyncExitStack()
        # One saver (one connection) per application, as a compiled graph uses it.
        self.saver = await self.stack.enter_async_context(AsyncSqliteSaver.from_conn_string(str(self.path)))
        await self.saver.setup()

    async def close(self) -> None:
        await self.stack.aclose()

    async def new_session(self, key: str) -> dict[str, Any]:
        return {"thread": key, "messages": [], "parent": None, "step": 0}

    async def _put(self, handle: dict[str, Any]) -> None:
        handle["step"] += 1
        checkpoint = self.empty_checkpoint()
        checkpoint["channel_values"] = {"messages": list(handle["messages"])}
        checkpoint["channel_versions"] = {"messages": handle["step"]}
        config: dict[str, Any] = {"configurable": {"thread_id": handle["thread"], "checkpoint_ns": ""}}
        if handle["parent"] is not None:
            config["configurable"]["checkpoint_id"] = handle["parent"]
        result = await self.saver.aput(
            config,  # type: ignore[arg-type]
            checkpoint,
            {"source": "loop", "step": handle["step"], "parents": {}},
            {"messages": handle["step"]},
        )
        handle["parent"] = result["configurable"]["checkpoint_id"]

    async def append(self, handle: dict[str, Any], index: int) -> None:
        handle["messages"].append(self.messages[index])
        await self._put(handle)

    async def bulk_append(self, handle: dict[str, Any], indexes: Sequence[int]) -> None:
        # One checkpoint holding all messages (a real thread would also keep its earlier
        # checkpoints; resuming reads only the latest, so they are left out to save time).
        handle["messages"].extend(self.messages[i] for i in indexes)
        await self._put(handle)

    async def load(self, key: str) -> int:
        found = await self.saver.aget_tuple({"configurable": {"thread_id": key, "checkpoint_ns": ""}})
        assert found is not None, key
        return len(found.checkpoint["channel_values"]["messages"])

    async def list_sessions(self) -> int:
        # The saver has no list-threads API: list every checkpoint and collect thread ids.
        threads = set()
        async for item in self.saver.alist(None):
            threads.add(item.config["configurable"]["thread_id"])
        return len(threads)

    def burst_supported(self) -> str | None:
        return "a graph writes one checkpoint per step; many events of one step land in one checkpoint"

    def settings(self) -> dict[str, Any]:
        settings = sqlite_settings(self.path)
        settings["langgraph-checkpoint-sqlite"] = version("langgraph-checkpoint-sqlite")
        settings["durability"] = "saver defaults (WAL set by setup(), synchronous not set), one commit per aput"
        return settings
