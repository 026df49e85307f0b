"""The session list page's data: filters, sort order and paging (``Store.page_sessions``), and search hits."""

from __future__ import annotations

from dataclasses import dataclass

from .._backends._base import SessionInfo
from .._errors import InvalidInputError
from .._search import SearchHit
from .._store import Store

SORTS = (
    ("updated", "recently updated"),
    ("created", "recently created"),
    ("version", "most events"),
    ("title", "title"),
)
_SORT_NAMES = frozenset(name for name, _label in SORTS)
PINNED_CHOICES = (("", "any"), ("yes", "pinned"), ("no", "not pinned"))
# What a bad cursor means to someone following the page's links (the store's message speaks to programmers).
STALE_CURSOR = "This page link is out of date or damaged; start from the first page."


def _problem(exc: InvalidInputError, cursor: str | None) -> BadListRequest:
    if cursor is not None and "cursor" in str(exc).lower():
        return BadListRequest(STALE_CURSOR)
    return BadListRequest(str(exc))


class BadListRequest(ValueError):
    """A list parameter the viewer cannot use (an unknown sort, a bad cursor)."""


@dataclass(slots=True)
class ListFilters:
    """What the list form sends; empty strings mean "no filter"."""

    title: str = ""
    tag: str = ""
    scope: str = ""
    pinned: str = ""
    sort: str = "updated"

    def check(self) -> None:
        if self.sort not in _SORT_NAMES:
            raise BadListRequest(f"unknown sort {self.sort!r}; use one of {', '.join(sorted(_SORT_NAMES))}")
        if self.pinned not in ("", "yes", "no"):
            raise BadListRequest(f"pinned must be yes, no or empty, got {self.pinned!r}")


async def session_page(
    store: Store, filters: ListFilters, *, limit: int, cursor: str | None
) -> tuple[list[SessionInfo], str | None]:
    """One page of sessions matching ``filters`` and the cursor of the next page (None on the last).

    Titles sort A to Z, everything else newest or largest first.
    """
    filters.check()
    try:
        page = await store.page_sessions(
            scope=filters.scope or None,
            tag=filters.tag or None,
            title=filters.title or None,
            pinned={"yes": True, "no": False}.get(filters.pinned),
            order=filters.sort,
            descending=filters.sort != "title",
            limit=limit,
            cursor=cursor,
        )
    except InvalidInputError as exc:  # a cursor that is not one, a tag or scope no session can have
        raise _problem(exc, cursor) from None
    return page.sessions, page.next_cursor


SEARCH_ORDERS = (("relevance", "best match first"), ("newest", "newest first"))


async def search_page(
    store: Store,
    query: str,
    filters: ListFilters,
    *,
    session_id: str | None,
    order: str,
    limit: int,
    cursor: str | None,
) -> tuple[list[SearchHit], str | None]:
    """One page of ``Store.search`` hits (scope and tag filters apply) and the next page's cursor."""
    if order not in {name for name, _label in SEARCH_ORDERS}:
        raise BadListRequest(f"unknown order {order!r}; use relevance or newest")
    try:
        page = await store.search(
            query,
            scope=filters.scope or None,
            tag=filters.tag or None,
            session_id=session_id,
            order=order,
            limit=limit,
            cursor=cursor,
        )
    except InvalidInputError as exc:  # a query with no words, a bad cursor
        raise _problem(exc, cursor) from None
    return page.hits, page.next_cursor


__all__ = [
    "PINNED_CHOICES",
    "SEARCH_ORDERS",
    "SORTS",
    "STALE_CURSOR",
    "BadListRequest",
    "ListFilters",
    "search_page",
    "session_page",
]
