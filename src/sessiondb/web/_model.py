"""The view model of a session page: entries, tool calls, turns, the timeline (plain dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .._events import ToolResult, Usage


@dataclass(slots=True)
class ToolCall:
    """A tool call and, when it is known, its result (``result`` None: no result recorded yet)."""

    id: str
    name: str
    input: str
    result: ToolResult | None = None
    result_version: int | None = None


@dataclass(slots=True)
class Entry:
    """One thing on the page. ``kind``: message, compaction, started, prompt, label, notice, deleted, retention.

    A message's ``parts`` are ``("text", str)``, ``("thinking", str)``, ``("call", ToolCall)``
    or ``("result", ToolResult)`` (a result whose call is not on the page). ``source``
    names the integration an entry came from (``openai_agents``, ``claude_code``).
    """

    kind: str
    version: int
    session_id: str
    timestamp_ms: int
    role: str = ""
    parts: list[tuple[str, object]] = field(default_factory=list)
    usage: Usage | None = None
    text: str = ""
    detail: str = ""
    source: str = ""
    removed: list[Entry] = field(default_factory=list)
    removed_count: int = 0
    removed_versions: tuple[int, int] | None = None
    fork_parent: str | None = None
    fork_version: int = 0
    inherited: bool = False  # recorded in a fork's parent (shared history)


@dataclass(slots=True)
class Turn:
    """A user message and what followed it, with the usage of its model calls."""

    number: int
    entries: list[Entry]
    usage: Usage


@dataclass(slots=True)
class Timeline:
    """What the session page shows: one page of turns, the totals, and how to reach the other pages.

    ``message_count`` counts the messages recorded up to ``version`` (a compaction's removed
    ones too); ``contents`` says what the session holds then, counted as its summary counts it.
    """

    session_id: str
    version: int
    turns: list[Turn]
    usage: Usage
    message_count: int
    compactions: int
    page: int
    pages: int
    total_entries: int
    # The session's labels as of ``version`` (time travel shows old titles).
    title: str | None = None
    tags: tuple[str, ...] = ()
    pinned: bool = False
    # What the session holds at ``version``, as ``sessiondb ls`` and the list say it ("12 items"):
    # the live context's messages, an OpenAI Agents session's items, a LangGraph thread's checkpoints.
    contents: str = ""
    live_messages: int = 0
    # Of ``usage``, what the integrations' messages report (a LangGraph AIMessage's usage_metadata): their
    # turns show it, but it is not on Message events, so the store's totals (``ls`` TOKENS) leave it out.
    reported_usage: Usage = field(default_factory=Usage)


__all__ = ["Entry", "Timeline", "ToolCall", "Turn"]
