"""LangGraph checkpoints (``integrations.langgraph``) as a conversation: the messages each checkpoint adds.

A checkpoint holds the graph's whole state; its ``messages`` channel (LangChain
messages, serialized by LangGraph's msgpack serde as extension values naming the
class and its fields) grows step by step, so each checkpoint shows only the messages
whose ids were not shown before. Other channels show as the checkpoint's state, folded.
Values are decoded as plain data (msgspec's msgpack with an extension hook): no class
is imported or built, and pickled values are never loaded.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from .._events import Custom, RecordedEvent, ToolResult, Usage
from ..integrations._langgraph_state import CHECKPOINT, REMOVED, WRITES, unpack
from . import _entry as entry
from ._model import Entry, ToolCall

_SOURCE = "langgraph"
_ROLES = {"human": "user", "ai": "assistant", "tool": "tool", "system": "system"}


def _ext(code: int, data: memoryview) -> Any:
    """An extension value as data: ``[module, class, fields, ...]`` becomes ``{"__class__": class, **fields}``."""
    value = msgspec.msgpack.decode(data, ext_hook=_ext)
    if isinstance(value, list) and len(value) >= 3 and isinstance(value[1], str) and isinstance(value[2], dict):
        return {"__class__": value[1], **value[2]}
    return value


def _decode(kind: object, data: object) -> tuple[bool, Any]:
    if kind != "msgpack" or not isinstance(data, bytes):
        return False, None  # "empty", "null", pickled or other serde formats: nothing to show
    try:
        return True, msgspec.msgpack.decode(data, ext_hook=_ext)
    except (msgspec.DecodeError, ValueError, TypeError):
        return False, None


def _is_message(value: Any) -> bool:
    return isinstance(value, dict) and value.get("type") in _ROLES and "content" in value


def _content(content: Any) -> list[tuple[str, object]]:
    if isinstance(content, str):
        return [("text", content)] if content else []
    parts: list[tuple[str, object]] = []
    for part in content if isinstance(content, list) else []:
        if isinstance(part, str):
            parts.append(("text", part))
        elif isinstance(part, dict):
            kind = part.get("type")
            if kind == "text" and isinstance(part.get("text"), str):
                parts.append(("text", part["text"]))
            elif kind in ("thinking", "reasoning"):
                text = part.get("thinking") or part.get("reasoning") or part.get("text") or ""
                parts.append(("thinking", str(text)))
            elif isinstance(kind, str):
                parts.append(("text", f"[{kind}]"))
    return parts


def _usage(message: dict[str, Any]) -> Usage | None:
    raw = message.get("usage_metadata")
    if not isinstance(raw, dict):
        return None
    found = raw.get("input_token_details")
    details: dict[str, Any] = found if isinstance(found, dict) else {}

    def count(value: Any) -> int:
        return value if type(value) is int and value >= 0 else 0

    return Usage(
        count(raw.get("input_tokens")),
        count(raw.get("output_tokens")),
        count(details.get("cache_creation")),
        count(details.get("cache_read")),
    )


def _message_entry(recorded: RecordedEvent, owner: str, message: dict[str, Any]) -> Entry:
    role = _ROLES[message["type"]]
    parts = _content(message.get("content"))
    if role == "tool":
        text = "\n".join(str(value) for kind, value in parts if kind == "text")
        call_id = str(message.get("tool_call_id") or "")
        parts = [
            ("result", ToolResult(call_id, str(message.get("name") or ""), text, message.get("status") == "error"))
        ]
    for call in message.get("tool_calls") or ():
        if isinstance(call, dict):
            arguments = json.dumps(call.get("args", {}), ensure_ascii=False, default=repr)
            parts.append(("call", ToolCall(str(call.get("id") or ""), str(call.get("name") or ""), arguments)))
    return entry.integration_message(
        recorded, owner, _SOURCE, role, parts, _usage(message) if role == "assistant" else None
    )


def _notice(recorded: RecordedEvent, owner: str, text: str, detail: str = "") -> Entry:
    return entry.notice(recorded, owner, _SOURCE, text, detail)


def langgraph_entries(recorded: RecordedEvent, event: Custom, owner: str, seen: set[str]) -> list[Entry] | None:
    """The entries of a LangGraph event (None: not one); ``seen`` holds the message ids shown so far."""
    data = event.data
    if event.name == WRITES:
        return []  # pending writes of a step: the next checkpoint holds their outcome
    if event.name == REMOVED and isinstance(data, dict):
        count = len(data.get("ids") or ())
        return [_notice(recorded, owner, f"{count} checkpoint{'' if count == 1 else 's'} removed")]
    if event.name != CHECKPOINT or not isinstance(data, dict) or not isinstance(data.get("x"), str):
        return None
    try:
        _kind, _data, meta_kind, meta_data, _indexed, blobs, _refs = unpack(data["x"])
    except (msgspec.DecodeError, ValueError, TypeError):
        return [_notice(recorded, owner, "checkpoint (undecodable)")]
    entries: list[Entry] = []
    state: dict[str, Any] = {}
    for key, kind, value in blobs:
        ok, decoded = _decode(kind, value)
        if not ok:
            continue
        try:
            channel = json.loads(key)[0]
        except (ValueError, IndexError, TypeError):
            channel = str(key)
        if isinstance(decoded, list) and decoded and all(_is_message(item) for item in decoded):
            for message in decoded:
                message_id = message.get("id")
                if isinstance(message_id, str) and message_id in seen:
                    continue
                if isinstance(message_id, str):
                    seen.add(message_id)
                entries.append(_message_entry(recorded, owner, message))
        elif isinstance(channel, str) and not channel.startswith(("__", "branch:")):
            state[channel] = decoded
    ok, metadata = _decode(meta_kind, meta_data)
    step = metadata.get("step") if ok and isinstance(metadata, dict) else None
    if state:
        label = f"checkpoint, step {step}" if step is not None else "checkpoint"
        entries.append(_notice(recorded, owner, f"{label}: {', '.join(sorted(state))}", entry.as_json(state)))
    return entries


__all__ = ["langgraph_entries"]
