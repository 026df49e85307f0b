"""What the integrations' sessions hold, counted: OpenAI Agents SDK items and LangGraph checkpoints.

A session written through ``integrations.openai_agents`` or ``integrations.langgraph`` keeps
its conversation in ``Custom`` events, not ``Message`` ones, so its message count is 0. The
summaries (``SessionInfo``, ``Session``) count those events too, as each backend folds them:

- ``item_count``: the OpenAI Agents SDK's live items, what ``SessionDBSession.get_items()``
  returns (``openai_agents.items`` adds its items, ``openai_agents.pop`` removes the last one
  if any, ``openai_agents.clear`` removes all);
- ``checkpoint_count``: the LangGraph checkpoints written to the thread (one per
  ``langgraph.checkpoint``; pruning is a note in the history and does not lower it).

Each change has the form ``count = max(floor, count + delta)``, so several in one append
compose into one such change (what the PostgreSQL backend sends). The event names live
here, below the backends; the integrations import them from this module.
"""

from __future__ import annotations

from typing import Any

import msgspec

OPENAI_ITEMS = "openai_agents.items"
OPENAI_POP = "openai_agents.pop"
OPENAI_CLEAR = "openai_agents.clear"
LANGGRAPH_CHECKPOINT = "langgraph.checkpoint"
COUNTED = frozenset((OPENAI_ITEMS, OPENAI_POP, OPENAI_CLEAR, LANGGRAPH_CHECKPOINT))
# A delta that takes any count to its floor (0): what clear_session does.
CLEARED = -(2**40)


class _Items(msgspec.Struct, gc=False):
    """An ``openai_agents.items`` payload as far as counting goes: the items are skipped, not decoded."""

    items: list[msgspec.Raw] = msgspec.field(default_factory=list)


_items_decoder = msgspec.json.Decoder(_Items)


def _item_total(data: Any) -> int:
    """How many items ``data`` adds: a dict from an event, or the raw JSON a recovery scan kept."""
    if isinstance(data, msgspec.Raw):
        try:
            return len(_items_decoder.decode(data).items)
        except msgspec.DecodeError:  # not the adapter's shape: an event of that name that adds nothing
            return 0
    items = data.get("items") if isinstance(data, dict) else None
    return len(items) if isinstance(items, list) else 0


def count_change(name: str, data: Any) -> tuple[bool, int, int]:
    """The change a counted custom event makes: (is it a checkpoint, floor, delta).

    Call only for ``name in COUNTED``. The count becomes ``max(floor, count + delta)``.
    """
    if name == LANGGRAPH_CHECKPOINT:
        return True, 0, 1
    if name == OPENAI_ITEMS:
        return False, 0, _item_total(data)
    if name == OPENAI_POP:
        return False, 0, -1
    return False, 0, CLEARED


def apply_count(summary: Any, name: str, data: Any) -> None:
    """Fold a counted event into ``summary`` (a ``SessionInfo`` or a ``Session``: both have the two counts)."""
    checkpoint, floor, delta = count_change(name, data)
    if checkpoint:
        summary.checkpoint_count = max(floor, summary.checkpoint_count + delta)
    else:
        summary.item_count = max(floor, summary.item_count + delta)


def compose(first: tuple[int, int], then: tuple[int, int]) -> tuple[int, int]:
    """Two changes ``(floor, delta)`` as one: max(f2, max(f1, n + d1) + d2) = max(max(f2, f1 + d2), n + d1 + d2)."""
    (floor1, delta1), (floor2, delta2) = first, then
    return max(floor2, floor1 + delta2), max(CLEARED, delta1 + delta2)


# The scopes the integrations give the sessions they create: a session's kind when its counts are all 0
# (an OpenAI Agents session emptied by clear_session or pops holds "0 items", not "0 messages").
OPENAI_SCOPE = "openai_agents"
LANGGRAPH_SCOPE = "langgraph"
_EMPTY = {OPENAI_SCOPE: "0 items", LANGGRAPH_SCOPE: "0 checkpoints"}


def describe(message_count: int, item_count: int, checkpoint_count: int, *, scope: str | None = None) -> str:
    """A session's size in the words of its kind: "3 messages", "12 items", "4 checkpoints" (joined if mixed).

    All 0, the kind is its ``scope``'s: "0 items" for an OpenAI Agents session, "0 checkpoints" for a
    LangGraph thread, else "0 messages".
    """
    parts = [
        f"{count:,} {unit}{'' if count == 1 else 's'}"
        for count, unit in ((message_count, "message"), (item_count, "item"), (checkpoint_count, "checkpoint"))
        if count
    ]
    return ", ".join(parts) or _EMPTY.get(scope or "", "0 messages")


__all__ = [
    "CLEARED",
    "COUNTED",
    "LANGGRAPH_CHECKPOINT",
    "LANGGRAPH_SCOPE",
    "OPENAI_CLEAR",
    "OPENAI_ITEMS",
    "OPENAI_POP",
    "OPENAI_SCOPE",
    "apply_count",
    "compose",
    "count_change",
    "describe",
]
