"""Child process for the LangGraph crash test: runs counting graphs with durability="sync" until killed.

Usage: python -m tests.integrations._langgraph_crash_child STORE THREADS TARGET
Prints one JSON line per acknowledged checkpoint ({"thread", "id", "count"}) after aput returned.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph

import sessiondb
from sessiondb.integrations.langgraph import SessionDBSaver


class Count(TypedDict):
    count: int
    target: int


def step(state: Count) -> dict[str, Any]:
    return {"count": state["count"] + 1}


def more(state: Count) -> str:
    return "step" if state["count"] < state["target"] else END


def build() -> StateGraph:
    builder = StateGraph(Count)
    builder.add_node("step", step)
    builder.add_edge(START, "step")
    builder.add_conditional_edges("step", more, ["step", END])
    return builder


class ReportingSaver(SessionDBSaver):
    """Prints each checkpoint once its append is durable (aput returned)."""

    async def aput(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        stored = await super().aput(config, checkpoint, metadata, new_versions)
        count = checkpoint["channel_values"].get("count")
        line = {"thread": config["configurable"]["thread_id"], "id": checkpoint["id"], "count": count}
        print(json.dumps(line), flush=True)
        return stored


async def main(path: str, threads: int, target: int) -> None:
    async with sessiondb.open_store(path) as store:
        graph = build().compile(checkpointer=ReportingSaver(store))
        limit = {"recursion_limit": target * 4}

        async def run(thread: int) -> None:
            config = {"configurable": {"thread_id": f"t{thread}"}, **limit}
            await graph.ainvoke({"count": 0, "target": target}, config, durability="sync")

        await asyncio.gather(*(run(thread) for thread in range(threads)))
        print(json.dumps({"done": True}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
