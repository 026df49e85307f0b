"""What a search returns (``SearchHit``, ``SearchPage``) and its opaque paging cursor."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

import msgspec

from .._errors import InvalidInputError

ORDERS = ("relevance", "newest")


class SearchHit(msgspec.Struct, frozen=True, gc=False):
    """One event that matches a search.

    ``session_id``/``version``/``position``/``timestamp_ms`` name the event (``load(session_id,
    at_version=version)`` shows the conversation there). ``kind`` is what matched: ``"message"``
    (text blocks), ``"thinking"``, ``"tool_use"`` (a call's name and JSON input), ``"tool_result"``
    (tool name and output), ``"prompt"``, ``"compaction"`` (a summary), ``"custom"`` (string
    values of a Custom event's data), ``"title"`` (the session's title, at its newest title
    event) or ``"tags"`` (its tags, at its newest tag event). ``snippet`` is plain text (``…`` where it was cut);
    ``highlights`` are the matched words as ``(start, end)`` str offsets into it, so a viewer
    escapes the text and marks the ranges itself. ``score``: higher is better (SQLite FTS5's
    bm25 negated; PostgreSQL's ts_rank); comparable within one search only.
    """

    session_id: str
    version: int
    position: int
    kind: str
    snippet: str
    score: float
    timestamp_ms: int
    highlights: tuple[tuple[int, int], ...] = ()


class SearchPage(msgspec.Struct, frozen=True, gc=False):
    """A page of hits; pass ``next_cursor`` back as ``cursor=`` for the next one (None: no more)."""

    hits: list[SearchHit]
    next_cursor: str | None = None


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where the previous page ended: below a ceiling position, the hits already returned.

    Newest first pages by keyset (positions below the last one). Best first pages by
    offset: scores depend on the whole index, so they shift as it grows, and a keyset
    on them would repeat hits; an offset only misorders hits whose order the shift swapped.
    """

    key: str  # which search it belongs to
    ceiling: int  # documents above it (indexed after the first page) are left out
    offset: int  # hits returned so far
    position: int  # the last hit's position


class _Wire(msgspec.Struct, array_like=True):
    key: str
    ceiling: int
    offset: int
    position: int


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(_Wire).decode


def search_key(query: str, order: str, scope: str | None, tag: str | None, session_id: str | None) -> str:
    """A short digest of what a search asked for, so a cursor is not reused for another search."""
    text = msgspec.json.encode([query, order, scope, tag, session_id])
    return hashlib.blake2b(text, digest_size=8).hexdigest()


def encode_cursor(cursor: Cursor) -> str:
    raw = _encode(_Wire(cursor.key, cursor.ceiling, cursor.offset, cursor.position))
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: object, key: str) -> Cursor:
    if type(text) is not str:
        raise InvalidInputError(f"search() cursor must be a str from SearchPage.next_cursor, got {type(text).__name__}")
    try:
        wire = _decode(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, msgspec.DecodeError):
        raise InvalidInputError(
            f"search() cursor {text[:40]!r} is not one a search returned; start again without cursor="
        ) from None
    if wire.key != key:
        raise InvalidInputError(
            "search() cursor belongs to another search (query, order or filters differ); start again without cursor="
        )
    return Cursor(wire.key, wire.ceiling, wire.offset, wire.position)
