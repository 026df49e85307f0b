"""The fork tree around one session: its ancestors up to the root, and the descendants below them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .._backends._base import SessionInfo

# Children listed under one node, and levels shown below the current session: a session forked
# thousands of times still renders a page of bounded size.
MAX_CHILDREN = 50
MAX_DEPTH_BELOW = 3


@dataclass(slots=True)
class TreeNode:
    """One session in the tree; ``fork_version`` is the parent's version it branched at (None for a root)."""

    session_id: str
    label: str
    fork_version: int | None = None
    branch: str | None = None
    children: list[TreeNode] = field(default_factory=list)
    more: int = 0


def fork_tree(current: SessionInfo, sessions: Iterable[SessionInfo]) -> TreeNode:
    """The tree from ``current``'s oldest known ancestor down, every node one link away.

    Ancestors that no longer exist (deleted) end the walk up; the path to ``current`` is
    always expanded, other branches to one level, ``current``'s own descendants to
    ``MAX_DEPTH_BELOW`` levels.
    """
    by_id: dict[str, SessionInfo] = {}
    children: dict[str, list[SessionInfo]] = {}
    for info in sessions:
        by_id[info.session_id] = info
        if info.fork is not None:
            children.setdefault(info.fork.parent_session_id, []).append(info)
    by_id[current.session_id] = current
    path = [current]
    seen = {current.session_id}
    while path[0].fork is not None:
        parent = by_id.get(path[0].fork.parent_session_id)  # type: ignore[union-attr]
        if parent is None or parent.session_id in seen:
            break
        seen.add(parent.session_id)
        path.insert(0, parent)
    on_path = {info.session_id for info in path}

    def node(info: SessionInfo, below: int) -> TreeNode:
        fork = info.fork
        made = TreeNode(
            info.session_id,
            _label(info),
            fork.parent_version if fork is not None and info is not path[0] else None,
            fork.branch_name if fork is not None else None,
        )
        if info.session_id == current.session_id:
            below = MAX_DEPTH_BELOW
        elif info.session_id in on_path:
            below = 1
        kids = children.get(info.session_id, [])
        if below <= 0:
            made.more = len(kids)
            return made
        kids.sort(key=lambda k: (k.created_at_ms, k.session_id))
        made.children = [node(kid, below - 1) for kid in kids[:MAX_CHILDREN]]
        made.more = max(0, len(kids) - MAX_CHILDREN)
        return made

    return node(path[0], 1)


def _label(info: SessionInfo) -> str:
    return info.title or info.session_id


__all__ = ["TreeNode", "fork_tree"]
