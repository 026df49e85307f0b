"""The session list page's data: filters, sort order and paging over the store's sessions."""

from __future__ import annotations

from dataclasses import dataclass

from .._backends._base import SessionInfo
from .._store import Store

SORTS = (
    ("updated", "recently updated"),
    ("created", "recently created"),
    ("version", "most events"),
    ("title", "title"),
)
_SORT_NAMES = frozenset(name for name, _label in SORTS)


class BadListRequest(ValueError):
    """A list parameter the viewer cannot use (an unknown sort, a bad cursor)."""


@dataclass(slots=True)
class ListFilters:
    title: str = ""
    tag: str = ""
    scope: str = ""
    sort: str = "updated"

    def check(self) -> None:
        if self.sort not in _SORT_NAMES:
            raise BadListRequest(f"unknown sort {self.sort!r}; use one of {', '.join(sorted(_SORT_NAMES))}")


def _sort_key(info: SessionInfo, sort: str) -> tuple[object, ...]:
    if sort == "created":
        return (info.created_at_ms, info.session_id)
    if sort == "version":
        return (info.version, info.session_id)
    if sort == "title":
        return (info.session_id.lower(), info.session_id)
    return (info.updated_at_ms, info.session_id)


async def session_page(
    store: Store, filters: ListFilters, *, limit: int, cursor: str | None
) -> tuple[list[SessionInfo], str | None]:
    """One page of sessions matching ``filters`` and the cursor of the next page (None on the last)."""
    filters.check()
    try:
        offset = int(cursor) if cursor else 0
    except ValueError:
        raise BadListRequest(f"bad cursor {cursor!r}: follow the page links") from None
    if offset < 0:
        raise BadListRequest(f"bad cursor {cursor!r}: follow the page links")
    sessions = await store.list_sessions()
    if filters.title:
        needle = filters.title.casefold()
        sessions = [info for info in sessions if needle in info.session_id.casefold()]
    sessions.sort(key=lambda info: _sort_key(info, filters.sort), reverse=filters.sort != "title")
    page = sessions[offset : offset + limit]
    more = offset + limit < len(sessions)
    return page, str(offset + limit) if more else None


__all__ = ["SORTS", "BadListRequest", "ListFilters", "session_page"]
