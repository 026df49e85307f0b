"""The multi-process kill campaign (parent side): several writer children, random SIGKILLs and restarts.

``multi_kill_campaign`` creates the shared sessions, starts ``processes``
children (``python -m sessiondb.testing._mpwork``), then repeatedly SIGKILLs
a random one at a random moment (sometimes while it is still starting or
recovering) and starts a new incarnation of it with the event-id appends it
left unacknowledged, while the others keep going. At the end every child is
killed and ``check_store`` verifies the store against the ledger of every
incarnation's output. A child that exits by itself (any error) ends the
campaign at once with its stderr.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ._crashwork import KillResult, Ledger, check_store
from ._mpwork import shared_ids


class ChildFailed(Exception):
    """A workload child exited by itself; the message holds its exit status and the end of its stderr."""


def is_postgres(target: str) -> bool:
    return target.startswith(("postgresql://", "postgres://"))


@dataclass
class WriterChild:
    slot: int
    incarnation: int
    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)
    reader: threading.Thread | None = None
    retries: list[tuple[str, str, int]] = field(default_factory=list)
    retry_file: str | None = None

    def pump(self) -> None:
        # Drain the pipe continuously so the child never blocks on a full pipe.
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            if line == "READY\n":
                self.ready.set()
        self.ready.set()

    errors: str = ""

    def failure(self) -> str:
        """Why it exited by itself: its status and the end of its stderr (the child is stopped)."""
        exited = self.process.poll()
        self.stop()
        return f"child {self.slot}.{self.incarnation} exited with {exited}: {self.errors[-3000:]}"

    def stop(self) -> None:
        """SIGKILL (if still running), reap, join the reader, keep the end of stderr, close the pipes."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        if self.reader is not None:
            self.reader.join(timeout=30)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None and not stream.closed:
                if stream is self.process.stderr:
                    self.errors = stream.read()[-3000:]
                stream.close()
        if self.retry_file is not None:
            os.unlink(self.retry_file)
            self.retry_file = None

    def unacknowledged(self) -> list[tuple[str, str, int]]:
        """The event-id appends this incarnation (or the one before, via its retries) left unacknowledged."""
        pending = {token: (token, session_id, count) for token, session_id, count in self.retries}
        for line in self.lines:
            parts = line.split()
            if not line.endswith("\n") or not parts:
                continue
            if parts[0] == "TK" and parts[-1] == "ids":
                pending[parts[1]] = (parts[1], parts[2], int(parts[4]))
            elif parts[0] == "AK":
                pending.pop(parts[1], None)
        return list(pending.values())


def spawn_writer(
    target: str, slot: int, incarnation: int, seed: int, retries: list[tuple[str, str, int]], options: list[str]
) -> WriterChild:
    retry_file = None
    if retries:
        handle, retry_file = tempfile.mkstemp(prefix="mpwork-retry-", suffix=".json")
        with os.fdopen(handle, "w") as out:
            json.dump(retries, out)
    command = [sys.executable, "-m", "sessiondb.testing._mpwork", target, str(slot), str(incarnation), str(seed)]
    process = subprocess.Popen(
        [*command, *options, *(["--retry", retry_file] if retry_file else [])],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    child = WriterChild(slot, incarnation, process, retries=retries, retry_file=retry_file)
    child.reader = threading.Thread(target=child.pump, daemon=True)
    child.reader.start()
    return child


async def create_shared(target: str, count: int, ledger: Ledger) -> None:
    """Create the shared sessions every child appends to (recorded in the ledger)."""
    from .._store import open_store

    async with open_store(target) as store:
        for session_id in shared_ids(count):
            ledger.feed(f"T {session_id} create 1")
            await store.create_session(session_id=session_id, model="mp-model")
            ledger.feed(f"A {session_id} 1")


async def drop_schema(dsn: str, schema: str) -> None:
    """Drop a PostgreSQL schema a campaign or benchmark made (asyncpg, the PostgreSQL backend's driver)."""
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"drop schema if exists {schema} cascade")
    finally:
        await conn.close()


async def wait_ready(child: WriterChild, timeout: float) -> None:
    """Until the child opened the store; ``ChildFailed`` at once if it exits first."""
    deadline = time.monotonic() + timeout
    while not child.ready.is_set():
        if child.process.poll() is not None or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.02)
    if child.process.poll() is not None:
        raise ChildFailed(child.failure())
    if not child.ready.is_set():
        child.stop()
        raise ChildFailed(f"child {child.slot}.{child.incarnation} did not open the store within {timeout} s")


async def _ready_slots(children: dict[int, WriterChild], timeout: float) -> list[int]:
    """The slots whose child has opened the store (waiting for one if none has); ``ChildFailed`` if one exits."""
    deadline = time.monotonic() + timeout
    while True:
        for child in children.values():
            if child.process.poll() is not None:
                raise ChildFailed(child.failure())
        ready = [slot for slot, child in children.items() if child.ready.is_set()]
        if ready:
            return ready
        if time.monotonic() > deadline:
            raise ChildFailed(f"no child opened the store within {timeout} s")
        await asyncio.sleep(0.02)


async def multi_kill_campaign(
    target: str | os.PathLike[str],
    kills: int,
    *,
    processes: int = 4,
    seed: int = 0,
    shared: int = 8,
    tasks: int = 8,
    segment_bytes: int = 64 * 1024,
    max_delay: float = 0.6,
    ready_timeout: float = 60.0,
    progress: Callable[[int, KillResult], None] | None = None,
) -> KillResult:
    """``kills`` SIGKILLs of random children among ``processes`` writers, then one check of everything.

    Raises ``ChildFailed`` when a child exits by itself (it never should).
    """
    target = os.fspath(target)
    rng = random.Random(seed)
    ledger = Ledger()
    result = KillResult()
    options = ["--shared", str(shared), "--tasks", str(tasks), "--segment-bytes", str(segment_bytes)]
    await create_shared(target, shared, ledger)
    children: dict[int, WriterChild] = {}
    incarnations = dict.fromkeys(range(processes), 0)
    newest = processes - 1  # the slot started last
    try:
        for slot in range(processes):
            children[slot] = spawn_writer(target, slot, 0, seed * 100_000 + slot, [], options)
        for child in children.values():
            await wait_ready(child, ready_timeout)
        for kill in range(kills):
            early = rng.random() < 0.15
            await asyncio.sleep(rng.uniform(0.0, 0.3 if early else max_delay))
            for child in children.values():
                if child.process.poll() is not None:
                    raise ChildFailed(child.failure())
            if early:  # perhaps still starting, or recovering and retrying what its predecessor left
                slot = newest
            else:  # a child at work; the others keep going meanwhile
                ready = await _ready_slots(children, ready_timeout)
                slot = rng.choice(ready)
            victim = children[slot]
            if not victim.ready.is_set():
                result.killed_before_ready += 1
            await asyncio.get_running_loop().run_in_executor(None, victim.stop)
            result.kills += 1
            retries = victim.unacknowledged()
            feed_ledger(ledger, victim, result)
            incarnations[slot] += 1
            children[slot] = spawn_writer(
                target, slot, incarnations[slot], seed * 100_000 + incarnations[slot] * 100 + slot, retries, options
            )
            newest = slot
            if progress is not None:
                progress(kill, result)
    finally:
        for child in children.values():
            child.stop()
    for child in children.values():
        feed_ledger(ledger, child, result)
    problems = await check_store(
        target, ledger, full=True, stats=result.stats, gapless_positions=not is_postgres(target)
    )
    result.violations += problems
    return result


def feed_ledger(ledger: Ledger, child: WriterChild, result: KillResult) -> None:
    before_acks, before_attempts = ledger.acks, ledger.attempts
    for line in child.lines:
        if line.endswith("\n"):  # a line cut by the kill was never a complete acknowledgement
            ledger.feed(line)
    child.lines = []
    result.acks += ledger.acks - before_acks
    result.attempts += ledger.attempts - before_attempts
