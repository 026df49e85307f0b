"""The custom event names the integrations reserve, and the data each must carry.

``integrations.openai_agents`` keeps a session's items, ``integrations.langgraph`` a
thread's checkpoints and ``integrations.claude_agent_sdk`` a transcript's entries in
``Custom`` events of these names, and folds them back without
checking each one (a read folds every event of the session: that is their hot path). An
event of such a name with other data, appended by anyone, would be stored and then break
every later read through the integration (a raw ``KeyError`` in ``get_items()``, a string
counted as its letters), so ``Store.append`` refuses it: ``shape_problem`` says why, and
``RESERVED`` says which integration owns the name and what its data must be. Only appends
holding a ``Custom`` event pay for the check (they take the slow validation path anyway).
Events of these names already stored by older versions stay readable as before.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

import msgspec

from ._counts import LANGGRAPH_CHECKPOINT, OPENAI_CLEAR, OPENAI_ITEMS, OPENAI_POP

LANGGRAPH_WRITES = "langgraph.writes"
LANGGRAPH_REMOVED = "langgraph.removed"
CLAUDE_ENTRY = "claude_agent_sdk.entry"
CLAUDE_SUMMARY = "claude_agent_sdk.summary"
CLAUDE_LINE = "claude_agent_sdk.line"

# ``x`` of the LangGraph events: base64 of msgpack (see ``integrations._langgraph_state``).
_checkpoint_x = msgspec.msgpack.Decoder(
    tuple[str, bytes, str, bytes, list[str], list[tuple[str, str, bytes]], list[str]]
)
_writes_x = msgspec.msgpack.Decoder(list[tuple[int, str, str, bytes]])


def _keys(data: Any, keys: dict[str, Callable[[Any], bool]]) -> str | None:
    if type(data) is not dict:
        return f"got {type(data).__name__}"
    if set(data) != set(keys):
        return f"got the keys {sorted(data)!r}"
    for key, check in keys.items():
        if not check(data[key]):
            return f"got {key!r} = {_short(data[key])}"
    return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_str(value: Any) -> bool:
    return type(value) is str


def _packed(decoder: msgspec.msgpack.Decoder[Any]) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        if type(value) is not str:
            return False
        try:
            decoder.decode(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError, msgspec.DecodeError):
            return False
        return True

    return check


def _items(data: Any) -> str | None:
    return _keys(data, {"items": lambda items: type(items) is list})


def _nothing(data: Any) -> str | None:
    return None if data is None else f"got {_short(data)}"


def _checkpoint(data: Any) -> str | None:
    return _keys(
        data,
        {"ns": _is_str, "id": _is_str, "parent": lambda p: p is None or type(p) is str, "x": _packed(_checkpoint_x)},
    )


def _writes(data: Any) -> str | None:
    return _keys(data, {"ns": _is_str, "id": _is_str, "task": _is_str, "path": _is_str, "x": _packed(_writes_x)})


def _object(data: Any) -> str | None:
    return None if type(data) is dict else f"got {type(data).__name__}"


def _summary(data: Any) -> str | None:
    if type(data) is not dict:
        return f"got {type(data).__name__}"
    return None if "data" in data else f"got the keys {sorted(data)!r}"


def _line(data: Any) -> str | None:
    return None if type(data) is str else f"got {type(data).__name__}"


def _removed(data: Any) -> str | None:
    return _keys(data, {"ns": _is_str, "ids": lambda ids: type(ids) is list and all(type(i) is str for i in ids)})


# name -> (the integration, the data it writes, the check: None when the data has that shape, else what is wrong)
RESERVED: dict[str, tuple[str, str, Callable[[Any], str | None]]] = {
    OPENAI_ITEMS: ("integrations.openai_agents", '{"items": [item, ...]}', _items),
    OPENAI_POP: ("integrations.openai_agents", "no data (None)", _nothing),
    OPENAI_CLEAR: ("integrations.openai_agents", "no data (None)", _nothing),
    LANGGRAPH_CHECKPOINT: (
        "integrations.langgraph",
        '{"ns": str, "id": str, "parent": str or None, "x": the saver\'s packed checkpoint}',
        _checkpoint,
    ),
    LANGGRAPH_WRITES: (
        "integrations.langgraph",
        '{"ns": str, "id": str, "task": str, "path": str, "x": the saver\'s packed writes}',
        _writes,
    ),
    LANGGRAPH_REMOVED: ("integrations.langgraph", '{"ns": str, "ids": [str, ...]}', _removed),
    CLAUDE_ENTRY: ("integrations.claude_agent_sdk", "a transcript entry (a JSON object)", _object),
    CLAUDE_SUMMARY: ("integrations.claude_agent_sdk", 'the SDK\'s session summary ({"data": ..., ...})', _summary),
    CLAUDE_LINE: ("integrations.claude_agent_sdk", "the entry's source line (a str)", _line),
}


def shape_problem(session_id: object, where: str, name: str, data: Any) -> str | None:
    """The refusal of a custom event named ``name`` (reserved) whose ``data`` is not its integration's shape."""
    integration, shape, check = RESERVED[name]
    problem = check(data)
    if problem is None:
        return None
    return (
        f"session {session_id!r}: {where} is a custom event named {name!r}, which {integration} reserves; "
        f"its data must be {shape}, {problem}; use another name for your own events; nothing was written"
    )
