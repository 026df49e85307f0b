"""A brute-force search to check the index against: the documented matching rules, written out plainly.

For ASCII text: a word is a run of [a-z0-9] after lower-casing (everything else separates);
a term matches a column when its words occur there in a row (the last one as a prefix
for ``word*``); an event matches when every term matches one of its columns; deleted
sessions' events never match.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from sessiondb import (
    Compacted,
    Custom,
    Message,
    PromptRecorded,
    RecordedEvent,
    SessionDeleted,
    Text,
    Thinking,
    ToolResult,
    ToolUse,
)

Term = tuple[tuple[str, ...], bool]  # (words, prefix)


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def columns(event: object) -> list[str]:
    if isinstance(event, Message):
        text = "\n".join(b.text for b in event.blocks if isinstance(b, Text))
        thinking = "\n".join(b.thinking for b in event.blocks if isinstance(b, Thinking))
        uses = "\n".join(f"{b.name}\n{b.input}" for b in event.blocks if isinstance(b, ToolUse))
        results = "\n".join(f"{b.tool_name}\n{b.output}" for b in event.blocks if isinstance(b, ToolResult))
        return [text, thinking, uses, results]
    if isinstance(event, PromptRecorded):
        return [event.text]
    if isinstance(event, Compacted):
        return [event.summary]
    if isinstance(event, Custom):
        return ["\n".join(_strings(event.data))]
    return []


def _strings(value: object) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)


def term_matches(term: Term, column: list[str]) -> bool:
    wanted, prefix = term
    for start in range(len(column) - len(wanted) + 1):
        ok = True
        for offset, word in enumerate(wanted):
            have = column[start + offset]
            last = offset == len(wanted) - 1
            if not (have.startswith(word) if last and prefix else have == word):
                ok = False
                break
        if ok:
            return True
    return False


def expected_positions(events: list[RecordedEvent], terms: list[Term], session_id: str | None = None) -> set[int]:
    deleted = {e.session_id for e in events if isinstance(e.event, SessionDeleted)}
    found = set()
    for e in events:
        if e.session_id in deleted or (session_id is not None and e.session_id != session_id):
            continue
        cols = [words(c) for c in columns(e.event)]
        if cols and all(any(term_matches(term, col) for col in cols) for term in terms):
            found.add(e.position)
    return found


def query_text(terms: list[Term]) -> str:
    parts = []
    for wanted, prefix in terms:
        text = " ".join(wanted)
        text = f'"{text}"' if len(wanted) > 1 else text
        parts.append(text + "*" if prefix else text)
    return " ".join(parts)
