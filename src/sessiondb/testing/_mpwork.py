"""The multi-process crash workload: one of several child processes writing to shared and own sessions.

Run as ``python -m sessiondb.testing._mpwork TARGET SLOT INCARNATION SEED``
(TARGET: a store directory or a PostgreSQL URL). Each of ``--tasks`` drivers
loops forever over: an append to a shared session planned at its current
version with ``expected_version`` (re-read and retried on ``ConflictError``),
an append to a session of its own, sometimes three events at once, sometimes
with event ids; a new session; a fork. Every event is marked
``"<session>|<version> <token>"`` (see ``_mpcheck``): the token names the
logical append over all its tries. Before each try the child prints
``T``/``TK`` lines, after the acknowledgement ``A``/``AK`` lines (the
``Ledger`` format), line-buffered, for a parent that SIGKILLs it.

``--retry FILE`` (JSON list of ``[token, session, count]``) are appends with
event ids that an earlier incarnation of this slot tried and did not see
acknowledged: they are retried first with the same ids, so one that landed
before the kill is recognised and not stored twice.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
from typing import Any

from .._errors import ConflictError, HistoryUnavailableError
from .._events import Message, Text, Usage
from ._crashwork import Emit, marker

SHARED_PREFIX = "shared-"
# A fork at a head another process's compaction passed before the fork read it is retried at the new head.
_FORK_ATTEMPTS = 8


def shared_ids(count: int) -> list[str]:
    return [f"{SHARED_PREFIX}{n}" for n in range(count)]


def marked_events(session_id: str, first: int, count: int, token: str, pad: int) -> tuple[Message, ...]:
    """``count`` events for versions ``first``..: a user message, then an assistant reply and another."""
    events = [Message.user(f"{marker(session_id, first)} {token} " + "x" * pad)]
    for version in range(first + 1, first + count):
        events.append(
            Message(
                "assistant", [Text(f"{marker(session_id, version)} {token}")], Usage(input_tokens=9, output_tokens=3)
            )
        )
    return tuple(events)


class ProcessWorkload:
    """The drivers of one child process."""

    def __init__(
        self, store: Any, slot: int, incarnation: int, seed: int, emit: Emit, *, shared: int, tasks: int
    ) -> None:
        self.store = store
        self.slot = slot
        self.prefix = f"p{slot}i{incarnation}"
        self.rng = random.Random(seed)
        self.emit = emit
        self.shared = shared_ids(shared)
        self.tasks = tasks
        self.own: list[str] = []
        self.counter = 0

    def _name(self) -> str:
        self.counter += 1
        return f"{self.prefix}n{self.counter}"

    async def _head(self, session_id: str) -> int:
        return int((await self.store.session_info(session_id)).version)

    async def append_logical(self, session_id: str, token: str, count: int, with_ids: bool) -> int:
        """Append one logical append until it is acknowledged (retrying conflicts); return its last version."""
        ids = [f"{token[1:]}.{k}" for k in range(count)] if with_ids else None
        pad = self.rng.randint(0, 400)
        while True:
            head = await self._head(session_id)
            last = head + count
            self.emit(f"T {session_id} append {last}")
            self.emit(f"TK {token} {session_id} {head + 1} {count}{' ids' if with_ids else ''}")
            try:
                version = await self.store.append(
                    session_id,
                    *marked_events(session_id, head + 1, count, token, pad),
                    expected_version=head,
                    event_ids=ids,
                )
            except ConflictError:
                await asyncio.sleep(0)
                continue  # another process appended first: plan again on the new head
            self.emit(f"A {session_id} {version}")
            self.emit(f"AK {token} {session_id} {version}")
            return int(version)

    async def _create(self) -> str:
        session_id = f"{self._name()}-s"
        self.emit(f"T {session_id} create 1")
        await self.store.create_session(session_id=session_id, model="mp-model")
        self.emit(f"A {session_id} 1")
        self.own.append(session_id)
        return session_id

    async def _fork(self, parent: str) -> None:
        head = await self._head(parent)
        at = self.rng.randint(1, head)
        child = f"{self._name()}-f"
        self.emit(f"T {child} fork {at + 1} {parent} {at}")
        for attempt in range(_FORK_ATTEMPTS):
            try:
                await self.store.fork(parent, at_version=at, session_id=child, branch_name=f"b{at}")
                break
            except HistoryUnavailableError:
                # Retention removed that version: fork at the head. Another process may append and
                # compact past a head read here before the fork reads it, so look again a few times.
                if attempt == _FORK_ATTEMPTS - 1:
                    raise
                at = await self._head(parent)
                self.emit(f"T {child} fork {at + 1} {parent} {at}")
        self.emit(f"A {child} {at + 1}")
        self.own.append(child)

    async def _drive(self) -> None:
        rng = self.rng
        while True:
            roll = rng.random()
            if roll < 0.04 or not self.own:
                await self._create()
            elif roll < 0.07:
                await self._fork(rng.choice(self.shared + self.own))
            else:
                session_id = rng.choice(self.shared) if roll < 0.6 else rng.choice(self.own)
                count = 3 if rng.random() < 0.25 else 1
                await self.append_logical(session_id, "@" + self._name(), count, rng.random() < 0.4)

    async def run(self, retries: list[tuple[str, str, int]]) -> None:
        prefix = f"p{self.slot}i"
        self.own = [info.session_id for info in await self.store.list_sessions() if info.session_id.startswith(prefix)]
        for token, session_id, count in retries:
            await self.append_logical(session_id, token, count, True)
        self.emit("RETRIED")
        await asyncio.gather(*(self._drive() for _ in range(self.tasks)))


async def _child(args: argparse.Namespace) -> None:
    from .._store import open_store

    out = sys.stdout

    def emit(line: str) -> None:
        out.write(line + "\n")
        out.flush()

    retries = []
    if args.retry:
        with open(args.retry) as source:
            retries = [tuple(item) for item in json.load(source)]
    options: dict[str, Any] = {}
    if not args.target.startswith(("postgresql://", "postgres://")):
        options["segment_bytes"] = args.segment_bytes
    async with open_store(args.target, **options) as store:
        emit("READY")
        workload = ProcessWorkload(
            store, args.slot, args.incarnation, args.seed, emit, shared=args.shared, tasks=args.tasks
        )
        await workload.run(retries)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="multi-process crash workload child")
    parser.add_argument("target")
    parser.add_argument("slot", type=int)
    parser.add_argument("incarnation", type=int)
    parser.add_argument("seed", type=int)
    parser.add_argument("--shared", type=int, default=8)
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--segment-bytes", type=int, default=64 * 1024)
    parser.add_argument("--retry", help="JSON file of [token, session, count] to retry first")
    asyncio.run(_child(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
