"""A brute-force search to check the index against: the documented matching rules, written out plainly.

For text whose compatibility form (NFKC: fullwidth letters, ligatures, super- and subscripts
as plain letters and digits) is ASCII: a word is a run of [a-z0-9] of that form after
lower-casing (everything else separates); query words are taken the same way;
a term matches a column when its words occur there in a row (the last one as a prefix
for ``word*``); an event matches when every term matches one of its columns; deleted
sessions' events never match.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import Any

from sessiondb import (
    Compacted,
    Custom,
    Message,
    PromptRecorded,
    RecordedEvent,
    SessionDeleted,
    SessionStarted,
    Text,
    Thinking,
    ToolResult,
    ToolUse,
)
from sessiondb._events import TagsChanged, TitleChanged

Term = tuple[tuple[str, ...], bool]  # (words, prefix)


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", unicodedata.normalize("NFKC", text).lower())


def normalized(terms: list[Term]) -> list[Term]:
    """Terms as compared: each word in its compatibility form, lower-cased."""
    return [(tuple(word for raw in wanted for word in words(raw)), prefix) for wanted, prefix in terms]


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


def labelled_documents(events: list[RecordedEvent]) -> tuple[dict[int, tuple[str, list[str]]], dict[str, Any]]:
    """position -> (session, columns) of every searchable document, and each session's scope and tags.

    A session's title is one document at its newest title event (none once cleared), its tags one
    document (the sorted tags, space-separated) at its newest tag event (none without tags).
    """
    documents: dict[int, tuple[str, list[str]]] = {}
    labels: dict[str, Any] = {}
    title_at: dict[str, int] = {}
    tags_at: dict[str, int] = {}
    for e in sorted(events, key=lambda e: e.position):
        sid, event = e.session_id, e.event
        state = labels.setdefault(sid, {"scope": None, "tags": set()})
        if isinstance(event, SessionStarted):
            state["scope"] = event.scope
        elif isinstance(event, TitleChanged):
            documents.pop(title_at.pop(sid, -1), None)
            if event.title:
                documents[e.position] = (sid, [event.title])
                title_at[sid] = e.position
        elif isinstance(event, TagsChanged):
            state["tags"] = (state["tags"] - set(event.removed)) | set(event.added)
            documents.pop(tags_at.pop(sid, -1), None)
            if state["tags"]:
                documents[e.position] = (sid, [" ".join(sorted(state["tags"]))])
                tags_at[sid] = e.position
        elif cols := columns(event):
            documents[e.position] = (sid, cols)
    return documents, labels


def expected_positions(
    events: list[RecordedEvent],
    terms: list[Term],
    session_id: str | None = None,
    scope: str | None = None,
    tag: str | None = None,
) -> set[int]:
    terms = normalized(terms)
    deleted = {e.session_id for e in events if isinstance(e.event, SessionDeleted)}
    documents, labels = labelled_documents(events)
    found = set()
    for position, (sid, cols) in documents.items():
        if sid in deleted or (session_id is not None and sid != session_id):
            continue
        if scope is not None and labels[sid]["scope"] != scope:
            continue
        if tag is not None and tag not in labels[sid]["tags"]:
            continue
        tokens = [words(c) for c in cols]
        if all(any(term_matches(term, col) for col in tokens) for term in terms):
            found.add(position)
    return found


def query_text(terms: list[Term]) -> str:
    parts = []
    for wanted, prefix in terms:
        text = " ".join(wanted)
        text = f'"{text}"' if len(wanted) > 1 else text
        parts.append(text + "*" if prefix else text)
    return " ".join(parts)
