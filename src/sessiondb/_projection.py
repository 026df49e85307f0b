"""Projections: pure folds of recorded events into state; the built-in one builds ``Session``."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

import msgspec

from ._counts import COUNTED, apply_count
from ._events import (
    Compacted,
    Custom,
    Fork,
    Message,
    PinChanged,
    PromptRecorded,
    RecordedEvent,
    SessionDeleted,
    SessionStarted,
    TagsChanged,
    Text,
    TitleChanged,
    Usage,
)

# Upstream's continuation message, so a compacted context reads the same to a model.
CONTINUATION_PREAMBLE = (
    "This session is being continued from a previous conversation that ran out of context. "
    "The summary below covers the earlier portion of the conversation.\n\n"
)
RECENT_MESSAGES_NOTE = "Recent messages are preserved verbatim."


class CompactionInfo(msgspec.Struct, frozen=True, gc=False):
    """The latest conversation compaction: how many so far, what it removed, its summary."""

    count: int
    removed_message_count: int
    summary: str


class PromptEntry(msgspec.Struct, frozen=True, gc=False):
    """One entry of the prompt history."""

    timestamp_ms: int
    text: str


class Session(msgspec.Struct, gc=False):
    """A session's state: the projection of its events up to ``version``.

    ``messages`` is the live context: after a conversation compaction, the
    summary as one system message followed by the kept messages. The full
    history stays readable through ``Store.read`` and ``Store.load(at_version=...)``.
    """

    session_id: str
    created_at_ms: int = 0
    updated_at_ms: int = 0
    messages: list[Message] = msgspec.field(default_factory=list)
    compaction: CompactionInfo | None = None
    fork: Fork | None = None
    model: str | None = None
    workspace_root: str | None = None
    prompt_history: list[PromptEntry] = msgspec.field(default_factory=list)
    usage: Usage = msgspec.field(default_factory=Usage)
    version: int = 0
    # Labels as of ``version`` (time travel shows the title and tags a session had then).
    scope: str | None = None
    title: str | None = None
    tags: tuple[str, ...] = ()  # sorted
    pinned: bool = False
    # What the integrations keep in custom events (``_counts``): OpenAI Agents SDK live items,
    # LangGraph checkpoints written. A session of messages has none.
    item_count: int = 0
    checkpoint_count: int = 0


def continuation_message(summary: str, kept_messages: bool) -> Message:
    """The system message that stands for the removed part of a compacted conversation."""
    text = CONTINUATION_PREAMBLE + summary
    if kept_messages:
        text += "\n\n" + RECENT_MESSAGES_NOTE
    return Message.system(text)


def is_continuation_message(message: Message) -> bool:
    return (
        message.role == "system"
        and len(message.blocks) == 1
        and isinstance(message.blocks[0], Text)
        and message.blocks[0].text.startswith(CONTINUATION_PREAMBLE)
    )


def apply_compaction(messages: list[Message], event: Compacted) -> list[Message]:
    """The live context after ``event``: summary message, then the kept messages."""
    prefix = 1 if messages and is_continuation_message(messages[0]) else 0
    kept = messages[prefix + event.removed_message_count :]
    return [continuation_message(event.summary, bool(kept)), *kept]


def apply_to_session(session: Session, recorded: RecordedEvent) -> Session:
    """Fold one event into ``session`` in place and return it.

    In place because replay is the hot read path; callers own the state they pass.
    """
    event = recorded.event
    session.version = recorded.version
    session.updated_at_ms = recorded.timestamp_ms
    if type(event) is Message:
        session.messages.append(event)
        if event.usage is not None:
            session.usage = session.usage + event.usage
    elif type(event) is PromptRecorded:
        session.prompt_history.append(PromptEntry(event.timestamp_ms, event.text))
    elif type(event) is Compacted:
        if event.rewrite_context:
            session.messages = apply_compaction(session.messages, event)
        previous = session.compaction.count if session.compaction is not None else 0
        count = event.count if event.count is not None else previous + 1
        session.compaction = CompactionInfo(count, event.removed_message_count, event.summary)
    elif type(event) is SessionStarted:
        session.created_at_ms = event.created_at_ms
        if event.fork is not None:
            session.fork = event.fork
            # A fork is a session of its own: it starts unlabelled (the parent's history keeps its labels).
            session.title, session.tags, session.pinned = None, (), False
        if event.model is not None:
            session.model = event.model
        if event.workspace_root is not None:
            session.workspace_root = event.workspace_root
        session.scope = event.scope
    elif type(event) is TitleChanged:
        session.title = event.title
    elif type(event) is TagsChanged:
        tags = set(session.tags).difference(event.removed)
        tags.update(event.added)
        session.tags = tuple(sorted(tags))
    elif type(event) is PinChanged:
        session.pinned = event.pinned
    elif type(event) is Custom and event.name in COUNTED:
        apply_count(session, event.name, event.data)
    # Other custom events belong to custom projections; SessionDeleted is handled by the store.
    return session


def replay_session(session_id: str, events: Iterable[RecordedEvent], into: Session | None = None) -> Session:
    """The Session projection of ``events`` (starting from ``into`` when given)."""
    session = into if into is not None else Session(session_id)
    # Messages (the bulk of any history) are folded inline, their token counts summed as ints and
    # turned into one Usage at the end: a Usage per message (validated) cost a third of a replay.
    messages = session.messages
    tokens = [0, 0, 0, 0]
    counted = False
    for recorded in events:
        event = recorded.event
        if type(event) is Message:
            session.version = recorded.version
            session.updated_at_ms = recorded.timestamp_ms
            messages.append(event)
            usage = event.usage
            if usage is not None:
                tokens[0] += usage.input_tokens
                tokens[1] += usage.output_tokens
                tokens[2] += usage.cache_creation_input_tokens
                tokens[3] += usage.cache_read_input_tokens
                counted = True
        else:
            if counted:
                session.usage = session.usage + Usage(*tokens)
                tokens = [0, 0, 0, 0]
                counted = False
            apply_to_session(session, recorded)
            messages = session.messages  # a compaction replaces the list
    if counted:
        session.usage = session.usage + Usage(*tokens)
    session.session_id = session_id
    return session


S = TypeVar("S")


class Projection(Generic[S]):
    """A user projection: a pure fold ``fold(state, event) -> state`` from ``initial(session_id)``.

    Register it with ``Store.register_projection``; the store keeps each
    session's state current as events are appended and serves it from
    ``Store.project``. ``state_type`` lets the compactor snapshot the state
    (anything msgspec can encode and decode back into that type).
    """

    def __init__(
        self,
        name: str,
        initial: Callable[[str], S],
        fold: Callable[[S, RecordedEvent], S],
        *,
        state_type: Any = Any,
    ) -> None:
        if not name or not isinstance(name, str):
            raise ValueError("a projection needs a non-empty name")
        self.name = name
        self.initial = initial
        self.fold = fold
        self.state_type = state_type

    def replay(self, session_id: str, events: Iterable[RecordedEvent], state: S | None = None) -> S:
        current = self.initial(session_id) if state is None else state
        fold = self.fold
        for recorded in events:
            current = fold(current, recorded)
        return current

    def __repr__(self) -> str:
        return f"Projection({self.name!r})"


__all__ = [
    "CONTINUATION_PREAMBLE",
    "CompactionInfo",
    "Custom",
    "Projection",
    "PromptEntry",
    "Session",
    "SessionDeleted",
    "apply_to_session",
    "replay_session",
]
