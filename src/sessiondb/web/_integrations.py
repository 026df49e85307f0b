"""Custom events written by the integrations, as readable entries instead of raw JSON.

OpenAI Agents SDK items (``openai_agents.items``: Responses API input items) become
messages, reasoning, tool calls and their outputs; Claude Code transcript entries
(``claude_agent_sdk.entry``) that are conversation are already followed by the
``Message`` they project to, so only the other entries (system notes, summaries …)
show here. LangGraph checkpoints show the messages each adds (``_langgraph``). Any other
custom event shows as its name and its data, folded.
"""

from __future__ import annotations

import json
from typing import Any

from .._events import Custom, RecordedEvent, ToolResult
from ..integrations._claude_entries import ENTRY as CLAUDE_ENTRY
from ..integrations._claude_entries import LINE as CLAUDE_LINE
from ..integrations._claude_entries import SUMMARY as CLAUDE_SUMMARY
from ..integrations.openai_agents import CLEAR as OPENAI_CLEAR
from ..integrations.openai_agents import ITEMS as OPENAI_ITEMS
from ..integrations.openai_agents import POP as OPENAI_POP
from ._entry import as_json, integration_message, notice
from ._langgraph import langgraph_entries
from ._model import Entry, ToolCall

_MESSAGE_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}
_TEXT_PART_TYPES = frozenset(("input_text", "output_text", "text", "summary_text", "reasoning_text"))


def _content_text(content: Any) -> str:
    """The text of a Responses message's content: a str, or its text parts (other parts named)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return "" if content is None else as_json(content)
    parts = []
    for part in content:
        if isinstance(part, dict):
            kind = part.get("type")
            if kind in _TEXT_PART_TYPES and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif kind == "refusal" and isinstance(part.get("refusal"), str):
                parts.append(f"(refused) {part['refusal']}")
            elif isinstance(kind, str):
                parts.append(f"[{kind}]")
        elif isinstance(part, str):
            parts.append(part)
    return "\n".join(parts)


def _openai_item(recorded: RecordedEvent, item: Any, owner: str) -> Entry:
    def entry(role: str, parts: list[tuple[str, object]]) -> Entry:
        return integration_message(recorded, owner, "openai_agents", role, parts)

    if not isinstance(item, dict):
        return notice(recorded, owner, "openai_agents", "item", as_json(item))
    kind = item.get("type")
    role = item.get("role")
    if isinstance(role, str) and (kind is None or kind == "message"):
        return entry(_MESSAGE_ROLES.get(role, role), [("text", _content_text(item.get("content")))])
    if kind == "reasoning":
        text = _content_text(item.get("summary")) or _content_text(item.get("content"))
        return entry("assistant", [("thinking", text or "(reasoning, no summary recorded)")])
    call_id = item.get("call_id") if isinstance(item.get("call_id"), str) else item.get("id")
    if isinstance(kind, str) and kind.endswith("_output") and isinstance(call_id, str):
        output = item.get("output")
        text = (
            output
            if isinstance(output, str)
            else _content_text(output)
            if isinstance(output, list)
            else as_json(output)
        )
        return entry("tool", [("result", ToolResult(call_id, kind.removesuffix("_output"), text))])
    if isinstance(kind, str) and kind.endswith("_call") and isinstance(call_id, str):
        if kind == "function_call":
            name = item.get("name") if isinstance(item.get("name"), str) else "function"
            raw = item.get("arguments")  # a JSON string, indented when the call is rendered
            arguments = raw if isinstance(raw, str) else json.dumps(raw, ensure_ascii=False, default=str)
        else:  # hosted tools (web_search_call, file_search_call, computer_call …): the item is the input
            name = kind.removesuffix("_call")
            kept = {k: v for k, v in item.items() if k not in ("type", "id", "call_id", "status")}
            arguments = json.dumps(kept, ensure_ascii=False, default=str)
        return entry("assistant", [("call", ToolCall(call_id, str(name), arguments))])
    return notice(recorded, owner, "openai_agents", str(kind or "item"), as_json(item))


def _claude_entry(recorded: RecordedEvent, data: Any, owner: str) -> list[Entry]:
    if not isinstance(data, dict):
        return [notice(recorded, owner, "claude_code", "entry", as_json(data))]
    kind = data.get("type")
    message = data.get("message")
    if kind in ("user", "assistant") and isinstance(message, dict):
        return []  # the Message it projects to follows in the same append
    if kind == "summary" and isinstance(data.get("summary"), str):
        return [notice(recorded, owner, "claude_code", "summary", data["summary"])]
    content = data.get("content")
    text = f"{kind}: {content}" if isinstance(kind, str) and isinstance(content, str) else str(kind or "entry")
    return [notice(recorded, owner, "claude_code", text, as_json(data))]


def custom_entries(recorded: RecordedEvent, event: Custom, owner: str, seen: set[str]) -> list[Entry]:
    """The entries one ``Custom`` event shows as; ``seen``: what earlier events of the page already showed."""
    name, data = event.name, event.data
    if name.startswith("langgraph."):
        found = langgraph_entries(recorded, event, owner, seen)
        if found is not None:
            return found
    if name == OPENAI_ITEMS and isinstance(data, dict) and isinstance(data.get("items"), list):
        return [_openai_item(recorded, item, owner) for item in data["items"]]
    if name == OPENAI_POP:
        return [notice(recorded, owner, "openai_agents", "the last item was removed (pop_item)", "")]
    if name == OPENAI_CLEAR:
        return [notice(recorded, owner, "openai_agents", "the session was cleared (clear_session)", "")]
    if name == CLAUDE_ENTRY:
        return _claude_entry(recorded, data, owner)
    if name in (CLAUDE_SUMMARY, CLAUDE_LINE):
        return []  # the SDK's listing summary and byte-exact lines: bookkeeping, not conversation
    return [notice(recorded, owner, "custom", name, as_json(data))]


__all__ = ["custom_entries"]
