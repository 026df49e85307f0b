"""A worker process for the multi-process PostgreSQL test: appends with expected versions, prints what was acknowledged.

Usage: python _pg_worker.py DSN SCHEMA WORKER_ID SESSIONS APPENDS SEED
Each acknowledged append is printed as one JSON line: [session_id, version, event_id].
"""

from __future__ import annotations

import asyncio
import json
import random
import sys

import sessiondb
from sessiondb import ConflictError, Message
from sessiondb._backends.postgres import PostgresBackend


async def main(dsn: str, schema: str, worker: int, sessions: int, appends: int, seed: int) -> None:
    rng = random.Random(seed)
    sids = [f"shared-{i}" for i in range(sessions)]
    out = sys.stdout
    async with sessiondb.open_store(PostgresBackend(dsn, schema=schema)) as store:

        async def appender(task: int, count: int) -> None:
            for n in range(count):
                sid = rng.choice(sids)
                event_id = f"w{worker}-t{task}-{n}"
                while True:
                    version = (await store.session_info(sid)).version
                    try:
                        acked = await store.append(
                            sid, Message.user(event_id), expected_version=version, event_ids=[event_id]
                        )
                    except ConflictError:
                        continue  # another process got there first: reload, decide again
                    out.write(json.dumps([sid, acked, event_id]) + "\n")
                    break

        tasks = 16
        await asyncio.gather(*(appender(t, appends // tasks) for t in range(tasks)))
    out.flush()


if __name__ == "__main__":
    dsn, schema, worker, sessions, appends, seed = sys.argv[1:]
    asyncio.run(main(dsn, schema, int(worker), int(sessions), int(appends), int(seed)))
