"""What search sees of an event (its document), the query syntax, and the word rules both engines share.

A word is a run of letters and digits (anything else, ``_`` included, separates
words), compared without case, without diacritics and in its compatibility form
(NFKD: fullwidth letters are their ASCII twins, the ligature "ﬁ" is "fi", "H₂O" is "h2o"): SQLite's
``unicode61`` tokenizer with ``remove_diacritics 2`` folds case and diacritics for the
directory store, and gets each word with compatibility characters already in its
normalized form (``folded``; snippets are made from the text as written); the same
rules applied here (``lexemes``) feed PostgreSQL, whose own parser would otherwise keep
``foo.bar`` or ``a-b`` as one word. Queries are normalized the same way.

Chinese, Japanese and Korean are written without spaces between words, so a run of
their characters would be one "word" and a word inside a sentence never found. Each
such character (Han, kana, Hangul, Bopomofo: ``CJK``) is therefore a word of its own,
compared as it is, and a query's run of them is a phrase: ``测试`` finds "这是一个测试"
as "测 试" in a row (what Lucene's CJK unigrams do, without a dictionary). For SQLite,
``cjk_tokens`` puts ``SEPARATOR`` (a control character ``unicode61`` splits on) between a
CJK character and a letter or digit next to it; ``parse_marked`` takes it out of
snippets again. Scripts without spaces that are not CJK (Thai, Lao, Khmer, Burmese)
keep the one-run-one-word rule.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from .._errors import InvalidInputError
from .._events import (
    Compacted,
    Custom,
    Message,
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
)

# The four document columns, in the order of the FTS5 table and of ``Document.columns``.
COLUMNS = ("text", "thinking", "tool_use", "tool_result")
# A Message hit's kind is the column its snippet came from.
COLUMN_KINDS = ("message", "thinking", "tool_use", "tool_result")
MAX_QUERY_CHARS = 1_000
MAX_QUERY_TERMS = 32
# Custom data: a string this long without a space is an opaque blob (base64, a signature), not text.
_OPAQUE_CHARS = 200
# The snippet markers SQLite puts around matches; removed from indexed text so they stay unambiguous.
START_MARK = "\x02"
END_MARK = "\x03"
_MARKS = str.maketrans({START_MARK: " ", END_MARK: " "})
_WORD = re.compile(r"[^\W_]+")
# Han (unified, extensions, compatibility, iteration marks), kana (with halfwidth), Hangul, Bopomofo.
_CJK_CLASS = (
    "\u1100-\u11ff\u3005-\u3007\u3021-\u3029\u3031-\u3035\u3038-\u303c\u3040-\u30ff\u3100-\u312f"
    "\u3130-\u318f\u31a0-\u31bf\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\ua960-\ua97f\uac00-\ud7ff"
    "\uf900-\ufaff\uff66-\uff9f\U00020000-\U0003ffff"
)
CJK = re.compile(f"[{_CJK_CLASS}]")
# A CJK character alone, or a run of other letters and digits.
_WORD_CJK = re.compile(f"[{_CJK_CLASS}]|(?:(?![{_CJK_CLASS}])[^\\W_])+")
# Where a CJK character meets a letter or digit: SQLite gets a separator there.
_CJK_JOINT = re.compile(f"(?<=[{_CJK_CLASS}])(?=[^\\W_])|(?<=[^\\W_])(?=[{_CJK_CLASS}])")
SEPARATOR = "\x1f"


@dataclass(frozen=True, slots=True)
class Document:
    """The searchable text of one event: one row of the index, keyed by the event's position."""

    position: int
    session_id: str
    version: int
    timestamp_ms: int
    kind: str  # "message", "prompt", "compaction", "custom", "title" or "tags"
    columns: tuple[str, str, str, str]  # text, thinking, tool_use, tool_result


def document_for(session_id: str, version: int, position: int, timestamp_ms: int, event: object) -> Document | None:
    """The document of one recorded event, or None when it has nothing to search (starts, deletions ...)."""
    if type(event) is Message:
        text: list[str] = []
        thinking: list[str] = []
        tool_use: list[str] = []
        tool_result: list[str] = []
        for block in event.blocks:
            kind = type(block)
            if kind is Text:
                text.append(block.text)  # type: ignore[union-attr]
            elif kind is ToolUse:
                tool_use.append(f"{block.name}\n{block.input}")  # type: ignore[union-attr]
            elif kind is ToolResult:
                tool_result.append(f"{block.tool_name}\n{block.output}")  # type: ignore[union-attr]
            elif kind is Thinking:
                thinking.append(block.thinking)  # type: ignore[union-attr]
        columns = (_join(text), _join(thinking), _join(tool_use), _join(tool_result))
        kind_name = "message"
    elif type(event) is PromptRecorded:
        columns, kind_name = (_clean(event.text), "", "", ""), "prompt"
    elif type(event) is Compacted:
        columns, kind_name = (_clean(event.summary), "", "", ""), "compaction"
    elif type(event) is Custom:
        columns, kind_name = (_join(list(_strings(event.data))), "", "", ""), "custom"
    else:
        return None
    if not any(columns):
        return None
    return Document(position, session_id, version, timestamp_ms, kind_name, columns)


def _join(parts: list[str]) -> str:
    return _clean("\n".join(parts)) if parts else ""


def _clean(text: str) -> str:
    return text.translate(_MARKS) if START_MARK in text or END_MARK in text else text


def _strings(value: object) -> Iterator[str]:
    """The string values (not the keys) of Custom data, depth first, skipping opaque blobs."""
    if type(value) is str:
        if len(value) <= _OPAQUE_CHARS or " " in value or "\n" in value:
            yield value
    elif type(value) is list:
        for item in value:
            yield from _strings(item)
    elif type(value) is dict:
        for item in value.values():
            yield from _strings(item)


# ---------------------------------------------------------------- words


def normalize(word: str) -> str:
    """A word as it is compared: diacritics removed, case folded (as ``unicode61 remove_diacritics 2``)."""
    if word.isascii():
        return word.lower()
    decomposed = unicodedata.normalize("NFKD", word)
    return "".join(c for c in decomposed if c.isalnum()).lower()


def word_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, normalized word) of every word of ``text``; a CJK character is a word, kept as it is."""
    spans = []
    if text.isascii() or CJK.search(text) is None:
        for match in _WORD.finditer(text):
            word = normalize(match.group())
            if word:
                spans.append((match.start(), match.end(), word))
        return spans
    for match in _WORD_CJK.finditer(text):
        word = match.group()
        if len(word) > 1 or CJK.match(word) is None:
            word = normalize(word)
        if word:
            spans.append((match.start(), match.end(), word))
    return spans


def folded(text: str) -> str:
    """``text`` with each word that has compatibility characters replaced by its normalized form.

    ``normalize`` (queries, PostgreSQL's lexemes) applies NFKD, which ``unicode61`` does
    not: it would index fullwidth "API", "ﬁnal" and "H₂O" as they are, and no query
    (normalized to "api", "final", "h2o") could find them. Words without such characters
    (nearly all text, accented or not) are left to ``unicode61``, whose folding equals
    ``normalize`` for them, so they keep their form. CJK characters stay as they are (they
    are compared as written, ``word_spans``). Returns ``text`` itself when nothing changed.
    """
    if text.isascii() or unicodedata.is_normalized("NFKC", text):
        return text
    parts: list[str] = []
    done = 0
    for start, end, word in word_spans(text):
        if not unicodedata.is_normalized("NFKC", text[start:end]) and word != text[start:end]:
            parts += (text[done:start], word)
            done = end
    if not parts:
        return text
    parts.append(text[done:])
    return "".join(parts)


def cjk_tokens(text: str) -> str:
    """``text`` with SEPARATOR between a CJK character and a letter or digit next to it (``unicode61`` splits there).

    With ``folded`` first, what SQLite's FTS5 table gets: each CJK character a token of its own.
    """
    if text.isascii():
        return text
    if SEPARATOR in text:
        text = text.replace(SEPARATOR, " ")  # so that every SEPARATOR in a snippet is one of ours
    return _CJK_JOINT.sub(SEPARATOR, text) if CJK.search(text) is not None else text


def lexemes(text: str) -> list[str]:
    """The normalized words of ``text``, in order."""
    return [word for _, _, word in word_spans(text)]


# ---------------------------------------------------------------- queries


@dataclass(frozen=True, slots=True)
class Filters:
    """Which sessions' events a search looks at (None: any): the recording session, its scope, a tag it has."""

    session_id: str | None = None
    scope: str | None = None
    tag: str | None = None


@dataclass(frozen=True, slots=True)
class Term:
    """One part of a query: a word, or a "quoted phrase" (its words in a row), optionally a prefix (``word*``)."""

    words: tuple[str, ...]
    prefix: bool


@dataclass(frozen=True, slots=True)
class Query:
    """A parsed query: every term must match the same document (terms may match different columns)."""

    text: str
    terms: tuple[Term, ...]

    def fts5(self) -> str:
        """The FTS5 MATCH expression: each term a quoted string, so no user text is FTS5 syntax."""
        parts = []
        for term in self.terms:
            quoted = '"' + " ".join(term.words) + '"'
            parts.append(quoted + " *" if term.prefix else quoted)
        return " ".join(parts)

    def tsquery(self) -> str:
        """The PostgreSQL tsquery text (words are letters and digits only, quoted anyway)."""
        parts = []
        for term in self.terms:
            words = [f"'{word}'" for word in term.words]
            if term.prefix:
                words[-1] += ":*"
            parts.append(" <-> ".join(words) if len(words) > 1 else words[0])
        return " & ".join(f"({part})" for part in parts)


def parse_query(text: object) -> Query:
    """Parse the search syntax: plain words (all must match), "quoted phrases", ``prefix*``.

    Punctuation inside a word splits it into a phrase (``foo.bar`` finds "foo bar"
    and "foo.bar"); an unclosed quote runs to the end. Raises ``InvalidInputError``
    for a query with no word to search for, or one too long.
    """
    if type(text) is not str:
        raise InvalidInputError(f"search() takes a str query, got {type(text).__name__}")
    if len(text) > MAX_QUERY_CHARS:
        raise InvalidInputError(f"the search query has {len(text)} characters; the limit is {MAX_QUERY_CHARS}")
    terms: list[Term] = []
    index, length = 0, len(text)
    while index < length:
        char = text[index]
        if char.isspace():
            index += 1
            continue
        if char == '"':
            end = text.find('"', index + 1)
            end = length if end < 0 else end
            raw = text[index + 1 : end]
            index = end + 1
            prefix = index < length and text[index] == "*"
            if prefix:
                index += 1
        else:
            end = index
            while end < length and not text[end].isspace() and text[end] != '"':
                end += 1
            raw = text[index:end]
            index = end
            prefix = raw.endswith("*")
        words = tuple(lexemes(raw))
        if words:
            terms.append(Term(words, prefix))
    if not terms:
        raise InvalidInputError(
            f"the search query {text!r} has no word to search for (words are letters and digits; "
            'use plain words, "a phrase" or a prefix*)'
        )
    if len(terms) > MAX_QUERY_TERMS:
        raise InvalidInputError(f"the search query has {len(terms)} terms; the limit is {MAX_QUERY_TERMS}")
    return Query(text, tuple(terms))


def matches(query: Query, spans: list[tuple[int, int, str]]) -> list[tuple[int, int]]:
    """The (first, last) word indexes in ``spans`` where each term of ``query`` occurs, all terms together."""
    words = [word for _, _, word in spans]
    found = []
    for term in query.terms:
        size = len(term.words)
        for start in range(len(words) - size + 1):
            if _term_at(term, words, start):
                found.append((start, start + size - 1))
    return found


def _term_at(term: Term, words: list[str], start: int) -> bool:
    last = len(term.words) - 1
    for offset, wanted in enumerate(term.words):
        word = words[start + offset]
        if offset == last and term.prefix:
            if not word.startswith(wanted):
                return False
        elif word != wanted:
            return False
    return True


def snippet(text: str, query: Query, words: int = 24) -> tuple[str, tuple[tuple[int, int], ...], int]:
    """A window of ``text`` around its first match: (plain snippet, highlight offsets, matched term count).

    For engines that give no snippet of their own (PostgreSQL); SQLite's FTS5 uses its ``snippet()``.
    """
    spans = word_spans(text)
    found = matches(query, spans)
    if not found:
        end = spans[min(words, len(spans)) - 1][1] if spans else min(len(text), 200)
        return _ellipsis(text, 0, end), (), 0
    first = min(start for start, _ in found)
    lead = min(4, first)
    begin_word = first - lead
    end_word = min(len(spans), begin_word + words) - 1
    begin = spans[begin_word][0] if begin_word > 0 else 0
    end = spans[end_word][1] if end_word < len(spans) - 1 else len(text)
    plain = _ellipsis(text, begin, end)
    shift = begin - (1 if begin > 0 else 0)
    marks: list[tuple[int, int]] = []
    for mark in sorted(
        {
            (spans[i][0] - shift, spans[i][1] - shift)
            for start, last in found
            if start >= begin_word and last <= end_word
            for i in range(start, last + 1)
        }
    ):
        if marks and mark[0] <= marks[-1][1]:  # CJK characters in a row: one highlight, as SQLite gives
            marks[-1] = (marks[-1][0], max(marks[-1][1], mark[1]))
        else:
            marks.append(mark)
    return plain, tuple(marks), len(found)


def _ellipsis(text: str, begin: int, end: int) -> str:
    return ("…" if begin > 0 else "") + text[begin:end] + ("…" if end < len(text) else "")


def parse_marked(marked: str) -> tuple[str, tuple[tuple[int, int], ...]]:
    """SQLite's snippet with START_MARK/END_MARK around matches -> (plain text, highlight offsets)."""
    plain: list[str] = []
    marks: list[tuple[int, int]] = []
    size = 0
    start = -1
    for piece in re.split(f"([{START_MARK}{END_MARK}])", marked.replace(SEPARATOR, "")):
        if piece == START_MARK:
            start = size
        elif piece == END_MARK:
            if start >= 0 and size > start:
                marks.append((start, size))
            start = -1
        elif piece:
            plain.append(piece)
            size += len(piece)
    return "".join(plain), tuple(marks)


# ---------------------------------------------------------------- a chunk of the log, as changes to the index


@dataclass(slots=True)
class TagChange:
    """A session's tag events of one chunk folded into one change: the tags now are ``(before - out) | in_``."""

    in_: set[str]
    out: set[str]

    def apply(self, before: Iterable[str]) -> tuple[str, ...]:
        return tuple(sorted((set(before) - self.out) | self.in_))


@dataclass(slots=True)
class ChunkPlan:
    """What a chunk of events does to the index, in the order an index applies it.

    ``documents``: new event documents. ``titles``: per session, its newest title event's
    document (None: cleared), replacing the one indexed. ``tags``: per session, the change
    of its tag set and where (session, version, position, time) the newest tag event is; the
    session's tags document is rebuilt from the set. ``scopes``: scopes of created sessions.
    ``deleted``: sessions whose every document and label goes.
    """

    documents: list[Document]
    titles: dict[str, Document | None]
    tags: dict[str, tuple[TagChange, tuple[int, int, int]]]
    scopes: dict[str, str]
    deleted: set[str]


def plan_chunk(events: Iterable[RecordedEvent]) -> ChunkPlan:
    plan = ChunkPlan([], {}, {}, {}, set())
    for e in events:
        event = e.event
        kind = type(event)
        if kind is TitleChanged:
            title = event.title  # type: ignore[union-attr]
            plan.titles[e.session_id] = (
                Document(e.position, e.session_id, e.version, e.timestamp_ms, "title", (_clean(title), "", "", ""))
                if title
                else None
            )
        elif kind is TagsChanged:
            change, _ = plan.tags.get(e.session_id, (TagChange(set(), set()), (0, 0, 0)))
            added, removed = set(event.added), set(event.removed)  # type: ignore[union-attr]
            change.in_ = (change.in_ - removed) | added
            change.out = (change.out - added) | removed
            plan.tags[e.session_id] = (change, (e.version, e.position, e.timestamp_ms))
        elif kind is SessionStarted:
            if event.scope is not None:  # type: ignore[union-attr]
                plan.scopes[e.session_id] = event.scope  # type: ignore[union-attr]
        elif kind is SessionDeleted:
            plan.deleted.add(e.session_id)
        else:
            document = document_for(e.session_id, e.version, e.position, e.timestamp_ms, event)
            if document is not None:
                plan.documents.append(document)
    return plan


def tags_document(session_id: str, where: tuple[int, int, int], tags: tuple[str, ...]) -> Document | None:
    """The searchable document of a session's tags (one per session, at its newest tag event), or None."""
    if not tags:
        return None
    version, position, timestamp_ms = where
    return Document(position, session_id, version, timestamp_ms, "tags", (_clean(" ".join(tags)), "", "", ""))
