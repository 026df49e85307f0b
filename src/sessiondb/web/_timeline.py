"""A session's recorded events as what a person reads: entries, tool calls beside results, compactions, turns.

Pure functions of the events (no store, no HTML): the app and the HTML export both
build a ``Timeline`` and hand it to the templates, which escape every string.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .._backends._base import SessionInfo, apply_to_info
from .._counts import describe
from .._events import (
    LABEL_EVENT_TYPES,
    Compacted,
    Custom,
    Message,
    PinChanged,
    PromptRecorded,
    RecordedEvent,
    SessionDeleted,
    SessionStarted,
    TagsChanged,
    Text,
    Thinking,
    TitleChanged,
    ToolResult,
    ToolUse,
    Usage,
)
from .._gcpause import gc_paused
from .._projection import is_continuation_message
from ._entry import entry_for
from ._integrations import custom_entries
from ._model import Entry, Timeline, ToolCall, Turn

# Removed messages rendered inside one compaction's fold; past this the rest is a link to the history.
MAX_REMOVED_SHOWN = 200


def message_entry(recorded: RecordedEvent, message: Message, owner: str, source: str = "") -> Entry:
    parts: list[tuple[str, object]] = []
    for block in message.blocks:
        if type(block) is Text:
            parts.append(("text", block.text))
        elif type(block) is Thinking:
            parts.append(("thinking", block.thinking))
        elif type(block) is ToolUse:
            parts.append(("call", ToolCall(block.id, block.name, block.input)))
        elif type(block) is ToolResult:
            parts.append(("result", block))
    role = "summary" if is_continuation_message(message) else message.role
    return entry_for(recorded, owner, "message", role=role, parts=parts, usage=message.usage, source=source)


def entries_of(recorded: RecordedEvent, owner: str, seen: set[str] | None = None) -> list[Entry]:
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
    if kind is TitleChanged:
        assert isinstance(event, TitleChanged)
        text = f"title set to \u201c{event.title}\u201d" if event.title is not None else "title cleared"
        return [Entry("label", *base, text=text, inherited=inherited)]
    if kind is TagsChanged:
        assert isinstance(event, TagsChanged)
        changes = [f"+{tag}" for tag in event.added] + [f"\u2212{tag}" for tag in event.removed]
        return [Entry("label", *base, text="tags " + " ".join(changes), inherited=inherited)]
    if kind is PinChanged:
        assert isinstance(event, PinChanged)
        return [Entry("label", *base, text="pinned" if event.pinned else "unpinned", inherited=inherited)]
    if kind is Custom:
        assert isinstance(event, Custom)
        return custom_entries(recorded, event, owner, seen if seen is not None else set())
    # An event type this viewer does not know (from a newer sessiondb): its tag, never a failed page.
    return [Entry("notice", *base, text=type(event).__name__, inherited=inherited)]


def pair_tools(
    entries: Sequence[Entry], pending: dict[str, ToolCall] | None = None, late: list[ToolCall] | None = None
) -> list[Entry]:
    """Put each tool result beside its call; drop tool messages all of whose results found their call.

    ``pending``: calls still waiting for a result, by id, kept across calls (the live tail
    keeps one per stream, starting with the calls its page shows without a result); a
    call leaves it when its result arrives. ``late``: where a result whose call came
    from an earlier call of this function goes (the live tail sends those to the call's place).
    """
    calls: dict[str, ToolCall] = {} if pending is None else pending
    new: set[str] = set()
    kept: list[Entry] = []
    for entry in entries:
        if entry.kind == "compaction":
            entry.removed = pair_tools(entry.removed)
        if entry.kind != "message":
            kept.append(entry)
            continue
        parts: list[tuple[str, object]] = []
        for part in entry.parts:
            kind, value = part
            if kind == "call":
                assert isinstance(value, ToolCall)
                calls[value.id] = value
                new.add(value.id)
            elif kind == "result":
                assert isinstance(value, ToolResult)
                call = calls.pop(value.tool_use_id, None)
                if call is not None and call.result is None:
                    call.result = value
                    call.result_version = entry.version
                    if late is not None and value.tool_use_id not in new:
                        late.append(call)
                    continue
            parts.append(part)
        if parts or not entry.parts or entry.usage is not None:
            entry.parts = parts
            kept.append(entry)
    return kept


def pending_calls(timeline: Timeline) -> dict[str, ToolCall]:
    """The calls a page shows without a result, by id (where a live result goes)."""
    return {
        value.id: value
        for turn in timeline.turns
        for entry in turn.entries
        for kind, value in entry.parts
        if kind == "call" and isinstance(value, ToolCall) and value.result is None
    }


# A message not yet turned into an Entry: only the entries of the page shown are built.
_Item = Entry | RecordedEvent


def _is_summary(item: _Item) -> bool:
    if type(item) is RecordedEvent:
        return is_continuation_message(item.event)  # type: ignore[arg-type]
    return item.role == "summary"  # type: ignore[union-attr]


def _fold_compactions(items: list[_Item]) -> tuple[list[_Item], dict[int, list[_Item]]]:
    """Move the messages each compaction removed from the live context behind its summary.

    The live context is replayed here as ``_projection.apply_compaction`` does: a
    compaction removes ``removed_message_count`` messages after a leading summary.
    Returns the top-level items and, per compaction entry (by ``id``), what it removed.
    """
    live: list[_Item] = []  # the live context's messages
    removed_by: dict[int, list[_Item]] = {}
    removed_ids: set[int] = set()
    for item in items:
        if type(item) is RecordedEvent:
            live.append(item)
            continue
        entry: Entry = item  # type: ignore[assignment]
        if entry.kind == "message":
            live.append(entry)
        elif entry.kind == "compaction" and not entry.detail:
            prefix = 1 if live and _is_summary(live[0]) else 0
            removed = live[prefix : prefix + entry.removed_count]
            removed_by[id(entry)] = removed[:MAX_REMOVED_SHOWN]
            if removed:
                entry.removed_versions = (removed[0].version, removed[-1].version)
            removed_ids.update(id(gone) for gone in removed)
            # The summary message the store writes into the context is this entry itself.
            live = [entry, *live[prefix + entry.removed_count :]]
            entry.role = "summary"
    out: list[_Item] = []
    for item in items:
        if id(item) in removed_ids:
            continue
        follows_compaction = out and type(out[-1]) is Entry and out[-1].kind == "compaction"
        if follows_compaction and type(item) is RecordedEvent and _is_summary(item):
            continue  # a continuation message written right after its compaction event (imports)
        out.append(item)
    return out, removed_by


def _built(items: Sequence[_Item], removed_by: dict[int, list[_Item]], owner: str) -> list[Entry]:
    entries: list[Entry] = []
    for item in items:
        if type(item) is RecordedEvent:
            entries.append(message_entry(item, item.event, owner))  # type: ignore[arg-type]
            continue
        entry: Entry = item  # type: ignore[assignment]
        removed = removed_by.get(id(entry))
        if removed is not None:
            entry.removed = _built(removed, removed_by, owner)
        entries.append(entry)
    return entries


def _is_user(item: _Item) -> bool:
    """Whether ``item`` starts a turn: a user's message (a continuation summary is not one)."""
    if type(item) is RecordedEvent:
        event = item.event
        return type(event) is Message and event.role == "user" and not is_continuation_message(event)
    return item.kind == "message" and item.role == "user"  # type: ignore[union-attr]


def _turns(entries: Sequence[Entry], earlier: int) -> list[Turn]:
    """Entries grouped in turns, numbered from 1 by the user messages they start with.

    ``earlier``: the turns begun on earlier pages (the page's first entries continue the last
    of them). What comes before the first user message (the session's start) is turn 0, not
    counted, so the first conversation turn is turn 1 whatever the session's kind.
    """
    turns: list[Turn] = []
    current: Turn | None = None
    number = earlier
    for entry in entries:
        if current is None or _is_user(entry):
            if _is_user(entry):
                number += 1
            current = Turn(number, [], Usage())
            turns.append(current)
        current.entries.append(entry)
        if entry.usage is not None:
            current.usage = current.usage + entry.usage
    return turns


class Labels:
    """A session's title, tags and pin, folded from its label events as ``_backends._base.apply_label`` does."""

    __slots__ = ("pinned", "tags", "title")

    def __init__(self) -> None:
        self.title: str | None = None
        self.tags: set[str] = set()
        self.pinned = False

    def apply(self, event: object) -> None:
        if type(event) is TitleChanged:
            self.title = event.title
        elif type(event) is TagsChanged:
            self.tags.difference_update(event.removed)
            self.tags.update(event.added)
        elif type(event) is PinChanged:
            self.pinned = event.pinned


def build_timeline(
    session_id: str,
    events: Iterable[RecordedEvent],
    *,
    version: int,
    page: int | None = None,
    page_size: int | None = None,
    floor: int = 0,
    before: Sequence[Message] | None = None,
    seen: set[str] | None = None,
    summary: SessionInfo | None = None,
) -> Timeline:
    """The timeline of ``events`` (a session's history up to ``version``), paged by top-level entry.

    ``page`` counts from 1; None means the last page. ``page_size`` None shows everything.
    A ``page`` past the last is clamped to the last. ``floor`` > 0: the events start after
    it (retention removed the rest) and ``before`` is the live context there (a snapshot's).
    ``seen`` receives the ids of the integration messages shown (the live tail goes on from them).
    ``summary``: the store's summary of the session; at its version, its counts are the ones shown
    (what the session list shows, whatever retention removed), else they are folded from ``events``.
    """
    # Synchronous and cycle-free: the collector would rescan every decoded event per full pass.
    with gc_paused():
        timeline = _build(session_id, events, version, page, page_size, floor, before, set() if seen is None else seen)
    if summary is not None and summary.version == version:
        timeline.live_messages = summary.message_count
        timeline.contents = describe(
            summary.message_count, summary.item_count, summary.checkpoint_count, scope=summary.scope
        )
    return timeline


def _build(
    session_id: str,
    events: Iterable[RecordedEvent],
    version: int,
    page: int | None,
    page_size: int | None,
    floor: int,
    before: Sequence[Message] | None,
    seen: set[str],
) -> Timeline:
    items: list[_Item] = []
    if floor:
        retained = Entry("retention", floor, session_id, 0, removed_count=len(before or ()))
        if before is not None:
            retained.removed = [
                message_entry(RecordedEvent(session_id, floor, 0, 0, message), message, session_id)
                for message in before[:MAX_REMOVED_SHOWN]
            ]
        items.append(retained)
    usage = [0, 0, 0, 0]
    # Usage the integrations' messages report (not Message events, so not in the store's token totals):
    # the page totals it with the rest, as its turns show it, and says how much of it is this.
    reported = Usage()
    messages = compactions = 0
    labels = Labels()
    # The summary as the backends fold it (from the live context at the floor when retention cut the history).
    counts = SessionInfo(session_id, message_count=len(before or ()))
    counts.compacted = bool(before) and is_continuation_message(before[0])  # type: ignore[index]
    # ``seen``: ids of integration messages already shown (LangGraph checkpoints repeat them).
    for recorded in events:
        event = recorded.event
        apply_to_info(counts, event, recorded.version, recorded.timestamp_ms)
        if type(event) in LABEL_EVENT_TYPES and recorded.session_id == session_id:
            labels.apply(event)  # a fork starts without its parent's labels (docs/labels.md)
        if type(event) is Message:
            messages += 1
            if event.usage is not None:
                usage[0] += event.usage.input_tokens
                usage[1] += event.usage.output_tokens
                usage[2] += event.usage.cache_creation_input_tokens
                usage[3] += event.usage.cache_read_input_tokens
            items.append(recorded)
            continue
        if type(event) is Compacted:
            compactions += 1
        for entry in entries_of(recorded, session_id, seen):
            if entry.usage is not None:  # an integration's message (LangGraph's usage_metadata): its turn shows it
                reported = reported + entry.usage
            items.append(entry)
    top, removed_by = _fold_compactions(items)
    total = len(top)
    if page_size is None or total <= page_size:
        pages, number, shown, start = 1, 1, top, 0
    else:
        pages = -(-total // page_size)
        number = pages if page is None else max(1, min(page, pages))
        start = (number - 1) * page_size
        shown = top[start : start + page_size]
    earlier = sum(1 for item in top[:start] if _is_user(item))
    return Timeline(
        session_id,
        version,
        _turns(pair_tools(_built(shown, removed_by, session_id)), earlier),
        Usage(*usage) + reported,
        messages,
        compactions,
        number,
        pages,
        total,
        labels.title,
        tuple(sorted(labels.tags)),
        labels.pinned,
        describe(counts.message_count, counts.item_count, counts.checkpoint_count, scope=counts.scope),
        counts.message_count,
        reported,
    )


__all__ = [
    "MAX_REMOVED_SHOWN",
    "Entry",
    "Timeline",
    "ToolCall",
    "Turn",
    "build_timeline",
    "entries_of",
    "pair_tools",
    "pending_calls",
    "message_entry",
]
