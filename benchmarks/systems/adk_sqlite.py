"""Google ADK's `DatabaseSessionService` on a SQLite file (aiosqlite), `append_event` per event."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC
from importlib.metadata import version
from pathlib import Path
from typing import Any

from benchmarks.records import Record
from benchmarks.systems.base import System
from benchmarks.systems.sqlite_settings import sqlite_settings

APP = "bench"
USER = "user"


def to_event(record: Record) -> Any:
    from google.adk.events import Event
    from google.genai import types

    if record.role == "user":
        return Event(
            author="user", invocation_id="inv", content=types.Content(role="user", parts=[types.Part(text=record.text)])
        )
    if record.role == "tool":
        part = types.Part(
            function_response=types.FunctionResponse(
                id=record.tool_use_id,
                name=record.tool_name,
                response={"output": record.output, "is_error": record.is_error},
            )
        )
        return Event(author="agent", invocation_id="inv", content=types.Content(role="user", parts=[part]))
    parts = [types.Part(text=record.thinking, thought=True)] if record.thinking else []
    if record.text:
        parts.append(types.Part(text=record.text))
    parts.extend(
        types.Part(function_call=types.FunctionCall(id=c.id, name=c.name, args={"input": c.input}))
        for c in record.tool_calls
    )
    usage = types.GenerateContentResponseUsageMetadata(
        prompt_token_count=record.input_tokens, candidates_token_count=record.output_tokens
    )
    return Event(
        author="agent",
        invocation_id="inv",
        content=types.Content(role="model", parts=parts),
        usage_metadata=usage,
    )


class ADKSystem(System):
    def prepare(self, script: Sequence[Record]) -> None:
        # Import before any clock starts: importing ADK takes seconds.
        from google.adk.events import Event
        from google.adk.sessions import DatabaseSessionService

        self.service_class = DatabaseSessionService
        self.new_id = Event.new_id
        self.events = [to_event(r) for r in script]

    async def open(self, directory: Path) -> None:
        DatabaseSessionService = self.service_class
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "adk.db"
        self.service = DatabaseSessionService(db_url=f"sqlite+aiosqlite:///{self.path}")

    async def close(self) -> None:
        await self.service.close()

    async def new_session(self, key: str) -> Any:
        return await self.service.create_session(app_name=APP, user_id=USER, session_id=key)

    def _fresh(self, index: int) -> Any:
        # Every stored event needs its own id and timestamp, as a runner gives it.
        return self.events[index].model_copy(update={"id": self.new_id(), "timestamp": time.time()})

    async def append(self, handle: Any, index: int) -> None:
        await self.service.append_event(handle, self._fresh(index))

    async def bulk_append(self, handle: Any, indexes: Sequence[int]) -> None:
        # append_event commits (and syncs) once per event: ~100,000 of them would take many
        # minutes. Preparation is untimed, so add the rows ADK's append_event would add,
        # built by ADK's own StorageEvent.from_event, in one transaction per 5,000.
        schema = self.service._get_schema_classes()
        for start in range(0, len(indexes), 5000):
            async with self.service._rollback_on_exception_session() as sql_session:
                for i in indexes[start : start + 5000]:
                    sql_session.add(schema.StorageEvent.from_event(handle, self._fresh(i)))
                await sql_session.commit()

    async def populate(self, keys: Sequence[str], script_size: int) -> None:
        # create_session commits once per session (~90/s here) and concurrent ones hit
        # "database is locked". Preparation is untimed: create the first session through
        # the API (it also creates the app and user state rows), then add the same
        # StorageSession rows create_session adds, 5,000 per transaction. list_sessions
        # reads session rows only, so these sessions get no events.
        from datetime import datetime

        await self.service.create_session(app_name=APP, user_id=USER, session_id=keys[0])
        schema = self.service._get_schema_classes()
        for start in range(1, len(keys), 5000):
            async with self.service._rollback_on_exception_session() as sql_session:
                for key in keys[start : start + 5000]:
                    now = datetime.now(UTC)
                    if self.service._uses_naive_datetime():
                        now = now.replace(tzinfo=None)
                    sql_session.add(
                        schema.StorageSession(
                            app_name=APP, user_id=USER, id=key, state={}, create_time=now, update_time=now
                        )
                    )
                await sql_session.commit()

    async def load(self, key: str) -> int:
        session = await self.service.get_session(app_name=APP, user_id=USER, session_id=key)
        assert session is not None, key
        return len(session.events)

    async def list_sessions(self) -> int:
        response = await self.service.list_sessions(app_name=APP, user_id=USER)
        return len(response.sessions)

    def settings(self) -> dict[str, Any]:
        settings = sqlite_settings(self.path)
        settings["google-adk"] = version("google-adk")
        settings["durability"] = "ADK defaults: SQLAlchemy + aiosqlite, one transaction per append_event"
        return settings
