"""A ready-made redaction hook: ``redact_api_keys`` masks common API-key patterns in event text.

Off by default (redaction loses data): pass ``open_store(..., redact=sessiondb.redact_api_keys)``.
It rewrites text, thinking, tool inputs and outputs, prompts, compaction
summaries and strings inside custom event data; ids, names and signatures are
left alone. The replacement keeps tool inputs valid JSON (no quotes or backslashes).
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from ._events import Compacted, Custom, Event, Message, PromptRecorded, Text, Thinking, ToolResult, ToolUse

# Each pattern's name appears in its replacement, so a reader knows what kind of secret was there.
_PATTERNS = {
    "anthropic": r"sk-ant-[A-Za-z0-9_\-]{16,}",
    "openai": r"sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}",
    "aws": r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA)[0-9A-Z]{16}\b",
    "github": r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})",
    "slack": r"\bxox[abposr]-[A-Za-z0-9\-]{10,}",
    "google": r"\bAIza[0-9A-Za-z_\-]{35}",
    "stripe": r"\b(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{16,}",
}
_SECRET = re.compile("|".join(f"(?P<{name}>{pattern})" for name, pattern in _PATTERNS.items()))
# "Authorization: Bearer <token>" and the like: keep the scheme, mask the credential.
_BEARER = re.compile(r"(?i)(\bbearer|authorization:\s*(?:token|basic))(\s+)([A-Za-z0-9\-._~+/]{16,}=*)")


def _mask(match: re.Match[str]) -> str:
    return f"[REDACTED:{match.lastgroup}]"


def redact_text(text: str) -> str:
    """``text`` with every recognised secret replaced by ``[REDACTED:<kind>]``."""
    if not text:
        return text
    text = _SECRET.sub(_mask, text)
    return _BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}[REDACTED:bearer]", text)


def _redact_data(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, list):
        return [_redact_data(item) for item in value]
    if isinstance(value, dict):
        return {key: _redact_data(item) for key, item in value.items()}
    return value


def _redact_block(block: Any) -> Any:
    if isinstance(block, Text):
        text = redact_text(block.text)
        return block if text == block.text else Text(text)
    if isinstance(block, Thinking):
        thinking = redact_text(block.thinking)
        return block if thinking == block.thinking else Thinking(thinking, block.signature)
    if isinstance(block, ToolUse):
        tool_input = redact_text(block.input)
        return block if tool_input == block.input else ToolUse(block.id, block.name, tool_input)
    if isinstance(block, ToolResult):
        output = redact_text(block.output)
        return (
            block if output == block.output else ToolResult(block.tool_use_id, block.tool_name, output, block.is_error)
        )
    return block


def redact_api_keys(event: Event) -> Event:
    """A redaction hook for ``open_store(redact=...)``: mask API keys and bearer tokens in ``event``."""
    if isinstance(event, Message):
        blocks = [_redact_block(block) for block in event.blocks]
        if all(new is old for new, old in zip(blocks, event.blocks, strict=True)):
            return event
        return Message(event.role, blocks, event.usage)
    if isinstance(event, PromptRecorded):
        return msgspec.structs.replace(event, text=redact_text(event.text))
    if isinstance(event, Compacted):
        return msgspec.structs.replace(event, summary=redact_text(event.summary))
    if isinstance(event, Custom):
        return Custom(event.name, _redact_data(event.data))
    return event


__all__ = ["redact_api_keys", "redact_text"]
