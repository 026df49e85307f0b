"""Text rendering for the command line: tables, conversations and one-line event summaries."""

from __future__ import annotations

import datetime
import os
import shutil
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import msgspec

from .._backends._base import SessionInfo
from .._counts import LANGGRAPH_SCOPE, OPENAI_SCOPE, describe
from .._events import (
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
from .._labels import BIDI_CONTROLS
from .._projection import Session

# Lines of a tool result (or tool input) shown before the rest is folded, unless --full.
FOLD_LINES = 12


class Style:
    """ANSI styling, only when writing to a terminal (and NO_COLOR is unset): piped output stays plain."""

    def __init__(self, stream: TextIO) -> None:
        isatty = getattr(stream, "isatty", None)
        self.enabled = bool(isatty and isatty()) and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
        self.width = shutil.get_terminal_size((100, 24)).columns if self.enabled else 0

    def _wrap(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.enabled else text

    def bold(self, text: str) -> str:
        return self._wrap("1", text)

    def dim(self, text: str) -> str:
        return self._wrap("2", text)

    def role(self, role: str, text: str) -> str:
        colour = {"user": "1;32", "assistant": "1;36", "tool": "1;33", "system": "1;35"}.get(role, "1")
        return self._wrap(colour, text)

    def error(self, text: str) -> str:
        return self._wrap("31", text)


def format_time(ms: int) -> str:
    if ms <= 0:
        return "-"
    moment = datetime.datetime.fromtimestamp(ms / 1000).astimezone()
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def iso_time(ms: int) -> str | None:
    if ms <= 0:
        return None
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).isoformat(timespec="milliseconds")


def format_count(value: int) -> str:
    return f"{value:,}"


def format_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover


def fork_label(info: SessionInfo | Session) -> str:
    fork = info.fork
    if fork is None:
        return ""
    label = f"{fork.parent_session_id}@{fork.parent_version}"
    return f"{label} ({fork.branch_name})" if fork.branch_name else label


def display_width(text: str) -> int:
    """The terminal columns ``text`` takes: East Asian wide and fullwidth characters (CJK, most emoji) 2,
    combining marks, format characters (zero-width joiner …) and variation selectors 0, others 1; an
    emoji presentation selector (U+FE0F) widens the symbol before it to 2, as terminals draw it."""
    if text.isascii():
        return len(text)
    width = 0
    previous = 1
    for char in text:
        if char == "\ufe0f":
            width += 1 if previous == 1 else 0  # ❤ + U+FE0F is drawn as a wide emoji
            previous = 2
            continue
        if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Me", "Cf", "Cc"):
            continue
        previous = 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
        width += previous
    return width


def cut(text: str, width: int, *, middle: bool = False) -> str:
    """``text`` within ``width`` terminal columns, ``…`` where it was cut: at the end, or in the ``middle``
    (for ids, whose start and end both tell them apart: ``cc~-home-me-app~4f1c…e8a1``)."""
    if display_width(text) <= width:
        return text
    if not middle:
        return _fit(text, width - 1) + "…"
    tail = _fit(text[::-1], (width - 1) // 2)[::-1]
    return _fit(text, width - 1 - display_width(tail)) + "…" + tail


def _fit(text: str, width: int) -> str:
    """The longest start of ``text`` that fits ``width`` columns."""
    taken = 0
    for end, char in enumerate(text):
        taken += display_width(char)
        if taken > width:
            return text[:end]
    return text


def pad(text: str, width: int, *, right: bool = False) -> str:
    """``text`` padded with spaces to ``width`` terminal columns (``right``: aligned right)."""
    fill = " " * max(0, width - display_width(text))
    return fill + text if right else text + fill


def table(rows: Sequence[Sequence[str]], header: Sequence[str], style: Style, right: set[int]) -> list[str]:
    """Columns padded to their widest cell, in terminal columns (wide characters count 2); numbers (``right``)
    aligned right."""
    widths = [max(display_width(header[i]), *(display_width(row[i]) for row in rows)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(pad(cell, widths[i], right=i in right) for i, cell in enumerate(cells)).rstrip()

    return [style.bold(line(header)), *(line(row) for row in rows)]


def session_rows(sessions: Sequence[SessionInfo]) -> list[list[str]]:
    return [
        [
            cell(info.session_id, SESSION_CELL_WIDTH, middle=True),  # ids may hold bidi controls too: escaped
            format_time(info.updated_at_ms),
            describe(info.message_count, info.item_count, info.checkpoint_count, scope=info.scope),
            format_count(info.total_tokens),
            cell(info.model or "-", MODEL_CELL_WIDTH),
            fork_cell(info),
        ]
        for info in sessions
    ]


def fork_cell(info: SessionInfo) -> str:
    fork = info.fork
    if fork is None:
        return "-"
    label = f"{cell(fork.parent_session_id, SESSION_CELL_WIDTH, middle=True)}@{fork.parent_version}"
    return f"{label} ({cell(fork.branch_name, BRANCH_CELL_WIDTH)})" if fork.branch_name else label


SESSION_HEADER = ("SESSION", "UPDATED", "HOLDS", "TOKENS", "MODEL", "FORK OF")


# Widest cells of the ls table, in terminal columns (--json has every value whole). An id is cut in the middle.
SESSION_CELL_WIDTH = 48
MODEL_CELL_WIDTH = 40
BRANCH_CELL_WIDTH = 24
TITLE_CELL_CHARS = 60
SCOPE_CELL_CHARS = 40
TAGS_CELL_WIDTH = 40


def visible(text: str) -> str:
    """``text`` with bidirectional controls shown as escapes: a terminal would reorder the text around them.

    New titles and scopes refuse them; logs written before that rule, and message text, may hold them.
    """
    return BIDI_CONTROLS.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def cell(text: str, width: int, *, middle: bool = False) -> str:
    """A table cell: bidi controls escaped, cut to ``width`` terminal columns with '…' (see ``cut``)."""
    return cut(visible(text), width, middle=middle)


def label_columns(
    sessions: Sequence[SessionInfo], rows: list[list[str]], header: tuple[str, ...]
) -> tuple[list[list[str]], tuple[str, ...]]:
    """Add TITLE (``*`` marks a pinned session), TAGS and SCOPE columns, each only if some session has one."""
    columns: tuple[tuple[str, Callable[[SessionInfo], str]], ...] = (
        (
            "TITLE",
            lambda info: (
                ("* " if info.pinned else "")
                + (cell(info.title, TITLE_CELL_CHARS) if info.title else ("-" if not info.pinned else ""))
            ),
        ),
        ("TAGS", lambda info: cell(" ".join(info.tags), TAGS_CELL_WIDTH) if info.tags else "-"),
        ("SCOPE", lambda info: cell(info.scope, SCOPE_CELL_CHARS) if info.scope else "-"),
    )
    wanted = (
        any(info.title is not None or info.pinned for info in sessions),
        any(info.tags for info in sessions),
        any(info.scope is not None for info in sessions),
    )
    for (name, column), use in zip(columns, wanted, strict=True):
        if use:
            header = (*header, name)
            for row, info in zip(rows, sessions, strict=True):
                row.append(column(info))
    return rows, header


def info_json(info: SessionInfo) -> dict[str, Any]:
    fork = info.fork
    return {
        "session_id": info.session_id,
        "created_at": iso_time(info.created_at_ms),
        "updated_at": iso_time(info.updated_at_ms),
        "created_at_ms": info.created_at_ms,
        "updated_at_ms": info.updated_at_ms,
        "version": info.version,
        "message_count": info.message_count,
        "item_count": info.item_count,
        "checkpoint_count": info.checkpoint_count,
        "holds": describe(info.message_count, info.item_count, info.checkpoint_count, scope=info.scope),
        "total_tokens": info.total_tokens,
        "usage": msgspec.to_builtins(info.usage),
        "model": info.model,
        "workspace_root": info.workspace_root,
        "parent_session_id": fork.parent_session_id if fork else None,
        "parent_version": fork.parent_version if fork else None,
        "branch_name": fork.branch_name if fork else None,
        "compacted": info.compacted,
        "scope": info.scope,
        "title": info.title,
        "tags": list(info.tags),
        "pinned": info.pinned,
    }


def usage_text(usage: Usage) -> str:
    parts = [f"in {format_count(usage.input_tokens)}", f"out {format_count(usage.output_tokens)}"]
    if usage.cache_creation_input_tokens:
        parts.append(f"cache write {format_count(usage.cache_creation_input_tokens)}")
    if usage.cache_read_input_tokens:
        parts.append(f"cache read {format_count(usage.cache_read_input_tokens)}")
    return " / ".join(parts)


def _fold(text: str, full: bool, indent: str, style: Style) -> list[str]:
    lines = text.splitlines() or [""]
    if full or len(lines) <= FOLD_LINES:
        return [indent + line for line in lines]
    hidden = len(lines) - FOLD_LINES
    return [indent + line for line in lines[:FOLD_LINES]] + [style.dim(f"{indent}... {hidden} more line(s) (--full)")]


def render_session(session: Session, style: Style, *, thinking: bool = False, full: bool = False) -> list[str]:
    """A conversation for a person: header, then each message with its blocks."""
    out = [
        f"{style.bold('session')}  {visible(session.session_id)}",
        f"{style.bold('model')}    {visible(session.model or '-')}"
        + (f"    {style.bold('workspace')} {visible(session.workspace_root)}" if session.workspace_root else ""),
        f"{style.bold('created')}  {format_time(session.created_at_ms)}    "
        f"{style.bold('updated')} {format_time(session.updated_at_ms)}    {style.bold('version')} {session.version}",
        f"{style.bold('usage')}    {usage_text(session.usage)} (total {format_count(session.usage.total_tokens)})",
    ]
    if session.fork is not None:
        out.append(f"{style.bold('fork of')}  {fork_label(session)}")
    if session.title is not None or session.pinned:
        out.append(
            f"{style.bold('title')}    {visible(session.title or '-')}" + ("    (pinned)" if session.pinned else "")
        )
    if session.tags or session.scope is not None:
        out.append(
            f"{style.bold('tags')}     {' '.join(session.tags) or '-'}"
            + (f"    {style.bold('scope')} {visible(session.scope)}" if session.scope is not None else "")
        )
    if session.compaction is not None:
        out.append(
            f"{style.bold('compacted')} {session.compaction.count} time(s); the first message summarises "
            f"{session.compaction.removed_message_count} earlier message(s)"
        )
    if session.prompt_history:
        out.append(f"{style.bold('prompts')}  {len(session.prompt_history)} in the prompt history")
    integration = session.scope in (OPENAI_SCOPE, LANGGRAPH_SCOPE) and not session.messages
    if session.item_count or session.checkpoint_count or integration:
        # An integration's session: its conversation is in custom events, which this view does not render.
        holds = describe(len(session.messages), session.item_count, session.checkpoint_count, scope=session.scope)
        langgraph = session.checkpoint_count or session.scope == LANGGRAPH_SCOPE
        kind = "a LangGraph thread" if langgraph else "an OpenAI Agents SDK session"
        out.append(f"{holds} ({kind}, kept in custom events: {_SEE_ITEMS})")
    else:
        out.append(f"{len(session.messages)} message(s)")
    for message in session.messages:
        out.append("")
        out.extend(render_message(message, style, thinking=thinking, full=full))
    return out


_SEE_ITEMS = "show --raw lists them, sessiondb serve shows them as a conversation"


def render_message(message: Message, style: Style, *, thinking: bool = False, full: bool = False) -> list[str]:
    title = f"--- {message.role} "
    if message.usage is not None:
        title += f"({usage_text(message.usage)}) "
    out = [style.role(message.role, title + "-" * max(3, 60 - len(title)))]
    for block in message.blocks:
        if isinstance(block, Text):
            out.extend(_fold(block.text, True, "", style))
        elif isinstance(block, Thinking):
            if thinking:
                out.append(style.dim("[thinking]"))
                out.extend(style.dim(line) for line in _fold(block.thinking, True, "  ", style))
            else:
                out.append(style.dim(f"[thinking: {len(block.thinking):,} characters, folded; --thinking shows it]"))
        elif isinstance(block, ToolUse):
            out.append(style.bold(f"[tool call] {block.name}") + style.dim(f" ({block.id})"))
            out.extend(_fold(_pretty_json(block.input), full, "  ", style))
        elif isinstance(block, ToolResult):
            label = "[tool error]" if block.is_error else "[tool result]"
            out.append(style.bold(f"{label} {block.tool_name}") + style.dim(f" ({block.tool_use_id})"))
            out.extend(_fold(block.output, full, "  ", style))
    return out


def _pretty_json(text: str) -> str:
    try:
        return msgspec.json.format(text.encode(), indent=2).decode()
    except (msgspec.DecodeError, UnicodeDecodeError):
        return text


def _one_line(text: str, limit: int) -> str:
    flat = visible(" ".join(text.split()))
    return flat if len(flat) <= limit else flat[: max(0, limit - 3)] + "..."


def event_summary(event: object, limit: int = 160) -> str:
    """What an event is, in a few words: for ``show --raw`` and ``tail``."""
    if isinstance(event, Message):
        parts: list[str] = []
        for block in event.blocks:
            if isinstance(block, Text):
                parts.append(block.text)
            elif isinstance(block, Thinking):
                parts.append(f"[thinking {len(block.thinking):,} chars]")
            elif isinstance(block, ToolUse):
                parts.append(f"[tool call {block.name}]")
            elif isinstance(block, ToolResult):
                parts.append(f"[{'tool error' if block.is_error else 'tool result'} {block.tool_name}] {block.output}")
        usage = f" ({usage_text(event.usage)})" if event.usage is not None else ""
        return _one_line(f"{event.role}: " + " ".join(parts), limit) + usage
    if isinstance(event, SessionStarted):
        text = f"session started (model {event.model or '-'}"
        text += f", scope {visible(event.scope)})" if event.scope is not None else ")"
        if event.fork is not None:
            text += f", fork of {event.fork.parent_session_id}@{event.fork.parent_version}"
        return text
    if isinstance(event, PromptRecorded):
        return _one_line(f"prompt: {event.text}", limit)
    if isinstance(event, Compacted):
        return _one_line(f"compaction of {event.removed_message_count} message(s): {event.summary}", limit)
    if isinstance(event, Custom):
        return _one_line(f"custom {event.name}: {msgspec.json.encode(event.data).decode()}", limit)
    if isinstance(event, SessionDeleted):
        return "session deleted"
    if isinstance(event, TitleChanged):
        return _one_line(f"title: {event.title}" if event.title is not None else "title cleared", limit)
    if isinstance(event, TagsChanged):
        changes = [f"+{tag}" for tag in event.added] + [f"-{tag}" for tag in event.removed]
        return _one_line("tags " + " ".join(changes), limit)
    if isinstance(event, PinChanged):
        return "pinned" if event.pinned else "unpinned"
    return type(event).__name__  # pragma: no cover


def event_line(recorded: RecordedEvent, style: Style, *, with_session: bool) -> str:
    head = f"{format_time(recorded.timestamp_ms)}  "
    if with_session:
        head += f"{visible(recorded.session_id)}  "
    head += f"v{recorded.version}  p{recorded.position}  "
    limit = max(40, style.width - len(head) - 1) if style.width else 400
    return style.dim(head) + event_summary(recorded.event, limit)


_encoder = msgspec.json.Encoder()


def event_json(recorded: RecordedEvent) -> str:
    return _encoder.encode(recorded).decode()


__all__ = [
    "SESSION_HEADER",
    "Style",
    "event_json",
    "event_line",
    "format_bytes",
    "format_count",
    "format_time",
    "info_json",
    "label_columns",
    "render_session",
    "session_rows",
    "table",
]
