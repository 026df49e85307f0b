"""Child process for the many-threads test: runs N counting graph threads at once on a store, then exits.

Usage: python -m tests.integrations._langgraph_many_child STORE PREFIX THREADS TARGET
"""

from __future__ import annotations

import asyncio
import sys

import sessiondb
from sessiondb.integrations.langgraph import SessionDBSaver

from ._langgraph_crash_child import build


async def run_threads(store: sessiondb.Store, prefix: str, threads: int, target: int) -> None:
    graph = build().compile(checkpointer=SessionDBSaver(store))

    async def run(thread: int) -> None:
        config = {"configurable": {"thread_id": f"{prefix}{thread}"}}
        await graph.ainvoke({"count": 0, "target": target}, config, durability="sync")

    await asyncio.gather(*(run(thread) for thread in range(threads)))


async def main(path: str, prefix: str, threads: int, target: int) -> None:
    async with sessiondb.open_store(path) as store:
        await run_threads(store, prefix, threads, target)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
