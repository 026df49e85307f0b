"""A custom event under a name an integration reserves is refused at append unless it has that integration's shape.

Such events were stored, then broke the integration's reads (``get_items()`` raising a raw
``KeyError``, a string counted as its letters; a LangGraph checkpoint the saver cannot
unpack; a Claude transcript line that is not a str). On every backend.
"""

from __future__ import annotations

from typing import Any

import pytest

from sessiondb import Custom, InvalidInputError, Message
from sessiondb._counts import LANGGRAPH_CHECKPOINT, OPENAI_CLEAR, OPENAI_ITEMS, OPENAI_POP
from sessiondb._reserved import CLAUDE_ENTRY, CLAUDE_LINE, CLAUDE_SUMMARY, LANGGRAPH_REMOVED, LANGGRAPH_WRITES
from sessiondb.integrations._langgraph_state import pack
from sessiondb.integrations.openai_agents import SessionDBSession

from .conftest import StoreOpener

pytestmark = pytest.mark.anyio


def _checkpoint_x() -> str:
    return pack(("t", b"", "t", b"", [], [], []))


BAD: list[tuple[str, Any]] = [
    (OPENAI_ITEMS, {}),
    (OPENAI_ITEMS, {"items": None}),
    (OPENAI_ITEMS, {"items": "abc"}),
    (OPENAI_ITEMS, {"items": {"a": 1}}),
    (OPENAI_ITEMS, None),
    (OPENAI_ITEMS, [1]),
    (OPENAI_ITEMS, {"items": [], "more": 1}),
    (OPENAI_POP, {"items": []}),
    (OPENAI_CLEAR, "all"),
    (LANGGRAPH_CHECKPOINT, "any data"),
    (LANGGRAPH_CHECKPOINT, {"ns": "", "id": "c1", "parent": None}),
    (LANGGRAPH_CHECKPOINT, {"ns": "", "id": "c1", "parent": None, "x": "not packed"}),
    (LANGGRAPH_CHECKPOINT, {"ns": "", "id": "c1", "parent": 3, "x": _checkpoint_x()}),
    (LANGGRAPH_CHECKPOINT, {"ns": "", "id": "c1", "parent": None, "x": pack([1, 2])}),
    (LANGGRAPH_WRITES, {"ns": "", "id": "c1", "task": "t", "path": "", "x": pack([["no", "idx"]])}),
    (LANGGRAPH_WRITES, {"ns": "", "id": "c1", "task": "t", "x": pack([])}),
    (LANGGRAPH_REMOVED, {"ns": "", "ids": "c1"}),
    (LANGGRAPH_REMOVED, {"ns": None, "ids": ["c1"]}),
    (CLAUDE_ENTRY, "a line"),
    (CLAUDE_SUMMARY, {"mtime": 1}),
    (CLAUDE_LINE, {"not": "a str"}),
]
GOOD: list[tuple[str, Any]] = [
    (OPENAI_ITEMS, {"items": [{"role": "user", "content": "hi"}]}),
    (OPENAI_POP, None),
    (OPENAI_CLEAR, None),
    (LANGGRAPH_CHECKPOINT, {"ns": "", "id": "c1", "parent": None, "x": _checkpoint_x()}),
    (LANGGRAPH_CHECKPOINT, {"ns": "n", "id": "c2", "parent": "c1", "x": _checkpoint_x()}),
    (LANGGRAPH_WRITES, {"ns": "", "id": "c1", "task": "t", "path": "", "x": pack([[0, "ch", "json", b"1"]])}),
    (LANGGRAPH_REMOVED, {"ns": "", "ids": ["c1"]}),
    (CLAUDE_ENTRY, {"type": "user", "uuid": "u1"}),
    (CLAUDE_LINE, '{"type": "user"}'),
    (CLAUDE_SUMMARY, {"session_id": "s", "mtime": 1, "data": {}}),
]


async def test_an_integration_name_with_another_shape_is_refused(opener: StoreOpener) -> None:
    async with opener.open() as store:
        agent = SessionDBSession("agent", store)
        await agent.add_items([{"role": "user", "content": "hi"}])
        version = (await store.session_info("agent")).version
        for name, data in BAD:
            for events in ([Custom(name, data)], [Message.user("m"), Custom(name, data)]):
                with pytest.raises(InvalidInputError) as caught:
                    await store.append("agent", *events)
                text = str(caught.value)
                assert "'agent'" in text and repr(name) in text and "its data must be" in text, text
                assert (await store.session_info("agent")).version == version  # nothing written
        # The adapter still reads its session, and its own events are accepted as before.
        assert await agent.get_items() == [{"role": "user", "content": "hi"}]
        assert (await store.session_info("agent")).item_count == 1
        other = await store.create_session()
        for name, data in GOOD:
            await store.append(other, Custom(name, data))
        await store.append(other, Custom("my.items", {}), Custom("openai_agents", {"items": "abc"}))
