"""LabelIndex: the live sessions of each scope, each tag and the pinned ones, for filtered listings.

Kept beside the streams by ``Index`` as summaries fold (batches this process wrote,
frames other processes appended), and rebuilt from the summaries after recovery
(a checkpoint or a snapshot restores summaries, not these sets). Deleted sessions
are in no set. A listing filtered by scope or tag then looks at that set only, not
at every session.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .._base import SessionInfo
    from .._listing import SessionQuery


class LabelIndex:
    """Session ids by scope, by tag, and the pinned ones (live sessions only)."""

    __slots__ = ("pinned", "scopes", "tags")

    def __init__(self) -> None:
        self.scopes: dict[str, set[str]] = {}
        self.tags: dict[str, set[str]] = {}
        self.pinned: set[str] = set()

    def clear(self) -> None:
        self.scopes.clear()
        self.tags.clear()
        self.pinned.clear()

    def add(self, info: SessionInfo) -> None:
        if info.deleted:
            return
        session_id = info.session_id
        if info.scope is not None:
            self.scopes.setdefault(info.scope, set()).add(session_id)
        for tag in info.tags:
            self.tags.setdefault(tag, set()).add(session_id)
        if info.pinned:
            self.pinned.add(session_id)

    def change(self, info: SessionInfo, scope: str | None, tags: tuple[str, ...], pinned: bool, deleted: bool) -> None:
        """``info`` changed from the labels given (and deletion state): move it between the sets."""
        session_id = info.session_id
        if not deleted:
            if scope is not None:
                _discard(self.scopes, scope, session_id)
            for tag in tags:
                _discard(self.tags, tag, session_id)
            self.pinned.discard(session_id)
        self.add(info)

    def rebuild(self, infos: Iterable[SessionInfo]) -> None:
        self.clear()
        for info in infos:
            self.add(info)

    def candidates(self, query: SessionQuery) -> set[str] | None:
        """The ids a listing needs to look at (the smallest set its filters name), or None for every session."""
        sets = []
        if query.scope is not None:
            sets.append(self.scopes.get(query.scope, _EMPTY))
        if query.tag is not None:
            sets.append(self.tags.get(query.tag, _EMPTY))
        if query.pinned is True:
            sets.append(self.pinned)
        if not sets:
            return None
        return min(sets, key=len)


_EMPTY: set[str] = set()


def _discard(sets: dict[str, set[str]], key: str, session_id: str) -> None:
    members = sets.get(key)
    if members is not None:
        members.discard(session_id)
        if not members:
            del sets[key]
