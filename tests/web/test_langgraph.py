"""LangGraph threads (``SessionDBSaver``) read as conversations: each checkpoint shows the messages it adds."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, TypedDict

import pytest

pytest.importorskip("jinja2")
pytest.importorskip("langgraph")
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.graph import END, START, MessagesState, StateGraph
from starlette.testclient import TestClient

import sessiondb
from sessiondb.integrations.langgraph import SessionDBSaver
from sessiondb.web import create_app

from ._html import Page
from ._stores import HOSTILE


def _agent(state: MessagesState) -> dict[str, Any]:
    if isinstance(state["messages"][-1], HumanMessage):
        call = {"id": "call_1", "name": "weather", "args": {"city": "Oslo"}}
        usage = {"input_tokens": 30, "output_tokens": 8, "total_tokens": 38}
        return {"messages": [AIMessage("Let me check.", tool_calls=[call], usage_metadata=usage)]}
    usage = {"input_tokens": 50, "output_tokens": 9, "total_tokens": 59}
    return {"messages": [AIMessage("It is 3C in Oslo. " + HOSTILE, usage_metadata=usage)]}


def _tools(state: MessagesState) -> dict[str, Any]:
    return {"messages": [ToolMessage("3C, cloudy", tool_call_id="call_1", name="weather")]}


def _route(state: MessagesState) -> str:
    last = state["messages"][-1]
    return "tools" if isinstance(last, AIMessage) and last.tool_calls else END


class Counter(TypedDict):
    count: int
    note: str


def _build(path: Path) -> None:
    chat = StateGraph(MessagesState)
    chat.add_node("agent", _agent)
    chat.add_node("tools", _tools)
    chat.add_edge(START, "agent")
    chat.add_conditional_edges("agent", _route, ["tools", END])
    chat.add_edge("tools", "agent")
    counter = StateGraph(Counter)
    counter.add_node("bump", lambda state: {"count": state["count"] + 1, "note": "<b>bumped</b>"})
    counter.add_edge(START, "bump")
    counter.add_edge("bump", END)

    async def run() -> None:
        async with sessiondb.open_store(path) as store:
            saver = SessionDBSaver(store)
            graph = chat.compile(checkpointer=saver)
            await graph.ainvoke(
                {"messages": [HumanMessage("Weather in Oslo?")]}, {"configurable": {"thread_id": "t-1"}}
            )
            await counter.compile(checkpointer=saver).ainvoke(
                {"count": 41, "note": ""}, {"configurable": {"thread_id": "counter"}}
            )

    asyncio.run(run())


def test_a_langgraph_thread_reads_as_a_conversation(tmp_path: Path) -> None:
    path = tmp_path / "store"
    _build(path)
    with TestClient(create_app(str(path)), base_url="http://127.0.0.1") as client:
        listing = Page(client.get("/").text)
        assert "lg~t-1" in listing.text
        response = client.get("/s/lg~t-1")
        assert response.status_code == 200
        page = Page(response.text)
        text = page.by_id("timeline").text
        for said in ("Weather in Oslo?", "Let me check.", "It is 3C in Oslo."):
            assert text.count(said) == 1, said  # each message once, though every checkpoint repeats it
        (tool,) = page.by_class("tool")
        assert "weather" in tool.text and '"city": "Oslo"' in tool.text and "3C, cloudy" in tool.text
        assert HOSTILE in text and not page.tags("img")
        assert "80 in · 17 out" in text  # the turn's two model calls
        assert "LangGraph" in text and "__class__" not in text and "msgpack" not in text
        counter = Page(client.get("/s/lg~counter").text)
        notes = [node.text for node in counter.by_class("raw")]
        assert any('"count": 42' in note and "<b>bumped</b>" in note for note in notes)
        assert not counter.tags("b")
