"""claw-code session files <-> sessiondb events: the record model, both directions, no I/O.

Reading follows upstream's ``Session::load_from_path`` (newest format): a file
that parses whole as one JSON object holding ``messages`` is a legacy session
object, anything else is JSONL. Writing produces upstream's snapshot order:
``session_meta``, optional ``compaction``, every ``prompt_history``, every
``message``, each line in the dialect of ``_dialect``, ending with ``\\n``.

Larger than the ~400-line aim: reading and writing the format are mirror images
kept side by side so a field added to one is added to the other.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from .._errors import ImportFormatError, InvalidInputError, InvalidSessionIdError
from .._events import (
    Block,
    Compacted,
    Event,
    Fork,
    Inherited,
    Message,
    PromptRecorded,
    SessionStarted,
    Text,
    Thinking,
    ToolResult,
    ToolUse,
    Usage,
)
from .._ids import generate_session_id, now_ms, validate_session_id
from .._projection import Session, is_continuation_message
from . import _dialect
from ._dialect import I64_MAX, U32_MAX, DialectError

SESSION_VERSION = 1
_USAGE_FIELDS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


class _RecordError(Exception):
    """A record that upstream would refuse; the caller adds file and line."""


@dataclass
class SkippedLine:
    """A JSONL line left out by ``skip_bad_lines=True``, and why."""

    path: str
    line: int
    reason: str


@dataclass
class ClawFile:
    """What upstream would load from one file, as sessiondb events in file order."""

    path: str
    session_id: str
    version: int
    created_at_ms: int
    updated_at_ms: int
    started: SessionStarted
    events: list[Event]
    legacy: bool = False
    # The file named no session id: one was generated, as upstream does.
    generated_id: bool = False
    skipped: list[SkippedLine] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def messages(self) -> list[Message]:
        return [event for event in self.events if isinstance(event, Message)]


# ---------------------------------------------------------------- field readers (upstream's required_*)


def _string(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if type(value) is not str:
        raise _RecordError(f"missing {key}")
    return value


def _optional_string(obj: dict[str, Any], key: str) -> str | None:
    # Upstream reads these with `.and_then(as_str)`: a value of another type is ignored.
    value = obj.get(key)
    return value if type(value) is str else None


def _integer(value: Any, key: str, limit: int) -> int:
    if type(value) is not int:
        raise _RecordError(f"missing {key}")
    if not 0 <= value <= limit:
        raise _RecordError(f"{key} out of range")
    return value


def _required_integer(obj: dict[str, Any], key: str, limit: int) -> int:
    return _integer(obj.get(key), key, limit)


def _object(value: Any, what: str) -> dict[str, Any]:
    if type(value) is not dict:
        raise _RecordError(f"{what} must be an object")
    return value


def _block(value: Any) -> Block:
    obj = _object(value, "block")
    kind = obj.get("type")
    if type(kind) is not str:
        raise _RecordError("missing block type")
    if kind == "text":
        return Text(_string(obj, "text"))
    if kind == "thinking":
        return Thinking(_string(obj, "thinking"), _optional_string(obj, "signature"))
    if kind == "tool_use":
        return ToolUse(_string(obj, "id"), _string(obj, "name"), _string(obj, "input"))
    if kind == "tool_result":
        tool_use_id, tool_name, output = _string(obj, "tool_use_id"), _string(obj, "tool_name"), _string(obj, "output")
        is_error = obj.get("is_error")
        if type(is_error) is not bool:
            raise _RecordError("missing is_error")
        return ToolResult(tool_use_id, tool_name, output, is_error)
    raise _RecordError(f"unsupported block type: {kind}")


def _message(value: Any) -> Message:
    obj = _object(value, "message")
    role = obj.get("role")
    if type(role) is not str:
        raise _RecordError("missing role")
    if role not in ("system", "user", "assistant", "tool"):
        raise _RecordError(f"unsupported message role: {role}")
    blocks = obj.get("blocks")
    if type(blocks) is not list:
        raise _RecordError("missing blocks")
    parsed = [_block(block) for block in blocks]
    usage = None
    if "usage" in obj:
        usage_obj = _object(obj["usage"], "usage")
        usage = Usage(*(_required_integer(usage_obj, name, U32_MAX) for name in _USAGE_FIELDS))
    return Message(role, parsed, usage)  # type: ignore[arg-type]


def _compaction(obj: dict[str, Any]) -> Compacted:
    count = _required_integer(obj, "count", U32_MAX)
    removed = _required_integer(obj, "removed_message_count", I64_MAX)
    # The file already holds the rewritten context: record the metadata only.
    return Compacted(_string(obj, "summary"), removed, rewrite_context=False, count=count)


def _fork(value: Any) -> Fork:
    obj = _object(value, "fork metadata")
    return Fork(_string(obj, "parent_session_id"), _optional_string(obj, "branch_name"))


def _prompt(value: Any) -> PromptRecorded | None:
    # Upstream's SessionPromptEntry::from_json_opt: an incomplete entry is dropped, not an error.
    if type(value) is not dict:
        return None
    timestamp = value.get("timestamp_ms")
    text = value.get("text")
    if type(timestamp) is not int or not 0 <= timestamp <= I64_MAX or type(text) is not str:
        return None
    return PromptRecorded(text, timestamp)


def created_at_from_id(session_id: str) -> int | None:
    """Upstream's parse of ``session-<millis>-<suffix>`` ids."""
    if not session_id.startswith("session-"):
        return None
    timestamp, dash, suffix = session_id[len("session-") :].partition("-")
    if not dash or not suffix or not timestamp.isascii() or not timestamp.isdigit():
        return None
    value = int(timestamp)
    return value if value < 2**64 else None


# ---------------------------------------------------------------- reading


def parse_claw_file(
    data: bytes,
    path: str,
    *,
    skip_bad_lines: bool = False,
    fallback_id: str | None = None,
    clock: Callable[[], int] = now_ms,
) -> ClawFile:
    """Parse one claw-code session file (JSONL or legacy JSON); raise ``ImportFormatError``.

    ``fallback_id`` (the file's stem) names the session when ``skip_bad_lines``
    dropped every ``session_meta`` line; without one, an id is generated as upstream does.
    """
    legacy = _legacy_object(data, path)
    if legacy is not None:
        return _from_legacy(legacy, path, clock)
    return _from_jsonl(data, path, skip_bad_lines, fallback_id, clock)


def _legacy_object(data: bytes, path: str) -> dict[str, Any] | None:
    """The file's single JSON object when it is a legacy session object, else None."""
    stripped = data.lstrip(b" \t\r\n")
    if not stripped.startswith(b"{"):
        return None
    try:
        text = data.decode("utf-8")
        value = json.loads(text, strict=False)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if type(value) is not dict or "messages" not in value:
        return None
    try:
        strict = _dialect.parse(text)
    except DialectError as exc:
        raise ImportFormatError(path, None, f"legacy session object: {exc}") from None
    assert type(strict) is dict
    return strict


def _from_legacy(obj: dict[str, Any], path: str, clock: Callable[[], int]) -> ClawFile:
    try:
        version = obj.get("version")
        if type(version) is not int:
            raise _RecordError("missing version")
        if not 0 <= version <= U32_MAX:
            raise _RecordError("version out of range")
        raw_messages = obj.get("messages")
        if type(raw_messages) is not list:
            raise _RecordError("missing messages")
        messages = [_message(value) for value in raw_messages]
        named = _optional_string(obj, "session_id")
        session_id = named if named is not None else generate_session_id()
        now = clock()
        if "created_at_ms" in obj:
            created = _integer(obj["created_at_ms"], "created_at_ms", I64_MAX)
        else:
            from_id = created_at_from_id(session_id)
            created = now if from_id is None or from_id > I64_MAX else from_id
        updated = _integer(obj["updated_at_ms"], "updated_at_ms", I64_MAX) if "updated_at_ms" in obj else created
        compaction = _compaction(_object(obj["compaction"], "compaction")) if "compaction" in obj else None
        fork = _fork(obj["fork"]) if "fork" in obj else None
        history = obj.get("prompt_history")
        prompts = [p for p in (map(_prompt, history) if type(history) is list else ()) if p is not None]
    except (_RecordError, InvalidInputError) as exc:
        raise ImportFormatError(path, None, f"legacy session object: {exc}") from None
    session_id = _checked_id(session_id, path, None)
    started = SessionStarted(created, _optional_string(obj, "model"), _optional_string(obj, "workspace_root"), fork)
    events: list[Event] = [*prompts, *messages]
    if compaction is not None:
        events.append(compaction)
    started = _mark_compacted(started, events)
    return ClawFile(
        path, session_id, version, created, updated, started, events, legacy=True, generated_id=named is None
    )


def _from_jsonl(
    data: bytes, path: str, skip_bad_lines: bool, fallback_id: str | None, clock: Callable[[], int]
) -> ClawFile:
    skipped: list[SkippedLine] = []
    notes: list[str] = []
    meta: dict[str, Any] | None = None
    entries: list[Event] = []
    compaction: Compacted | None = None
    compaction_at = 0
    raw_lines = data.split(b"\n")
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()
    for number, raw in enumerate(raw_lines, 1):
        try:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _RecordError(f"invalid UTF-8 at byte {exc.start} of the line") from None
            line = _dialect.trim(text)
            if not line:
                continue
            try:
                value = _dialect.parse(line)
            except DialectError as exc:
                raise _RecordError(f"invalid JSONL record: {exc}") from None
            if type(value) is not dict:
                raise _RecordError("JSONL record must be an object")
            kind = value.get("type")
            if type(kind) is not str:
                raise _RecordError("JSONL record missing type")
            if kind == "session_meta":
                meta = _meta(value)
            elif kind == "message":
                if "message" not in value:
                    raise _RecordError("JSONL record missing message")
                entries.append(_message(value["message"]))
            elif kind == "compaction":
                compaction = _compaction(value)
                compaction_at = len(entries)
            elif kind == "prompt_history":
                prompt = _prompt(value)
                if prompt is None:
                    notes.append(
                        f"{path}:{number}: prompt_history record without timestamp_ms/text ignored, as upstream does"
                    )
                else:
                    entries.append(prompt)
            else:
                raise _RecordError(f"unsupported JSONL record type: {kind}")
        except (_RecordError, InvalidInputError) as exc:
            if not skip_bad_lines:
                raise ImportFormatError(path, number, str(exc)) from None
            skipped.append(SkippedLine(path, number, str(exc)))
    generated = False
    if meta is not None:
        session_id = meta["session_id"]
    elif skipped and fallback_id is not None:
        session_id = fallback_id
        notes.append(f"{path}: no readable session_meta; the session takes the file's name {fallback_id!r}")
    else:
        session_id = generate_session_id()
        generated = True
    session_id = _checked_id(session_id, path, None)
    created = meta["created_at_ms"] if meta is not None else None
    if created is None:
        created = created_at_from_id(session_id)
        if created is None or created > I64_MAX:
            created = clock()
    updated = meta["updated_at_ms"] if meta is not None else created
    started = SessionStarted(
        created,
        meta["model"] if meta is not None else None,
        meta["workspace_root"] if meta is not None else None,
        meta["fork"] if meta is not None else None,
    )
    events = entries
    if compaction is not None:
        events = [*entries[:compaction_at], compaction, *entries[compaction_at:]]
    started = _mark_compacted(started, events)
    version = meta["version"] if meta is not None else SESSION_VERSION
    if version != SESSION_VERSION:
        notes.append(f"{path}: format version {version}; sessiondb exports version {SESSION_VERSION}")
    return ClawFile(path, session_id, version, created, updated, started, events, False, generated, skipped, notes)


def _mark_compacted(started: SessionStarted, events: list[Event]) -> SessionStarted:
    """Tell the store's session summary when the imported live context starts with a summary message.

    The backend's summary only learns that from compactions that rewrite the
    context; an imported one does not, so a later native compaction would
    count the summary as a kept message. ``Inherited`` carries the flag (with
    zero inherited messages and usage: exact for a session's first event).
    """
    first = next((event for event in events if isinstance(event, Message)), None)
    if first is None or not is_continuation_message(first):
        return started
    return msgspec.structs.replace(started, inherited=Inherited(0, Usage(), compacted=True))


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    """A session_meta record; every field is replaced by the last one, as upstream does."""
    return {
        "version": _required_integer(obj, "version", U32_MAX),
        "session_id": _string(obj, "session_id"),
        "created_at_ms": _integer(obj["created_at_ms"], "created_at_ms", I64_MAX) if "created_at_ms" in obj else None,
        "updated_at_ms": _required_integer(obj, "updated_at_ms", I64_MAX),
        "fork": _fork(obj["fork"]) if "fork" in obj else None,
        "workspace_root": _optional_string(obj, "workspace_root"),
        "model": _optional_string(obj, "model"),
    }


def _checked_id(session_id: str, path: str, line: int | None) -> str:
    try:
        return validate_session_id(session_id)
    except InvalidSessionIdError as exc:
        raise ImportFormatError(path, line, f"session id cannot be stored: {exc}") from None


# ---------------------------------------------------------------- writing


def _check_range(value: int, limit: int, what: str, session_id: str) -> int:
    if not 0 <= value <= limit:
        raise InvalidInputError(
            f"session {session_id!r}: {what} = {value} does not fit claw-code's format (max {limit})"
        )
    return value


def _block_json(block: Block) -> dict[str, Any]:
    if type(block) is Text:
        return {"type": "text", "text": block.text}
    if type(block) is Thinking:
        out = {"type": "thinking", "thinking": block.thinking}
        if block.signature is not None:
            out["signature"] = block.signature
        return out
    if type(block) is ToolUse:
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
    assert type(block) is ToolResult
    return {
        "type": "tool_result",
        "tool_use_id": block.tool_use_id,
        "tool_name": block.tool_name,
        "output": block.output,
        "is_error": block.is_error,
    }


def message_json(message: Message, session_id: str = "") -> dict[str, Any]:
    """A message as upstream's ``ConversationMessage::to_json`` writes it."""
    out: dict[str, Any] = {"role": message.role, "blocks": [_block_json(b) for b in message.blocks]}
    usage = message.usage
    if usage is not None:
        out["usage"] = {
            name: _check_range(getattr(usage, name), U32_MAX, f"usage.{name}", session_id) for name in _USAGE_FIELDS
        }
    return out


def snapshot_records(session: Session) -> list[dict[str, Any]]:
    """The records of a full snapshot of ``session``'s live context, in upstream's order."""
    sid = session.session_id
    meta: dict[str, Any] = {
        "type": "session_meta",
        "version": SESSION_VERSION,
        "session_id": sid,
        "created_at_ms": _check_range(session.created_at_ms, I64_MAX, "created_at_ms", sid),
        "updated_at_ms": _check_range(session.updated_at_ms, I64_MAX, "updated_at_ms", sid),
    }
    if session.fork is not None:
        fork: dict[str, Any] = {"parent_session_id": session.fork.parent_session_id}
        if session.fork.branch_name is not None:
            fork["branch_name"] = session.fork.branch_name
        meta["fork"] = fork
    if session.workspace_root is not None:
        meta["workspace_root"] = session.workspace_root
    if session.model is not None:
        meta["model"] = session.model
    records = [meta]
    if session.compaction is not None:
        c = session.compaction
        records.append(
            {
                "type": "compaction",
                "count": _check_range(c.count, U32_MAX, "compaction.count", sid),
                "removed_message_count": _check_range(c.removed_message_count, I64_MAX, "removed_message_count", sid),
                "summary": c.summary,
            }
        )
    for entry in session.prompt_history:
        records.append(
            {
                "type": "prompt_history",
                "timestamp_ms": _check_range(entry.timestamp_ms, I64_MAX, "prompt timestamp_ms", sid),
                "text": entry.text,
            }
        )
    for message in session.messages:
        records.append({"type": "message", "message": message_json(message, sid)})
    return records


def render_claw_session(session: Session) -> bytes:
    """``session`` as a claw-code JSONL file, byte for byte what upstream's snapshot writer produces."""
    try:
        lines = [_dialect.render_line(record) for record in snapshot_records(session)]
    except DialectError as exc:
        raise InvalidInputError(f"session {session.session_id!r} cannot be exported: {exc}") from None
    return b"\n".join(lines) + b"\n"
