"""A worker process for the multi-process test: appends batches to one SDK key through its own adapter.

Usage: python _claude_worker.py TARGET WORKER TASKS BATCHES SIZE
(TARGET: a store directory, or a PostgreSQL URL with ``?schema=``).
Each entry records its worker, task, batch and index; the test checks they come back grouped and in order.
"""

from __future__ import annotations

import asyncio
import sys

import sessiondb
from sessiondb.integrations.claude_agent_sdk import SessionDBSessionStore

KEY = {"project_key": "proj", "session_id": "shared"}


async def main(target: str, worker: int, tasks: int, batches: int, size: int) -> None:
    async with sessiondb.open_store(target) as store:
        adapter = SessionDBSessionStore(store)

        async def task(t: int) -> None:
            for b in range(batches):
                entries = [
                    {"type": "x", "uuid": f"p{worker}-t{t}-b{b}-{i}", "p": worker, "t": t, "b": b, "i": i}
                    for i in range(size)
                ]
                await adapter.append(KEY, entries)  # type: ignore[arg-type]

        await asyncio.gather(*(task(t) for t in range(tasks)))


if __name__ == "__main__":
    target, *numbers = sys.argv[1:]
    asyncio.run(main(target, *map(int, numbers)))  # type: ignore[arg-type]
