"""The crash workload and its invariant checker, shared by the crash tests and ``scripts/crash_campaign.py``.

A workload drives many sessions concurrently (single and multi-event appends,
prompts, conversation compactions, forks, new sessions). Every event carries a
marker ``"<session>|<version>"`` so the checker can tell exactly which attempted
append a recovered event came from. The workload records each attempt before
it is made and each acknowledgement after it returned in a ``Ledger``; run as
a child process (``python -m sessiondb.testing._crashwork DIR SEED``) it prints
the same facts line-buffered for a parent that kills it with SIGKILL.

The ledger lives in ``_ledger`` and the checker (``check_store``) in
``_crashcheck``; both are re-exported here for the tests and the campaign.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .._errors import HistoryUnavailableError, SessionDBError, StoreBrokenError, StoreClosedError
from .._events import Compacted, Message, PromptRecorded, Text, ToolUse, Usage
from ._crashcheck import check_store
from ._ledger import Ledger, SessionLedger, event_marker, marker

__all__ = [
    "Emit",
    "KillResult",
    "Ledger",
    "SessionLedger",
    "Workload",
    "check_store",
    "eager_compaction",
    "event_marker",
    "kill_campaign",
    "marker",
]

Emit = Callable[[str], None]


class Workload:
    """Concurrent session drivers over one open store, recording into a ledger and an emit callback."""

    def __init__(
        self,
        store: Any,
        seed: int,
        emit: Emit | None = None,
        *,
        tasks: int = 16,
        compact: bool = False,
        fork_rate: float = 0.04,
    ) -> None:
        self.compact = compact and hasattr(store, "compact")
        self.fork_rate = fork_rate
        self.store = store
        self.rng = random.Random(seed)
        self.seed = seed
        self.ledger = Ledger()
        self.emit = emit
        self.tasks = tasks
        self.heads: dict[str, int] = {}
        self.created = 0
        self.stop = False
        self.errors: list[BaseException] = []
        self.spawned: list[asyncio.Task[None]] = []
        self.live = 0

    def _say(self, line: str) -> None:
        self.ledger.feed(line)
        if self.emit is not None:
            self.emit(line)

    async def resume(self) -> list[str]:
        """Adopt the sessions already in the store (after a crash) as heads to continue."""
        infos = await self.store.list_sessions()
        for info in infos:
            self.heads[info.session_id] = info.version
        return [info.session_id for info in infos]

    def _new_id(self) -> str:
        self.created += 1
        return f"w{self.seed}-{self.created}"

    async def _create(self) -> str:
        session_id = self._new_id()
        self._say(f"T {session_id} create 1")
        await self.store.create_session(session_id=session_id, model="crash-model")
        self.heads[session_id] = 1
        self._say(f"A {session_id} 1")
        return session_id

    async def _fork(self, parent: str) -> str:
        head = self.heads[parent]
        at = self.rng.randint(1, head)
        child = self._new_id()
        self._say(f"T {child} fork {at + 1} {parent} {at}")
        try:
            await self.store.fork(parent, at_version=at, session_id=child, branch_name=f"b{at}")
        except HistoryUnavailableError:
            # Retention removed that version of the parent: fork at its head, which is always available.
            at = head
            self._say(f"T {child} fork {at + 1} {parent} {at}")
            await self.store.fork(parent, at_version=at, session_id=child, branch_name=f"b{at}")
        self.heads[child] = at + 1
        self._say(f"A {child} {at + 1}")
        return child

    def _events(self, session_id: str, head: int) -> tuple[Any, ...]:
        rng = self.rng
        roll = rng.random()
        first = head + 1
        if roll < 0.55:
            return (Message.user(marker(session_id, first) + " " + "x" * rng.randint(0, 300)),)
        if roll < 0.8:
            tool = f"t{first}"
            return (
                Message.user(marker(session_id, first)),
                Message(
                    "assistant",
                    [Text(marker(session_id, first + 1)), ToolUse(tool, "bash", '{"cmd":"ls"}')],
                    Usage(input_tokens=rng.randint(1, 900), output_tokens=rng.randint(1, 90)),
                ),
                Message.tool_result(tool, "bash", marker(session_id, first + 2) + "\n" + "y" * rng.randint(0, 2000)),
            )
        if roll < 0.9:
            return (PromptRecorded(marker(session_id, first), 1),)
        return (Compacted(marker(session_id, first), rng.randint(0, 3)),)

    async def _drive(self, session_id: str, steps: int | None) -> None:
        rng = self.rng
        done = 0
        while not self.stop and (steps is None or done < steps):
            done += 1
            head = self.heads[session_id]
            if rng.random() < self.fork_rate:
                child = await self._fork(session_id)
                # Bounded: a fork gets its own driver only while there are few of them.
                if self.live < 2 * self.tasks:
                    self.spawned.append(asyncio.get_running_loop().create_task(self._task(child, steps)))
                continue
            events = self._events(session_id, head)
            last = head + len(events)
            self._say(f"T {session_id} append {last}")
            if len(events) == 1 and isinstance(events[0], Compacted):
                # At most the live messages (a compaction of more is refused); only this task appends here.
                info = await self.store.session_info(session_id)
                live = info.message_count - (1 if info.compacted else 0)
                version = await self.store.record_compaction(
                    session_id,
                    summary=events[0].summary,
                    removed_message_count=min(events[0].removed_message_count, live),
                )
            else:
                version = await self.store.append(session_id, *events, expected_version=head)
            if version != last:
                raise AssertionError(f"append to {session_id} returned version {version}, expected {last}")
            self.heads[session_id] = last
            self._say(f"A {session_id} {last}")
            if rng.random() < 0.3:
                await asyncio.sleep(0)

    async def _task(self, session_id: str | None, steps: int | None) -> None:
        self.live += 1
        try:
            if session_id is None:
                session_id = await self._create()
            await self._drive(session_id, steps)
        except (StoreBrokenError, StoreClosedError, OSError) as exc:
            self.errors.append(exc)
        except SessionDBError as exc:  # anything else is a bug the checker must see
            self.errors.append(exc)
            raise
        finally:
            self.live -= 1

    async def run(self, *, steps: int | None = None, resume: bool = True) -> None:
        """Run ``tasks`` drivers (continuing existing sessions first) for ``steps`` each, or forever."""
        existing = await self.resume() if resume else []
        self.rng.shuffle(existing)
        chosen: list[str | None] = [*existing[: self.tasks]]
        chosen += [None] * (self.tasks - len(chosen))
        compactor = asyncio.ensure_future(self._compact_loop()) if self.compact else None
        results: list[Any] = list(await asyncio.gather(*(self._task(s, steps) for s in chosen), return_exceptions=True))
        # Forked drivers run as their own tasks: let them finish too.
        while self.spawned:
            spawned, self.spawned = self.spawned, []
            results += await asyncio.gather(*spawned, return_exceptions=True)
        if compactor is not None:
            self.stop = True
            results.append((await asyncio.gather(compactor, return_exceptions=True))[0])
        for result in results:
            if isinstance(result, BaseException) and not isinstance(
                result, (StoreBrokenError, StoreClosedError, OSError)
            ):
                raise result

    async def _compact_loop(self) -> None:
        """Storage compaction passes beside the drivers (snapshots, checkpoint, segment deletion)."""
        rng = random.Random(self.seed + 1)
        while not self.stop:
            for _ in range(rng.randint(1, 20)):
                await asyncio.sleep(0)
            try:
                await self.store.compact()
            except (StoreBrokenError, StoreClosedError, OSError) as exc:
                self.errors.append(exc)
                return


# --------------------------------------------------------------------------- kill campaign (parent side)


@dataclass
class KillResult:
    kills: int = 0
    acks: int = 0
    attempts: int = 0
    killed_before_ready: int = 0
    violations: list[str] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)


def _spawn(path: str, seed: int, segment_bytes: int, tasks: int, forks: bool) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sessiondb.testing._crashwork",
            path,
            str(seed),
            "--segment-bytes",
            str(segment_bytes),
            "--tasks",
            str(tasks),
            *([] if forks else ["--no-forks"]),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    )


async def kill_campaign(
    path: str | os.PathLike[str],
    kills: int,
    *,
    seed: int = 0,
    segment_bytes: int = 64 * 1024,
    tasks: int = 24,
    max_delay: float = 0.35,
    ledger: Ledger | None = None,
    progress: Callable[[int, KillResult], None] | None = None,
    forks: bool = True,
) -> KillResult:
    """Start the workload child on ``path`` ``kills`` times, SIGKILL it at a random moment, check after each.

    Every child continues the sessions the earlier ones left, so each check
    covers everything acknowledged in every earlier run too.
    """
    rng = random.Random(seed)
    ledger = ledger if ledger is not None else Ledger()
    result = KillResult()
    path = os.fspath(path)
    loop = asyncio.get_running_loop()
    for kill in range(kills):
        child = _spawn(path, seed * 100_000 + kill, segment_bytes, tasks, forks)
        lines: list[str] = []
        ready = asyncio.Event()

        def pump(child: subprocess.Popen[str] = child, lines: list[str] = lines, ready: asyncio.Event = ready) -> None:
            # Drain the pipe continuously so the child never blocks on a full pipe.
            assert child.stdout is not None
            for line in child.stdout:
                lines.append(line)
                if line == "READY\n":
                    loop.call_soon_threadsafe(ready.set)
            loop.call_soon_threadsafe(ready.set)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        if rng.random() < 0.15:
            # Early: during interpreter start-up, or while the store recovers the previous crash.
            await asyncio.sleep(rng.uniform(0.0, 0.3))
            if not ready.is_set():
                result.killed_before_ready += 1
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ready.wait(), 30)
            await asyncio.sleep(rng.uniform(0.0, max_delay))
        exited = child.poll()
        child.send_signal(signal.SIGKILL)
        child.wait()
        await loop.run_in_executor(None, reader.join)
        assert child.stderr is not None
        errors = child.stderr.read()
        child.stdout.close()  # type: ignore[union-attr]
        child.stderr.close()
        if exited is not None:
            result.violations.append(f"kill {kill}: the child exited by itself ({exited}): {errors[-2000:]}")
        result.kills += 1
        before_acks, before_attempts = ledger.acks, ledger.attempts
        for line in lines:
            if line.endswith("\n"):  # a line cut by the kill was never a complete acknowledgement
                ledger.feed(line)
        result.acks += ledger.acks - before_acks
        result.attempts += ledger.attempts - before_attempts
        problems = await check_store(path, ledger, full=(kill == kills - 1 or kill % 10 == 9), stats=result.stats)
        result.violations += [f"kill {kill}: {problem}" for problem in problems]
        if progress is not None:
            progress(kill, result)
    return result


# --------------------------------------------------------------------------- child process


def eager_compaction() -> dict[str, Any]:
    """``open_store`` options for storage compaction that snapshots and deletes segments all the time."""
    try:
        from .._compactor import CompactionSettings
    except ImportError:  # an older sessiondb without a compactor
        return {}
    return {
        "compaction": CompactionSettings(
            background=False, min_tail_events=20, min_tail_bytes=16 * 1024, keep_segments=2
        )
    }


async def _child(path: str, seed: int, segment_bytes: int, tasks: int, forks: bool) -> None:
    from .._store import open_store

    out = sys.stdout

    def emit(line: str) -> None:
        out.write(line + "\n")
        out.flush()

    store = open_store(path, segment_bytes=segment_bytes, **eager_compaction())
    await store.start()
    compactor = getattr(store, "compact", None)
    emit("READY")
    # Forks run beside compaction: a fork racing a pass once lost its parent history (fixed by
    # the compactor's pass lock, tests/reliability/test_compaction_race.py); --no-forks turns them off.
    fork_rate = 0.04 if forks else 0.0
    workload = Workload(store, seed, emit, tasks=tasks, fork_rate=fork_rate)
    if compactor is not None:
        # Storage compaction running beside the appenders, so kills land inside it too.
        async def compact_forever() -> None:
            while True:
                await asyncio.sleep(0.02 + workload.rng.random() * 0.1)
                try:
                    await compactor()
                except (StoreBrokenError, StoreClosedError):
                    return

        asyncio.get_running_loop().create_task(compact_forever())
    await workload.run(steps=None)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="crash workload child: appends and prints acknowledgements")
    parser.add_argument("path")
    parser.add_argument("seed", type=int)
    parser.add_argument("--segment-bytes", type=int, default=256 * 1024)
    parser.add_argument("--tasks", type=int, default=24)
    parser.add_argument("--no-forks", dest="forks", action="store_false", help="never fork sessions")
    args = parser.parse_args(argv)
    asyncio.run(_child(args.path, args.seed, args.segment_bytes, args.tasks, args.forks))


if __name__ == "__main__":
    main()
