"""A child process for the search tests (public API only).

``python _child.py index TARGET QUERY``: open the store, print ``START``, search (indexing the log), print
``DONE N``.
``python _child.py append TARGET SESSION TEXT``: append one user message, print ``ACK VERSION``.
"""

from __future__ import annotations

import asyncio
import sys

import sessiondb
from sessiondb import Message


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def main(role: str, target: str, *rest: str) -> None:
    async with sessiondb.open_store(target) as store:
        if role == "index":
            say("START")
            page = await store.search(rest[0], limit=1000)
            say(f"DONE {len(page.hits)}")
        elif role == "append":
            version = await store.append(rest[0], Message.user(rest[1]))
            say(f"ACK {version}")
        else:
            raise SystemExit(f"unknown role {role}")


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
