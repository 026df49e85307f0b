"""Conversation compaction helpers: where to cut, a local summary, and when a compaction is due.

Conversation compaction is an event (``Compacted``), not a rewrite: the live
context shrinks to one summary message plus the kept messages while the log
keeps everything before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ._errors import InvalidInputError
from ._events import Message, Text, ToolResult, ToolUse
from ._projection import CONTINUATION_PREAMBLE, RECENT_MESSAGES_NOTE, Session, is_continuation_message

# Upstream compacts automatically once a session's input tokens reach this.
DEFAULT_TOKEN_THRESHOLD = 100_000
_ENTRY_CHARS = 160
_CURRENT_WORK_CHARS = 200
_PENDING_WORDS = ("todo", "next", "pending", "follow up", "remaining")
_FILE_EXTENSIONS = ("rs", "ts", "tsx", "js", "json", "md", "py", "toml", "yaml", "yml", "go", "java", "c", "h", "cpp")
_STRIP = ",.:;)(\"'`{}[]<>"


@dataclass(frozen=True)
class CompactionPlan:
    """Where a conversation compaction cuts the live context."""

    removed: list[Message]  # the live messages the summary replaces (the old summary message excluded)
    kept: list[Message]
    previous_summary: str | None  # the summary of an earlier compaction, when the context starts with one

    @property
    def removed_message_count(self) -> int:
        return len(self.removed)


def plan_compaction(
    session_id: str, messages: Sequence[Message], keep_last: int, *, move_boundary: bool = True
) -> CompactionPlan:
    """Cut ``messages`` (a live context) so that the last ``keep_last`` messages stay.

    The cut never separates a tool result from its tool use: with
    ``move_boundary`` it moves back to keep the tool use too (as upstream
    does); without, such a cut is refused. A cut that would leave a tool result
    whose tool use is nowhere in the kept messages is refused with a clear error.
    """
    if type(keep_last) is not int or keep_last < 0:
        raise InvalidInputError(f"keep_last must be a non-negative int, got {keep_last!r}")
    prefix = 1 if messages and is_continuation_message(messages[0]) else 0
    previous = _summary_of(messages[0]) if prefix else None
    cut = max(prefix, len(messages) - keep_last)
    uses: dict[str, int] = {}
    for index, message in enumerate(messages):
        for block in message.blocks:
            if isinstance(block, ToolUse):
                uses.setdefault(block.id, index)
    while True:
        earliest = cut
        for message in messages[cut:]:
            for block in message.blocks:
                if isinstance(block, ToolResult):
                    use = uses.get(block.tool_use_id)
                    if use is None or use < prefix:
                        raise InvalidInputError(
                            f"compacting session {session_id!r} would keep the tool result for "
                            f"{block.tool_use_id!r} ({block.tool_name}) without its tool use, which is not in the "
                            "live context; keep fewer messages or more so the pair stays together"
                        )
                    earliest = min(earliest, use)
        if earliest >= cut:
            break
        if not move_boundary:
            raise InvalidInputError(
                f"compacting session {session_id!r} keeping the last {keep_last} messages would separate a tool "
                "result from its tool use; keep more messages (or allow the boundary to move back)"
            )
        cut = earliest
    if cut <= prefix:
        raise InvalidInputError(
            f"nothing to compact in session {session_id!r}: its live context has {len(messages) - prefix} "
            f"messages and keep_last={keep_last} keeps them all (tool use/result pairs are never split)"
        )
    return CompactionPlan(list(messages[prefix:cut]), list(messages[cut:]), previous)


def _summary_of(message: Message) -> str:
    block = message.blocks[0]
    assert isinstance(block, Text)
    text = block.text[len(CONTINUATION_PREAMBLE) :]
    suffix = "\n\n" + RECENT_MESSAGES_NOTE
    return text[: -len(suffix)] if text.endswith(suffix) else text


def shorten(text: str, limit: int = _ENTRY_CHARS) -> str:
    """``text`` cut to ``limit`` characters, with an ellipsis when cut."""
    return text if len(text) <= limit else text[:limit] + "…"


def _block_line(block: object) -> str:
    if isinstance(block, Text):
        raw = block.text
    elif isinstance(block, ToolUse):
        raw = f"tool_use {block.name}({block.input})"
    elif isinstance(block, ToolResult):
        raw = f"tool_result {block.tool_name}: {'error ' if block.is_error else ''}{block.output}"
    else:
        raw = f"({type(block).__name__.lower()})"  # thinking blocks: not worth repeating
    return shorten(raw)


def _first_text(message: Message) -> str | None:
    for block in message.blocks:
        if isinstance(block, Text) and block.text.strip():
            return block.text
    return None


def _file_candidates(text: str) -> list[str]:
    found = []
    for token in text.split():
        candidate = token.strip(_STRIP)
        if "/" in candidate and "." in candidate:
            extension = candidate.rsplit(".", 1)[1].lower()
            if extension in _FILE_EXTENSIONS:
                found.append(candidate)
    return found


def summarize_messages(messages: Sequence[Message]) -> str:
    """A local summary of ``messages``, built the way the reference CLI builds one (no model call).

    Counts by role, tools used, the last user requests, pending work, key
    files, the current work and a timeline, each entry shortened.
    """
    counts = {role: sum(1 for m in messages if m.role == role) for role in ("user", "assistant", "tool")}
    tools = sorted(
        {
            block.name if isinstance(block, ToolUse) else block.tool_name
            for message in messages
            for block in message.blocks
            if isinstance(block, ToolUse | ToolResult)
        }
    )
    lines = [
        "Conversation summary:",
        f"- Scope: {len(messages)} earlier messages compacted "
        f"(user={counts['user']}, assistant={counts['assistant']}, tool={counts['tool']}).",
    ]
    if tools:
        lines.append(f"- Tools mentioned: {', '.join(tools)}.")
    requests = [shorten(t) for m in messages if m.role == "user" and (t := _first_text(m)) is not None][-3:]
    if requests:
        lines.append("- Recent user requests:")
        lines += [f"  - {request}" for request in requests]
    texts = [t for m in messages if (t := _first_text(m)) is not None]
    pending = [shorten(t) for t in texts if any(word in t.lower() for word in _PENDING_WORDS)][-3:]
    if pending:
        lines.append("- Pending work:")
        lines += [f"  - {item}" for item in pending]
    files: set[str] = set()
    for message in messages:
        for block in message.blocks:
            if isinstance(block, Text):
                files.update(_file_candidates(block.text))
            elif isinstance(block, ToolUse):
                files.update(_file_candidates(block.input))
            elif isinstance(block, ToolResult):
                files.update(_file_candidates(block.output))
    if files:
        lines.append(f"- Key files referenced: {', '.join(sorted(files)[:8])}.")
    current = next((t for t in reversed(texts) if t.strip()), None)
    if current is not None:
        lines.append(f"- Current work: {shorten(current, _CURRENT_WORK_CHARS)}")
    lines.append("- Key timeline:")
    for message in messages:
        content = " | ".join(_block_line(block) for block in message.blocks)
        lines.append(f"  - {message.role}: {content}")
    return "\n".join(lines)


_TIMELINE = "- Key timeline:"


def merge_summaries(previous: str | None, new: str) -> str:
    """One summary from an earlier compaction's summary and a new one (the earlier timeline is dropped)."""
    if not previous:
        return new
    previous_highlights = _highlights(previous)
    new_highlights = _highlights(new)
    timeline = _timeline(new)
    lines = ["Conversation summary:"]
    if previous_highlights:
        lines.append("- Previously compacted context:")
        lines += [f"  {line}" for line in previous_highlights]
    if new_highlights:
        lines.append("- Newly compacted context:")
        lines += [f"  {line}" for line in new_highlights]
    if timeline:
        lines.append(_TIMELINE)
        lines += timeline
    return "\n".join(lines)


def _highlights(summary: str) -> list[str]:
    out = []
    for line in summary.splitlines():
        if line.strip() == _TIMELINE.strip():
            break
        if line.strip() and line.strip() != "Conversation summary:":
            out.append(line.rstrip())
    return out


def _timeline(summary: str) -> list[str]:
    lines = summary.splitlines()
    for index, line in enumerate(lines):
        if line.strip() == _TIMELINE.strip():
            return [entry for entry in lines[index + 1 :] if entry.strip()]
    return []


def local_summary(plan: CompactionPlan) -> str:
    """The summary a compaction by ``plan`` records when the caller brings none: merged with the earlier one."""
    return merge_summaries(plan.previous_summary, summarize_messages(plan.removed))


@dataclass(frozen=True)
class TokenThresholdPolicy:
    """Says when a conversation compaction is due, from the input tokens recorded in the live context.

    Upstream compacts automatically at 100,000 input tokens. Only the messages
    after the last compaction count, so a compaction resets the measure.
    """

    threshold: int = DEFAULT_TOKEN_THRESHOLD

    def __post_init__(self) -> None:
        if type(self.threshold) is not int or self.threshold < 0:
            raise InvalidInputError(f"TokenThresholdPolicy(threshold=...) must be an int >= 0, got {self.threshold!r}")

    def live_input_tokens(self, session: Session) -> int:
        return sum(m.usage.input_tokens for m in session.messages if m.usage is not None)

    def due(self, session: Session) -> bool:
        return self.live_input_tokens(session) >= self.threshold


def estimate_tokens(messages: Sequence[Message]) -> int:
    """A rough token count of ``messages`` (4 characters a token), for callers without usage figures."""
    total = 0
    for message in messages:
        for block in message.blocks:
            if isinstance(block, Text):
                total += len(block.text) // 4 + 1
            elif isinstance(block, ToolUse):
                total += (len(block.name) + len(block.input)) // 4 + 1
            elif isinstance(block, ToolResult):
                total += (len(block.tool_name) + len(block.output)) // 4 + 1
    return total


__all__ = [
    "DEFAULT_TOKEN_THRESHOLD",
    "CompactionPlan",
    "TokenThresholdPolicy",
    "estimate_tokens",
    "local_summary",
    "merge_summaries",
    "plan_compaction",
    "summarize_messages",
]
