"""Listing sessions: the filters and orders of ``list_sessions``/``page_sessions``, keyset cursors, pages.

A listing is a ``SessionQuery`` (filters: scope, tag, title text, pinned; an order
and a direction). Sessions sort by ``(key, session_id)``: the order's key (updated or
created time in ms, the version, or the title with no title as ``""``), then the id
to break ties, so the order is total and a page can resume after the last row it
showed (keyset paging, as in SQL's ``WHERE (key, id) < (last_key, last_id)``).
Strings compare by code point on every backend (PostgreSQL through ``COLLATE "C"``,
which on UTF-8 is the same order).

A cursor is that last ``(key, id)`` with the order and a fingerprint of the filters,
as URL-safe base64 of JSON; it is opaque to callers, and one made for other filters
or another order is refused rather than giving a wrong page.
"""

from __future__ import annotations

import base64
import binascii
import heapq
import zlib
from collections.abc import Callable, Iterable
from operator import attrgetter
from typing import TYPE_CHECKING, Any

import msgspec

from .._errors import InvalidInputError
from .._ids import validate_session_id
from .._labels import FORBIDDEN_CHARACTERS, MAX_TITLE_CHARS, check_scope, check_tag

if TYPE_CHECKING:
    from ._base import SessionInfo

ORDERS = ("updated", "created", "title", "version")
CURSOR_FORMAT = 1
MAX_PAGE = 10_000
SortKey = tuple[Any, str]


class SessionQuery(msgspec.Struct, frozen=True, gc=False):
    """Filters and order of a session listing (build it with ``session_query``, which checks them)."""

    scope: str | None = None
    tag: str | None = None
    title: str | None = None  # case-insensitive substring (Unicode case folding, str.casefold)
    pinned: bool | None = None
    order: str = "updated"
    descending: bool = True

    @property
    def filtered(self) -> bool:
        return self.scope is not None or self.tag is not None or self.title is not None or self.pinned is not None

    def matcher(self) -> Callable[[SessionInfo], bool] | None:
        """A predicate for the filters (None when there are none). Deleted sessions never match."""
        scope, tag, pinned = self.scope, self.tag, self.pinned
        needle = self.title.casefold() if self.title is not None else None

        def match(info: SessionInfo) -> bool:
            if info.deleted:
                return False
            if scope is not None and info.scope != scope:
                return False
            if tag is not None and tag not in info.tags:
                return False
            if pinned is not None and info.pinned != pinned:
                return False
            if needle is not None:
                title = info.title
                if title is None or needle not in title.casefold():
                    return False
            return True

        return match

    def sort_key(self) -> Callable[[SessionInfo], SortKey]:
        order = self.order
        if order == "title":
            return _title_key
        # attrgetter builds the (key, id) tuple in C: a page of an unfiltered listing calls it per session.
        return _ATTRIBUTE_KEYS[order]  # type: ignore[return-value]

    def fingerprint(self) -> int:
        return zlib.crc32(msgspec.json.encode([self.scope, self.tag, self.title, self.pinned]))


def _title_key(info: SessionInfo) -> SortKey:
    return (info.title or "", info.session_id)


_ATTRIBUTE_KEYS = {
    "updated": attrgetter("updated_at_ms", "session_id"),
    "created": attrgetter("created_at_ms", "session_id"),
    "version": attrgetter("version", "session_id"),
}


def session_query(
    *,
    scope: object = None,
    tag: object = None,
    title: object = None,
    pinned: object = None,
    order: object = "updated",
    descending: object = True,
) -> SessionQuery:
    """A checked ``SessionQuery``; ``InvalidInputError`` saying which argument is wrong."""
    check_scope(scope)
    if tag is not None:
        check_tag(tag)
    if title is not None:
        if type(title) is not str or not title or len(title) > MAX_TITLE_CHARS:
            raise InvalidInputError(
                f"title= filters by a non-empty str of at most {MAX_TITLE_CHARS} characters, got {title!r:.80}"
            )
        forbidden = FORBIDDEN_CHARACTERS.search(title)
        if forbidden is not None:  # no title holds one (and PostgreSQL text cannot hold NUL)
            raise InvalidInputError(
                f"title= filter {title!r:.80} contains {forbidden.group()!r}; titles hold no control, line-break "
                "or surrogate characters"
            )
    if pinned is not None and type(pinned) is not bool:
        raise InvalidInputError(f"pinned= takes True, False or None, got {pinned!r}")
    if order not in ORDERS:
        raise InvalidInputError(f"order= must be one of {', '.join(map(repr, ORDERS))}; got {order!r}")
    if type(descending) is not bool:
        raise InvalidInputError(f"descending= takes a bool, got {descending!r}")
    return SessionQuery(scope, tag, title, pinned, str(order), descending)  # type: ignore[arg-type]


def check_limit(limit: object) -> int:
    if type(limit) is not int or not 1 <= limit <= MAX_PAGE:
        raise InvalidInputError(f"limit= must be an int in 1..{MAX_PAGE}, got {limit!r}")
    return limit


def select_sessions(
    infos: Iterable[SessionInfo], query: SessionQuery, limit: int | None, after: SortKey | None
) -> list[SessionInfo]:
    """The in-memory listing: matching summaries past ``after``, sorted, at most ``limit`` (not copied)."""
    match = query.matcher()
    key = query.sort_key()
    descending = query.descending
    candidates: Iterable[SessionInfo] = infos if match is None else (info for info in infos if match(info))
    if after is not None:
        if descending:
            candidates = (info for info in candidates if key(info) < after)
        else:
            candidates = (info for info in candidates if key(info) > after)
    if limit is None:
        return sorted(candidates, key=key, reverse=descending)
    # A page: a heap of ``limit`` over the candidates, not a sort of all of them.
    if descending:
        return heapq.nlargest(limit, candidates, key=key)
    return heapq.nsmallest(limit, candidates, key=key)


def encode_cursor(query: SessionQuery, key: SortKey) -> str:
    raw = msgspec.json.encode([CURSOR_FORMAT, query.order, query.descending, query.fingerprint(), key[0], key[1]])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: object, query: SessionQuery) -> SortKey:
    """The key a cursor resumes after; ``InvalidInputError`` for anything but a cursor of this listing."""
    if type(cursor) is not str:
        raise InvalidInputError(f"cursor= takes the next_cursor str of a previous page, got {type(cursor).__name__}")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        fields = msgspec.json.decode(raw)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        fields = None
    if not _valid_cursor_fields(fields):
        raise InvalidInputError(
            f"cursor {cursor[:80]!r} is not a session listing cursor; pass the next_cursor of a previous "
            "page_sessions() page unchanged, or None for the first page"
        )
    assert isinstance(fields, list)
    if fields[1] != query.order or fields[2] != query.descending or fields[3] != query.fingerprint():
        raise InvalidInputError(
            "this cursor belongs to a listing with other filters or another order; page with the same "
            "scope, tag, title, pinned, order and descending as the page that gave it, or start again with cursor=None"
        )
    return (fields[4], fields[5])


def _valid_cursor_fields(fields: object) -> bool:
    """Whether decoded JSON is a cursor ``encode_cursor`` could have made: every field's type, range and text.

    A forged cursor must fail here, the same on every backend, and never reach a
    query: PostgreSQL refuses an int beyond int64 or a NUL in text with its own errors,
    and the in-memory listing would compare a bool or a float as if it were a key.
    """
    if type(fields) is not list or len(fields) != 6:
        return False
    form, order, descending, fingerprint, key, session_id = fields
    if type(form) is not int or form != CURSOR_FORMAT or type(order) is not str or order not in ORDERS:
        return False
    if type(descending) is not bool or type(fingerprint) is not int or not 0 <= fingerprint <= 0xFFFFFFFF:
        return False
    if order == "title":
        # A title as stored (untitled sorts as ""): at most MAX_TITLE_CHARS, no control characters, UTF-8.
        if type(key) is not str or len(key) > MAX_TITLE_CHARS or FORBIDDEN_CHARACTERS.search(key) is not None:
            return False
    elif type(key) is not int or not 0 <= key < 2**63:  # times in ms and versions: PostgreSQL bigint
        return False
    try:
        validate_session_id(session_id, stored=True)  # ids older versions stored are still listed
    except InvalidInputError:
        return False
    return True


__all__ = [
    "MAX_PAGE",
    "ORDERS",
    "SessionQuery",
    "SortKey",
    "check_limit",
    "decode_cursor",
    "encode_cursor",
    "select_sessions",
    "session_query",
]
