"""A small real LangGraph graph for the tests: a tool loop with a fake deterministic model, an interrupt, a subgraph.

Offline and deterministic: the "model" answers from the conversation so far, so two
runs on different checkpointers produce the same states.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt


class State(TypedDict, total=False):
    messages: Annotated[list[dict[str, Any]], operator.add]
    approvals: int
    summary: str


class SubState(TypedDict, total=False):
    messages: Annotated[list[dict[str, Any]], operator.add]
    summary: str


def model(state: State) -> dict[str, Any]:
    """A fake model: asks for the `add` tool until two tool results came back, then answers."""
    messages = state.get("messages", [])
    results = [m for m in messages if m["role"] == "tool"]
    if len(results) < 2:
        call = {"id": f"call-{len(results)}", "name": "add", "args": [len(messages), 1]}
        return {"messages": [{"role": "assistant", "tool_calls": [call]}]}
    return {"messages": [{"role": "assistant", "content": f"done after {len(results)} tools"}]}


def route(state: State) -> str:
    last = state["messages"][-1]
    return "tools" if last.get("tool_calls") else "summarize"


def tools(state: State) -> dict[str, Any]:
    call = state["messages"][-1]["tool_calls"][0]
    answer = interrupt({"approve": call["name"], "args": call["args"]})  # human in the loop
    if answer != "yes":
        return {"messages": [{"role": "tool", "id": call["id"], "content": "refused"}]}
    return {"messages": [{"role": "tool", "id": call["id"], "content": str(sum(call["args"]))}], "approvals": 1}


def _count(state: SubState) -> dict[str, Any]:
    return {"messages": [{"role": "system", "content": f"{len(state.get('messages', []))} messages"}]}


def _write(state: SubState) -> dict[str, Any]:
    return {"summary": " | ".join(str(m.get("content", m.get("tool_calls"))) for m in state["messages"])}


def build() -> StateGraph:
    sub = StateGraph(SubState)
    sub.add_node("count", _count)
    sub.add_node("write", _write)
    sub.add_edge(START, "count")
    sub.add_edge("count", "write")
    sub.add_edge("write", END)
    builder = StateGraph(State)
    builder.add_node("model", model)
    builder.add_node("tools", tools)
    builder.add_node("summarize", sub.compile())  # a subgraph: its checkpoints live in a child namespace
    builder.add_edge(START, "model")
    builder.add_conditional_edges("model", route, ["tools", "summarize"])
    builder.add_edge("tools", "model")
    builder.add_edge("summarize", END)
    return builder
