"""sessiondb's local store: `Store.append` per message, `Store.load` to resume, `list_sessions`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sessiondb
from benchmarks.records import Record
from benchmarks.systems.base import System
from sessiondb import Message, Text, Thinking, ToolUse, Usage


def to_message(record: Record) -> Message:
    if record.role == "user":
        return Message.user(record.text)
    if record.role == "tool":
        return Message.tool_result(record.tool_use_id, record.tool_name, record.output, is_error=record.is_error)
    blocks: list[Any] = [Thinking(record.thinking)] if record.thinking else []
    if record.text:
        blocks.append(Text(record.text))
    blocks.extend(ToolUse(id=c.id, name=c.name, input=c.input) for c in record.tool_calls)
    return Message.assistant(blocks, usage=Usage(input_tokens=record.input_tokens, output_tokens=record.output_tokens))


class SessionDBSystem(System):
    def prepare(self, script: Sequence[Record]) -> None:
        # Imports happen before any clock starts, for every system: anyio imports its
        # asyncio backend lazily on the first thread hop (~50 ms in a fresh process).
        import anyio._backends._asyncio  # noqa: F401

        self.messages = [to_message(r) for r in script]

    async def open(self, directory: Path) -> None:
        self.store = sessiondb.open_store(directory / "store")
        await self.store.start()

    async def close(self) -> None:
        await self.store.aclose()

    async def new_session(self, key: str) -> str:
        return await self.store.create_session(session_id=key, model="bench-model", workspace_root="/repo")

    async def append(self, handle: str, index: int) -> None:
        await self.store.append(handle, self.messages[index])

    async def bulk_append(self, handle: str, indexes: Sequence[int]) -> None:
        for start in range(0, len(indexes), 500):
            await self.store.append(handle, *(self.messages[i] for i in indexes[start : start + 500]))

    async def load(self, key: str) -> int:
        session = await self.store.load(key)
        return len(session.messages)

    async def list_sessions(self) -> int:
        return len(await self.store.list_sessions())

    def settings(self) -> dict[str, Any]:
        return {
            "durability": "one shared segmented log; group commit: one write + one fdatasync per batch, "
            "append returns after the fdatasync",
            "version": sessiondb.__version__ if hasattr(sessiondb, "__version__") else "dev",
        }
