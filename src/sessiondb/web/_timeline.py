"""A session's recorded events as what a person reads: entries, tool calls beside results, compactions, turns.

Pure functions of the events (no store, no HTML): the app and the HTML export both
build a ``Timeline`` and hand it to the templates, which escape every string.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from .._events import (
    Compacted,
    Custom,
    Message,
    PromptRecorded,
    RecordedEvent,
    SessionDeleted,
    SessionStarted,
    Text,
    Thinking,
    ToolResult,
    ToolUse,
    Usage,
)
from .._projection import is_continuation_message
from ._integrations import custom_entries
from ._model import Entry, Timeline, ToolCall, Turn

# Removed messages rendered inside one compaction's fold; past this the rest is a link to the history.
MAX_REMOVED_SHOWN = 200


def _tool_use_input(raw: str) -> str:
    """A tool input as indented JSON when it is JSON (it is stored as a JSON string), else as given."""
    try:
        return json.dumps(json.loads(raw), indent=2, ensure_ascii=False)
    except ValueError:
        return raw


def message_entry(recorded: RecordedEvent, message: Message, owner: str, source: str = "") -> Entry:
    parts: list[tuple[str, object]] = []
    for block in message.blocks:
        if type(block) is Text:
            parts.append(("text", block.text))
        elif type(block) is Thinking:
            parts.append(("thinking", block.thinking))
        elif type(block) is ToolUse:
            parts.append(("call", ToolCall(block.id, block.name, _tool_use_input(block.input))))
        elif type(block) is ToolResult:
            parts.append(("result", block))
    return Entry(
        "message",
        recorded.version,
        recorded.session_id,
        recorded.timestamp_ms,
        role="summary" if is_continuation_message(message) else message.role,
        parts=parts,
        usage=message.usage,
        source=source,
        inherited=recorded.session_id != owner,
    )


def entries_of(recorded: RecordedEvent, owner: str) -> list[Entry]:
    """The entries one recorded event shows as (none for events only an integration's bookkeeping needs)."""
    event = recorded.event
    kind = type(event)
    base = (recorded.version, recorded.session_id, recorded.timestamp_ms)
    inherited = recorded.session_id != owner
    if kind is Message:
        assert isinstance(event, Message)
        return [message_entry(recorded, event, owner)]
    if kind is Compacted:
        assert isinstance(event, Compacted)
        return [
            Entry(
                "compaction",
                *base,
                text=event.summary,
                removed_count=event.removed_message_count,
                detail="" if event.rewrite_context else "recorded only (the messages already hold the new context)",
                inherited=inherited,
            )
        ]
    if kind is SessionStarted:
        assert isinstance(event, SessionStarted)
        fork = event.fork
        entry = Entry("started", *base, text=event.model or "", detail=event.workspace_root or "", inherited=inherited)
        if fork is not None:
            entry.fork_parent = fork.parent_session_id
            entry.fork_version = fork.parent_version
        return [entry]
    if kind is PromptRecorded:
        assert isinstance(event, PromptRecorded)
        return [Entry("prompt", *base, text=event.text, inherited=inherited)]
    if kind is SessionDeleted:
        return [Entry("deleted", *base, inherited=inherited)]
    assert isinstance(event, Custom)
    return custom_entries(recorded, event, owner)


def _pair_tools(entries: Sequence[Entry]) -> list[Entry]:
    """Put each tool result beside its call; drop tool messages all of whose results found their call."""
    calls: dict[str, ToolCall] = {}
    kept: list[Entry] = []
    for entry in entries:
        if entry.kind == "compaction":
            entry.removed = _pair_tools(entry.removed)
        if entry.kind != "message":
            kept.append(entry)
            continue
        parts: list[tuple[str, object]] = []
        for part in entry.parts:
            kind, value = part
            if kind == "call":
                assert isinstance(value, ToolCall)
                calls[value.id] = value
            elif kind == "result":
                assert isinstance(value, ToolResult)
                call = calls.get(value.tool_use_id)
                if call is not None and call.result is None:
                    call.result = value
                    call.result_version = entry.version
                    continue
            parts.append(part)
        if parts or not entry.parts or entry.usage is not None:
            entry.parts = parts
            kept.append(entry)
    return kept


def _fold_compactions(entries: list[Entry]) -> list[Entry]:
    """Move the messages each compaction removed from the live context behind its summary.

    The live context is replayed here as ``_projection.apply_compaction`` does: a
    compaction removes ``removed_message_count`` messages after a leading summary.
    """
    live: list[Entry] = []  # the live context's messages, as entries
    removed_ids: set[int] = set()
    for entry in entries:
        if entry.kind == "message":
            live.append(entry)
        elif entry.kind == "compaction" and not entry.detail:
            prefix = 1 if live and live[0].role == "summary" else 0
            removed = live[prefix : prefix + entry.removed_count]
            entry.removed = removed[:MAX_REMOVED_SHOWN]
            if removed:
                entry.removed_versions = (removed[0].version, removed[-1].version)
            removed_ids.update(id(item) for item in removed)
            # The summary message the store writes into the context is this entry itself.
            live = [entry, *live[prefix + entry.removed_count :]]
            entry.role = "summary"
    out: list[Entry] = []
    for entry in entries:
        if id(entry) in removed_ids:
            continue
        if entry.kind == "message" and entry.role == "summary" and out and out[-1].kind == "compaction":
            continue  # a continuation message written right after its compaction event (imports)
        out.append(entry)
    return out


def _turns(entries: Sequence[Entry]) -> list[Turn]:
    turns: list[Turn] = []
    current: Turn | None = None
    for entry in entries:
        if current is None or (entry.kind == "message" and entry.role == "user"):
            current = Turn(len(turns) + 1, [], Usage())
            turns.append(current)
        current.entries.append(entry)
        if entry.usage is not None:
            current.usage = current.usage + entry.usage
    return turns


def build_timeline(
    session_id: str,
    events: Iterable[RecordedEvent],
    *,
    version: int,
    page: int | None = None,
    page_size: int | None = None,
) -> Timeline:
    """The timeline of ``events`` (a session's history up to ``version``), paged by top-level entry.

    ``page`` counts from 1; None means the last page. ``page_size`` None shows everything.
    A ``page`` past the last is clamped to the last.
    """
    entries: list[Entry] = []
    usage = [0, 0, 0, 0]
    messages = compactions = 0
    for recorded in events:
        event = recorded.event
        if type(event) is Message:
            messages += 1
            if event.usage is not None:
                usage[0] += event.usage.input_tokens
                usage[1] += event.usage.output_tokens
                usage[2] += event.usage.cache_creation_input_tokens
                usage[3] += event.usage.cache_read_input_tokens
        elif type(event) is Compacted:
            compactions += 1
        entries.extend(entries_of(recorded, session_id))
    top = _fold_compactions(entries)
    total = len(top)
    if page_size is None or total <= page_size:
        pages, number, shown = 1, 1, top
    else:
        pages = -(-total // page_size)
        number = pages if page is None else max(1, min(page, pages))
        shown = top[(number - 1) * page_size : number * page_size]
    return Timeline(
        session_id,
        version,
        _turns(_pair_tools(shown)),
        Usage(*usage),
        messages,
        compactions,
        number,
        pages,
        total,
    )


__all__ = [
    "MAX_REMOVED_SHOWN",
    "Entry",
    "Timeline",
    "ToolCall",
    "Turn",
    "build_timeline",
    "entries_of",
    "message_entry",
]
