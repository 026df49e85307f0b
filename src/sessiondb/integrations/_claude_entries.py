"""Claude Code transcript entries: checking them, and projecting them into sessiondb messages.

An entry is one line of a Claude Code transcript (a JSON object with a ``type``).
Each is stored verbatim as ``Custom(ENTRY, entry)``; a ``user`` or ``assistant``
entry with text, thinking, tool_use or tool_result blocks is followed, in the same
atomic append, by the ``Message`` it projects to, so ``Session.messages`` and
``Session.usage`` hold the conversation while the entries read back unchanged.

Claude Code writes one model response as several ``assistant`` entries (one per
content block) that share ``message.id`` and repeat its usage; a response's usage is
counted once: each part adds only what it reports above the parts before it.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

import msgspec

from .._errors import InvalidInputError
from .._events import Block, Custom, Message, RecordedEvent, Text, Thinking, ToolResult, ToolUse, Usage
from .._projection import Projection
from .._reserved import CLAUDE_ENTRY, CLAUDE_LINE, CLAUDE_SUMMARY
from ._claude_keys import describe_key

# The event names (``_reserved``: an append of one in another shape is refused).
ENTRY = CLAUDE_ENTRY
SUMMARY = CLAUDE_SUMMARY
# An imported line kept byte for byte (after its ENTRY) when the entry would not serialize back to it.
LINE = CLAUDE_LINE
# Only for naming the culprit of a failed round trip: nesting past this exhausts Python's
# recursion in the encoder (what a store's own event validation allows is checked when building).
MAX_NESTING = 500
_U32_MAX = 2**32 - 1
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode
_TOOL_NAMES_KEPT = 1024


def check_entry(key: object, index: int, entry: object) -> None:
    """Raise ``InvalidInputError`` naming ``key`` unless ``entry`` is a JSON object with a str ``type``
    (and a non-empty str ``uuid`` without NUL, if any) that reads back equal."""
    if type(entry) is dict and type(entry.get("type")) is str:
        uuid = entry.get("uuid")
        if uuid is None or (type(uuid) is str and uuid and "\x00" not in uuid):
            # The round trip the store itself performs, at C speed; the slow walk below only names the culprit.
            try:
                if _decode(_encode(entry)) == entry:
                    return
            except (UnicodeEncodeError, RecursionError, TypeError, ValueError, msgspec.EncodeError):
                pass
    where = describe_key(key)
    if type(entry) is not dict:
        raise InvalidInputError(
            f"{where}: entry {index} is a {type(entry).__name__}, not a JSON object; nothing was written"
        )
    if type(entry.get("type")) is not str:
        raise InvalidInputError(f"{where}: entry {index} has no str 'type' field; nothing was written")
    uuid = entry.get("uuid")
    if uuid is not None and (type(uuid) is not str or not uuid or "\x00" in uuid):
        raise InvalidInputError(
            f"{where}: entry {index} has a 'uuid' that is not a non-empty str without NUL ({uuid!r}); "
            "nothing was written"
        )
    problem = _json_problem(entry, 0) or "it does not survive a JSON round trip"
    raise InvalidInputError(
        f"{where}: entry {index} would not read back equal: {problem}; entries must be plain JSON "
        "(dict with str keys, list, str, finite float, int, bool, None); nothing was written"
    )


def _json_problem(value: Any, depth: int) -> str | None:
    """Why ``value`` would not survive a JSON round trip unchanged, or None."""
    kind = type(value)
    if kind is str:
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return f"the string {value[:40]!r} holds a lone surrogate"
        return None
    if kind is bool or kind is int or value is None:
        return None
    if kind is float:
        return None if value - value == 0.0 else f"the float {value!r} has no JSON form"
    if depth >= MAX_NESTING:
        return f"it nests deeper than {MAX_NESTING} levels"
    if kind is dict:
        for item_key, item in value.items():
            if type(item_key) is not str:
                return f"the key {item_key!r} is not a str"
            problem = _json_problem(item, depth + 1)
            if problem is not None:
                return problem
        return None
    if kind is list:
        for item in value:
            problem = _json_problem(item, depth + 1)
            if problem is not None:
                return problem
        return None
    return f"a {kind.__name__} would read back as something else (or not at all)"


class TranscriptFold(msgspec.Struct, gc=False):
    """The transcript projection's state: every entry (its JSON), the newest summary, kept source lines.

    Registered on the store, so it is snapshotted with the session: a transcript stays
    loadable after retention removed the log segments that held its events.
    """

    entries: list[msgspec.Raw] = msgspec.field(default_factory=list)
    summary: Any = None
    # index in ``entries`` -> the source line an importer kept (byte-exact export)
    lines: dict[int, str] = msgspec.field(default_factory=dict)
    version: int = 0


def _fold_transcript(state: TranscriptFold, recorded: RecordedEvent) -> TranscriptFold:
    # In place: the store owns the state it caches and folds each event into it once.
    state.version = recorded.version
    event = recorded.event
    if type(event) is Custom:
        if event.name == ENTRY:
            state.entries.append(msgspec.Raw(_encode(event.data)))
        elif event.name == SUMMARY:
            state.summary = event.data
        elif event.name == LINE and state.entries:
            state.lines[len(state.entries) - 1] = event.data
    return state


TRANSCRIPT_PROJECTION: Projection[TranscriptFold] = Projection(
    "claude_agent_sdk.transcript", lambda _sid: TranscriptFold(), _fold_transcript, state_type=TranscriptFold
)


def decode_entry(raw: msgspec.Raw) -> dict[str, Any]:
    """A stored entry, as a new dict."""
    return _decode(raw)  # type: ignore[no-any-return]


class TranscriptState:
    """What projecting the next entries of one transcript needs to know about the ones before.

    ``version`` is the session version this state reflects; ``summary`` the SDK's
    folded summary stored last (main transcripts only).
    """

    __slots__ = ("response_id", "response_usage", "session_id", "summary", "tool_names", "version")

    def __init__(self, session_id: str, version: int = 0) -> None:
        self.session_id = session_id
        self.version = version
        self.summary: dict[str, Any] | None = None
        self.response_id: str | None = None
        self.response_usage: tuple[int, ...] = (0, 0, 0, 0)
        self.tool_names: OrderedDict[str, str] = OrderedDict()

    def project(self, entry: dict[str, Any]) -> Message | None:
        """The message ``entry`` stands for (None for entries that are not conversation), updating the state."""
        kind = entry.get("type")
        message = entry.get("message")
        if kind not in ("user", "assistant") or not isinstance(message, dict):
            return None
        content = message.get("content")
        if kind == "user":
            return self._user(content)
        return self._assistant(message, content)

    def _user(self, content: Any) -> Message | None:
        if isinstance(content, str):
            return Message("user", [Text(content)]) if content else None
        if not isinstance(content, list):
            return None
        blocks: list[Block] = []
        for block in content:
            if not isinstance(block, dict):
                continue
            kind = block.get("type")
            if kind == "text" and isinstance(block.get("text"), str):
                blocks.append(Text(block["text"]))
            elif kind == "tool_result" and isinstance(block.get("tool_use_id"), str):
                tool_use_id = block["tool_use_id"]
                blocks.append(
                    ToolResult(
                        tool_use_id,
                        self.tool_names.get(tool_use_id, ""),
                        _result_text(block.get("content")),
                        block.get("is_error") is True,
                    )
                )
        if not blocks:
            return None
        if any(type(block) is ToolResult for block in blocks):
            return Message("tool", blocks)
        return Message("user", blocks)

    def _assistant(self, message: dict[str, Any], content: Any) -> Message | None:
        blocks: list[Block] = []
        for block in content if isinstance(content, list) else []:
            if not isinstance(block, dict):
                continue
            kind = block.get("type")
            if kind == "text" and isinstance(block.get("text"), str):
                blocks.append(Text(block["text"]))
            elif kind == "thinking" and isinstance(block.get("thinking"), str):
                signature = block.get("signature")
                blocks.append(Thinking(block["thinking"], signature if isinstance(signature, str) else None))
            elif kind in ("tool_use", "server_tool_use") and isinstance(block.get("id"), str):
                name = block["name"] if isinstance(block.get("name"), str) else ""
                self._remember_tool(block["id"], name)
                blocks.append(ToolUse(block["id"], name, json.dumps(block.get("input", {}), ensure_ascii=False)))
        if isinstance(content, str) and content:
            blocks.append(Text(content))
        usage = self._usage(message)
        if not blocks and usage is None:
            return None
        return Message("assistant", blocks, usage)

    def _remember_tool(self, tool_use_id: str, name: str) -> None:
        self.tool_names[tool_use_id] = name
        if len(self.tool_names) > _TOOL_NAMES_KEPT:
            self.tool_names.popitem(last=False)

    def _usage(self, message: dict[str, Any]) -> Usage | None:
        raw = message.get("usage")
        if not isinstance(raw, dict):
            return None
        get = raw.get
        reported = (
            _count(get("input_tokens")),
            _count(get("output_tokens")),
            _count(get("cache_creation_input_tokens")),
            _count(get("cache_read_input_tokens")),
        )
        response_id = message.get("id")
        if type(response_id) is str and response_id == self.response_id:
            # Another part of the same response: add only what it reports beyond the parts before.
            counted = self.response_usage
            added = tuple(now - before if now > before else 0 for now, before in zip(reported, counted, strict=True))
            self.response_usage = tuple(max(now, before) for now, before in zip(reported, counted, strict=True))
        else:
            added = reported
            self.response_id = response_id if type(response_id) is str else None
            self.response_usage = reported
        if not (added[0] or added[1] or added[2] or added[3]):
            return None
        return Usage(*added)


def _count(value: Any) -> int:
    """A token count as a message may hold it (u32); anything else counts as 0."""
    if type(value) is not int or value < 0:
        return 0
    return value if value <= _U32_MAX else _U32_MAX


def _result_text(content: Any) -> str:
    """A tool result's output as text: its str, or its text blocks joined (other blocks named)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return "" if content is None else json.dumps(content, ensure_ascii=False)
    parts = []
    for block in content:
        if isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str):
            parts.append(block["text"])
        elif isinstance(block, dict) and isinstance(block.get("type"), str):
            parts.append(f"[{block['type']}]")
    return "\n".join(parts)
