"""OpenAI Agents SDK sessions: `SQLiteSession` and `AdvancedSQLiteSession` on one database file."""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

from benchmarks.records import Record
from benchmarks.systems.base import NotSupported, System
from benchmarks.systems.sqlite_settings import sqlite_settings


def to_items(record: Record, index: int) -> list[dict[str, Any]]:
    """The Responses-API items an agent run adds for one message."""
    if record.role == "user":
        return [{"role": "user", "content": record.text}]
    if record.role == "tool":
        return [{"type": "function_call_output", "call_id": record.tool_use_id, "output": record.output}]
    items: list[dict[str, Any]] = []
    if record.thinking:
        items.append(
            {"type": "reasoning", "id": f"rs_{index}", "summary": [{"type": "summary_text", "text": record.thinking}]}
        )
    if record.text:
        items.append(
            {
                "type": "message",
                "id": f"msg_{index}",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": record.text, "annotations": []}],
            }
        )
    items.extend(
        {
            "type": "function_call",
            "id": f"fc_{c.id}",
            "call_id": c.id,
            "name": c.name,
            "arguments": c.input,
            "status": "completed",
        }
        for c in record.tool_calls
    )
    return items


class OpenAISQLiteSystem(System):
    advanced = False

    def prepare(self, script: Sequence[Record]) -> None:
        # Import before any clock starts: importing the SDK takes seconds.
        from agents import SQLiteSession
        from agents.extensions.memory import AdvancedSQLiteSession

        self.classes = (SQLiteSession, AdvancedSQLiteSession)
        self.items = [to_items(r, i) for i, r in enumerate(script)]

    def _session(self, key: str) -> Any:
        if self.advanced:
            return self.classes[1](session_id=key, db_path=self.path, create_tables=True)
        return self.classes[0](key, self.path)

    async def open(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "agents.db"

    async def close(self) -> None:
        pass

    async def new_session(self, key: str) -> Any:
        # One session object per conversation, as the SDK's examples do.
        return self._session(key)

    async def end_session(self, handle: Any) -> None:
        handle.close()

    async def append(self, handle: Any, index: int) -> None:
        await handle.add_items(self.items[index])

    async def bulk_append(self, handle: Any, indexes: Sequence[int]) -> None:
        for start in range(0, len(indexes), 1000):
            await handle.add_items([item for i in indexes[start : start + 1000] for item in self.items[i]])

    async def load(self, key: str) -> int:
        session = self._session(key)
        try:
            return len(await session.get_items())
        finally:
            session.close()

    async def list_sessions(self) -> int:
        raise NotSupported("the SDK has no API to list sessions")

    def settings(self) -> dict[str, Any]:
        settings = sqlite_settings(self.path) if self.path.exists() else {}
        settings["openai-agents"] = version("openai-agents")
        settings["durability"] = "SDK defaults: WAL, synchronous not set (SQLite default), one commit per add_items"
        return settings


class OpenAIAdvancedSystem(OpenAISQLiteSystem):
    advanced = True
