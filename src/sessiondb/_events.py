"""The event and message model: msgspec structs with explicit, stable wire tags.

Tags and field names are the on-disk format. Never rename one; evolve by adding
fields with defaults. ``__post_init__`` validates types, so a bad value fails
both when a user builds an event and when a stored one is decoded.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from ._errors import InvalidInputError
from ._labels import check_scope, check_tags, check_title

Role = Literal["system", "user", "assistant", "tool"]
ROLES: frozenset[str] = frozenset(("system", "user", "assistant", "tool"))
_U32_MAX = 2**32 - 1
_I64_MAX = 2**63 - 1


def _require_str(owner: str, field: str, value: object) -> None:
    if type(value) is not str:
        raise InvalidInputError(f"{owner}.{field} must be a str, got {type(value).__name__}")


def _require_optional_str(owner: str, field: str, value: object) -> None:
    if value is not None and type(value) is not str:
        raise InvalidInputError(f"{owner}.{field} must be a str or None, got {type(value).__name__}")


def _require_count(owner: str, field: str, value: object, limit: int = _I64_MAX, why: str = "") -> None:
    if type(value) is not int or not 0 <= value <= limit:
        raise InvalidInputError(f"{owner}.{field} must be an int in {count_range(limit)}, got {value!r}{why}")


def count_range(limit: int) -> str:
    """``0..limit`` as the messages say it: ``0..2**32-1 (4294967295)`` for a limit of that form."""
    bits = (limit + 1).bit_length() - 1
    return f"0..2**{bits}-1 ({limit})" if limit + 1 == 1 << bits else f"0..{limit}"


# Both limits, said the same way by both errors: a Message's usage is one model call's (u32 per field, as the
# reference format stores it), so that a session's total of 2**31 such calls still fits a Usage (int64).
_USAGE_LIMITS = (
    "; token counts are 0..2**32-1 per field for one model call (Message.usage, as in the reference format) "
    "and 0..2**63-1 for a Usage on its own (a session's total)"
)


# ---------------------------------------------------------------- content blocks


class Text(msgspec.Struct, frozen=True, gc=False, tag="text", tag_field="type"):
    """Plain text."""

    text: str

    def __post_init__(self) -> None:
        _require_str("Text", "text", self.text)


class Thinking(msgspec.Struct, frozen=True, gc=False, tag="thinking", tag_field="type"):
    """A model's reasoning, with the provider's signature when it gave one."""

    thinking: str
    signature: str | None = None

    def __post_init__(self) -> None:
        _require_str("Thinking", "thinking", self.thinking)
        _require_optional_str("Thinking", "signature", self.signature)


class ToolUse(msgspec.Struct, frozen=True, gc=False, tag="tool_use", tag_field="type"):
    """A tool call. ``input`` is the tool input as a JSON-encoded string."""

    id: str
    name: str
    input: str

    def __post_init__(self) -> None:
        _require_str("ToolUse", "id", self.id)
        _require_str("ToolUse", "name", self.name)
        _require_str("ToolUse", "input", self.input)


class ToolResult(msgspec.Struct, frozen=True, gc=False, tag="tool_result", tag_field="type"):
    """The result of the tool call ``tool_use_id``."""

    tool_use_id: str
    tool_name: str
    output: str
    is_error: bool = False

    def __post_init__(self) -> None:
        _require_str("ToolResult", "tool_use_id", self.tool_use_id)
        _require_str("ToolResult", "tool_name", self.tool_name)
        _require_str("ToolResult", "output", self.output)
        if type(self.is_error) is not bool:
            raise InvalidInputError(f"ToolResult.is_error must be a bool, got {type(self.is_error).__name__}")


Block = Text | Thinking | ToolUse | ToolResult
_BLOCK_TYPES = (Text, Thinking, ToolUse, ToolResult)


class Usage(msgspec.Struct, frozen=True, gc=False):
    """Token usage: of one model call (in a Message: at most 2**32-1 per field) or a session's total (at most
    2**63-1 per field); ``+`` adds two."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0

    def __post_init__(self) -> None:
        # One combined check: Usage is built for every summed message on the append path.
        a, b, c, d = (
            self.input_tokens,
            self.output_tokens,
            self.cache_creation_input_tokens,
            self.cache_read_input_tokens,
        )
        if not (
            type(a) is int
            and type(b) is int
            and type(c) is int
            and type(d) is int
            and 0 <= a <= _I64_MAX
            and 0 <= b <= _I64_MAX
            and 0 <= c <= _I64_MAX
            and 0 <= d <= _I64_MAX
        ):
            for field in self.__struct_fields__:
                _require_count("Usage", field, getattr(self, field), why=_USAGE_LIMITS)

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_creation_input_tokens + other.cache_creation_input_tokens,
            self.cache_read_input_tokens + other.cache_read_input_tokens,
        )


# ---------------------------------------------------------------- events


class Message(msgspec.Struct, frozen=True, gc=False, tag="message", tag_field="type"):
    """A conversation message: a role, content blocks and optional usage."""

    role: Role
    blocks: list[Block]
    usage: Usage | None = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise InvalidInputError(f"Message.role must be one of system, user, assistant, tool; got {self.role!r}")
        if type(self.blocks) is not list:
            raise InvalidInputError(f"Message.blocks must be a list, got {type(self.blocks).__name__}")
        for block in self.blocks:
            if not isinstance(block, _BLOCK_TYPES):
                raise InvalidInputError(
                    f"Message.blocks may hold Text, Thinking, ToolUse and ToolResult, got {type(block).__name__}"
                )
        usage = self.usage
        if usage is not None:
            if not isinstance(usage, Usage):
                raise InvalidInputError(f"Message.usage must be a Usage or None, got {type(usage).__name__}")
            # One model call's usage is u32 per field, as in the reference format. Session totals
            # (Usage too) may go past that, and stay exact in int64 for 2**31 such messages.
            if (
                usage.input_tokens > _U32_MAX
                or usage.output_tokens > _U32_MAX
                or usage.cache_creation_input_tokens > _U32_MAX
                or usage.cache_read_input_tokens > _U32_MAX
            ):
                for field in Usage.__struct_fields__:
                    _require_count("Message.usage", field, getattr(usage, field), _U32_MAX, _USAGE_LIMITS)

    @classmethod
    def user(cls, text: str) -> Message:
        return cls("user", [Text(text)])

    @classmethod
    def system(cls, text: str) -> Message:
        return cls("system", [Text(text)])

    @classmethod
    def assistant(cls, blocks: str | list[Block], *, usage: Usage | None = None) -> Message:
        if isinstance(blocks, str):
            blocks = [Text(blocks)]
        return cls("assistant", list(blocks), usage)

    @classmethod
    def tool_result(cls, tool_use_id: str, tool_name: str, output: str, *, is_error: bool = False) -> Message:
        return cls("tool", [ToolResult(tool_use_id, tool_name, output, is_error)])

    @property
    def text(self) -> str:
        """The message's text blocks joined by newlines."""
        return "\n".join(b.text for b in self.blocks if isinstance(b, Text))


class Fork(msgspec.Struct, frozen=True, gc=False):
    """Where a forked session branched off: its parent and the parent's version."""

    parent_session_id: str
    branch_name: str | None = None
    parent_version: Annotated[int, msgspec.Meta(ge=0, le=_I64_MAX)] = 0  # checked when decoded


class Inherited(msgspec.Struct, frozen=True, gc=False):
    """Totals a fork inherits from its parent's history, so listings need no replay."""

    message_count: int = 0
    usage: Usage = msgspec.field(default_factory=Usage)
    compacted: bool = False
    # The integrations' counts (``_counts``); 0 in forks made before they were counted.
    item_count: int = 0
    checkpoint_count: int = 0


class SessionStarted(msgspec.Struct, frozen=True, gc=False, tag="session_started", tag_field="type"):
    """The first event of every session (of a fork: the first after the shared history)."""

    created_at_ms: int
    model: str | None = None
    workspace_root: str | None = None
    fork: Fork | None = None
    inherited: Inherited | None = None
    # The session's scope (a project, a tenant): fixed at creation; a fork inherits it unless told.
    scope: str | None = None

    def __post_init__(self) -> None:
        _require_count("SessionStarted", "created_at_ms", self.created_at_ms)
        _require_optional_str("SessionStarted", "model", self.model)
        _require_optional_str("SessionStarted", "workspace_root", self.workspace_root)
        if self.scope is not None:
            check_scope(self.scope)


class PromptRecorded(msgspec.Struct, frozen=True, gc=False, tag="prompt", tag_field="type"):
    """A prompt the user typed, for the session's prompt history."""

    text: str
    timestamp_ms: int

    def __post_init__(self) -> None:
        _require_str("PromptRecorded", "text", self.text)
        _require_count("PromptRecorded", "timestamp_ms", self.timestamp_ms)


class Compacted(msgspec.Struct, frozen=True, gc=False, tag="compaction", tag_field="type"):
    """A conversation compaction: a summary replaces the oldest live messages.

    ``removed_message_count`` counts the live messages the summary replaces, not
    counting an earlier summary message, as upstream does. With
    ``rewrite_context=False`` only the compaction metadata is recorded (used by
    importers whose messages already hold the rewritten context).
    ``count`` overrides the running compaction count (also for importers).
    """

    summary: str
    removed_message_count: int
    rewrite_context: bool = True
    count: int | None = None

    def __post_init__(self) -> None:
        _require_str("Compacted", "summary", self.summary)
        _require_count("Compacted", "removed_message_count", self.removed_message_count)
        if self.count is not None:
            _require_count("Compacted", "count", self.count, _U32_MAX)


class Custom(msgspec.Struct, frozen=True, gc=False, tag="custom", tag_field="type"):
    """An application-defined event: a name and JSON-compatible data.

    The built-in Session projection ignores it; custom projections fold it.
    """

    name: str
    data: Any = None

    def __post_init__(self) -> None:
        _require_str("Custom", "name", self.name)


class SessionDeleted(msgspec.Struct, frozen=True, gc=False, tag="session_deleted", tag_field="type"):
    """A tombstone: the session is gone for readers; the compactor frees its space."""


# ---------------------------------------------------------------- labels (Store.set_title, add_tags ...)


class TitleChanged(msgspec.Struct, frozen=True, gc=False, tag="title", tag_field="type"):
    """The session's title was set (``None``: cleared). Written by ``Store.set_title``."""

    title: str | None = None

    def __post_init__(self) -> None:
        check_title(self.title)


class TagsChanged(msgspec.Struct, frozen=True, gc=False, tag="tags", tag_field="type"):
    """Tags added to and removed from the session (disjoint). Written by ``add_tags``/``remove_tags``."""

    added: list[str] = msgspec.field(default_factory=list)
    removed: list[str] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        check_tags(self.added)
        check_tags(self.removed)
        if not set(self.added).isdisjoint(self.removed):
            raise InvalidInputError("TagsChanged: a tag cannot be both added and removed in one event")


class PinChanged(msgspec.Struct, frozen=True, gc=False, tag="pin", tag_field="type"):
    """The session was pinned or unpinned. Written by ``Store.set_pinned``."""

    pinned: bool = True

    def __post_init__(self) -> None:
        if type(self.pinned) is not bool:
            raise InvalidInputError(f"PinChanged.pinned must be a bool, got {type(self.pinned).__name__}")


Event = (
    Message
    | SessionStarted
    | PromptRecorded
    | Compacted
    | Custom
    | SessionDeleted
    | TitleChanged
    | TagsChanged
    | PinChanged
)
EVENT_TYPES: tuple[type, ...] = (
    Message,
    SessionStarted,
    PromptRecorded,
    Compacted,
    Custom,
    SessionDeleted,
    TitleChanged,
    TagsChanged,
    PinChanged,
)
LABEL_EVENT_TYPES: tuple[type, ...] = (TitleChanged, TagsChanged, PinChanged)


class RecordedEvent(msgspec.Struct, frozen=True, gc=False):
    """An event as stored: its session, version, store-wide position and time."""

    session_id: str
    version: int
    position: int
    timestamp_ms: int
    event: Event
    event_id: str | None = None


def validate_event(event: object) -> None:
    """Raise ``InvalidInputError`` unless ``event`` is an event sessiondb can store."""
    if not isinstance(event, EVENT_TYPES):
        raise InvalidInputError(
            f"append() takes events such as Message, PromptRecorded, Compacted or Custom; got {type(event).__name__}"
        )
    # Structs validate in __post_init__, but a user may have built one with
    # msgspec.structs.replace or by mutating a list afterwards: re-check messages.
    if isinstance(event, Message):
        event.__post_init__()
