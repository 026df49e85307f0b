"""One adapter per benchmarked system, all behind the `System` interface of `base`."""

from __future__ import annotations

from benchmarks.systems.base import System

# name -> (module, class); imported lazily in the child so a missing peer only skips its rows.
SYSTEMS: dict[str, tuple[str, str]] = {
    "sessiondb": ("benchmarks.systems.sessiondb_store", "SessionDBSystem"),
    "sessiondb-uvloop": ("benchmarks.systems.sessiondb_store", "SessionDBSystem"),
    "raw": ("benchmarks.systems.raw", "RawSystem"),
    "raw-uvloop": ("benchmarks.systems.raw", "RawSystem"),
    "naive": ("benchmarks.systems.naive", "NaiveSystem"),
    "openai-sqlite": ("benchmarks.systems.openai_sqlite", "OpenAISQLiteSystem"),
    "openai-advanced": ("benchmarks.systems.openai_sqlite", "OpenAIAdvancedSystem"),
    "langgraph-sqlite": ("benchmarks.systems.langgraph_sqlite", "LangGraphSystem"),
    "adk-sqlite": ("benchmarks.systems.adk_sqlite", "ADKSystem"),
}

LABELS: dict[str, str] = {
    "sessiondb": "sessiondb (asyncio)",
    "sessiondb-uvloop": "sessiondb (uvloop)",
    "raw": "raw group-commit loop (asyncio)",
    "raw-uvloop": "raw group-commit loop (uvloop)",
    "naive": "naive file per session",
    "openai-sqlite": "OpenAI Agents SQLiteSession",
    "openai-advanced": "OpenAI Agents AdvancedSQLiteSession",
    "langgraph-sqlite": "LangGraph AsyncSqliteSaver",
    "adk-sqlite": "Google ADK DatabaseSessionService (SQLite)",
}


def load_system(name: str) -> System:
    import importlib

    module_name, class_name = SYSTEMS[name]
    cls = getattr(importlib.import_module(module_name), class_name)
    system: System = cls(name)
    return system


__all__ = ["LABELS", "SYSTEMS", "System", "load_system"]
