"""A writer process for CLI tests: holds a store open and appends what it is told on stdin."""

from __future__ import annotations

import asyncio
import sys

import sessiondb
from sessiondb import Message


async def main(path: str, segment_bytes: int) -> None:
    loop = asyncio.get_running_loop()
    async with sessiondb.open_store(path, segment_bytes=segment_bytes) as store:
        if await store.backend.info("live") is None:
            await store.create_session(session_id="live", model="writer")
        print("ready", flush=True)
        while True:
            line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
            if not line or line == "quit":
                break
            command, _, text = line.partition(" ")
            if command == "append":
                version = await store.append("live", Message.user(text))
                print(f"ok {version}", flush=True)
            elif command == "delete":
                await store.delete_session(text)
                print("ok", flush=True)
            elif command == "create":
                await store.create_session(session_id=text)
                print("ok", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 64 * 1024 * 1024))
