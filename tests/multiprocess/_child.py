"""A child process of the multi-process tests: one role, talking to the test over pipes, public API only.

Usage: ``python _child.py ROLE TARGET ...`` (TARGET: a store directory or a PostgreSQL URL).
Every role prints ``READY`` once the store is open and ends with one JSON line
``RESULT {...}``; a failed check prints it with ``"failures"`` and exits 1.

- ``ryw NAME ROUNDS READ_FD WRITE_FD FIRST``: read-your-writes ping-pong with a peer.
- ``subscribe NAME COUNT SESSIONS``: subscribers + appender (waits for ``GO`` and ``END`` on stdin).
- ``reader SECONDS``: reads and a live ``subscribe_all`` until ``STOP`` on stdin (at most SECONDS).
- ``compactor SECONDS SEGMENT_BYTES``: storage-compaction passes with eager retention, and some appends.
- ``append COUNT SESSIONS``: ``COUNT`` appends to each session, then exits (no compaction of its own).
- ``labeler``: per ``GO N`` on stdin, labels sessions (a new scoped one, and changes to earlier ones) and
  prints ``DONE N {json}`` with what each session's labels are now; ``END`` finishes.
- ``relabel SESSION``: on ``GO``, the same label changes many times at once (title, pin, tag removal),
  to race other processes doing the same; the result holds the versions each call returned.
- ``roll NAME COUNT SEGMENT_BYTES``: labelled sessions of its own, ``COUNT`` appends spread over them and
  the session ``shared`` (rolling through segments), label changes and a deletion; reports every ack.
- ``laggard SEGMENT_BYTES QUERIES``: reads once, then idles (no read, no append) until ``GO {heads}``; then
  appends to ``shared`` with ``expected_version``, labels a new session, and reports its view of the store.
- ``lagsub SEGMENT_BYTES``: subscribes to ``quiet``, ``shared`` and every session, reports ``READY`` once
  they delivered the log; after ``GO {heads}`` reports what each delivered (the test stops it in between).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import sys
import time
from typing import Any

from _helpers import message_texts, store_view

import sessiondb
from sessiondb import CompactionSettings, HistoryUnavailableError, Message, SessionDBError, Text
from sessiondb.testing._mpwork import ProcessWorkload


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def finish(result: dict[str, Any]) -> None:
    say("RESULT " + json.dumps(result))
    sys.exit(1 if result.get("failures") else 0)


def text_of(event: Any) -> str | None:
    if isinstance(event, Message):
        for block in event.blocks:
            if isinstance(block, Text):
                return block.text
    return None


async def stdin_line() -> str:
    line = await asyncio.to_thread(sys.stdin.readline)
    if not line:
        raise SystemExit("the test closed stdin")
    return line.strip()


# ------------------------------------------------------------------ read-your-writes


async def ryw(target: str, name: str, rounds: int, read_fd: int, write_fd: int, first: bool) -> None:
    """Alternate with a peer: append (and sometimes create), signal; on the peer's signal, read it back four ways."""
    failures: list[str] = []
    reader = os.fdopen(read_fd, "r", buffering=1)
    writer = os.fdopen(write_fd, "w", buffering=1)
    rng = random.Random(name)
    checked = 0
    async with sessiondb.open_store(target) as store:
        say("READY")
        turn = first
        for round_ in range(2 * rounds):
            if turn:
                session_id = rng.choice(["ryw-shared", f"ryw-{name}"])
                if round_ % 7 == 3:
                    session_id = f"ryw-{name}-{round_}"
                    await store.create_session(session_id=session_id)
                text = f"{name}:{round_}"
                version = await store.append(session_id, Message.user(text))
                writer.write(f"{session_id} {version} {text}\n")  # the append returned: now tell the peer
            else:
                line = await asyncio.to_thread(reader.readline)
                if not line:
                    failures.append(f"round {round_}: the peer closed the pipe")
                    break
                session_id, version_text, text = line.split()
                version = int(version_text)
                failures += await _read_back(store, session_id, version, text, target.startswith("postgres"))
                checked += 1
                if failures:
                    break
            turn = not turn
    finish({"checked": checked, "failures": failures})


async def _read_back(
    store: sessiondb.Store, session_id: str, version: int, text: str, lagging_read_all: bool
) -> list[str]:
    """What a read started after the peer's append returned must show (nobody appends meanwhile).

    ``lagging_read_all``: the store is PostgreSQL, whose ``read_all`` may lag (see below).
    """
    failures = []
    session = await store.load(session_id)
    if session.version != version or text_of(session.messages[-1]) != text:
        failures.append(f"load({session_id}) at v{session.version}, last {session.messages[-1]!r:.80}; want v{version}")
    events = [r async for r in store.read(session_id, after=version - 1)]
    if [(r.version, text_of(r.event)) for r in events] != [(version, text)]:
        failures.append(f"read({session_id}, after={version - 1}) gave {[(r.version, r.event) for r in events]!r:.200}")
    infos = {info.session_id: info.version for info in await store.list_sessions()}
    if infos.get(session_id) != version:
        failures.append(f"list_sessions shows {session_id} at {infos.get(session_id)}, want {version}")
    if events:
        after = events[0].position - 1
        page = await store.read_all(after=after, limit=10)
        if not page and lagging_read_all:
            # PostgreSQL's read_all shows only positions below the oldest transaction still open
            # anywhere on the server (docs/postgres.md), so it may lag an append that returned:
            # await the event through a subscription (bounded), then read_all must show it.
            subscription = store.subscribe_all(after=after)
            try:
                async with asyncio.timeout(60):
                    await anext(aiter(subscription))
            except TimeoutError:
                failures.append(f"read_all(after={after}) still empty after 60 s")
            finally:
                await subscription.aclose()
            page = await store.read_all(after=after, limit=10)
        if not page or (page[0].session_id, page[0].version) != (session_id, version):
            failures.append(f"read_all(after={events[0].position - 1}) starts with {page[:1]!r:.200}")
    return failures


# ------------------------------------------------------------------ subscriptions


async def subscribe(target: str, name: str, count: int, sessions: list[str]) -> None:
    """Subscribe (all + each session), then append ``count`` events; report what each subscriber saw."""
    seen_all: list[tuple[int, str, int, str | None]] = []
    seen_one: dict[str, list[int]] = {sid: [] for sid in sessions}
    latencies: list[float] = []
    acked: list[tuple[str, int]] = []
    async with sessiondb.open_store(target) as store:
        subscriptions = [store.subscribe_all()] + [store.subscribe(sid) for sid in sessions]

        async def follow_all() -> None:
            async for recorded in subscriptions[0]:
                latencies.append(time.time() * 1000 - recorded.timestamp_ms)
                seen_all.append((recorded.position, recorded.session_id, recorded.version, text_of(recorded.event)))

        async def follow(index: int, session_id: str) -> None:
            async for recorded in subscriptions[index]:
                seen_one[session_id].append(recorded.version)

        followers = [asyncio.create_task(follow_all())]
        followers += [asyncio.create_task(follow(n + 1, sid)) for n, sid in enumerate(sessions)]
        say("READY")
        if await stdin_line() != "GO":
            raise SystemExit("expected GO")
        rng = random.Random(name)

        async def append(n: int) -> None:
            for i in range(n, count, 4):
                session_id = rng.choice(sessions)
                acked.append((session_id, await store.append(session_id, Message.user(f"{name}:{i}"))))
                await asyncio.sleep(rng.uniform(0, 0.01))

        await asyncio.gather(*(append(n) for n in range(4)))
        say("WROTE " + json.dumps(acked))
        end = json.loads((await stdin_line()).removeprefix("END "))  # {session: head} over every process
        failures: list[str] = []
        deadline = time.monotonic() + 120
        total = sum(end.values())
        while time.monotonic() < deadline and (
            len(seen_all) < total or any(len(seen_one[sid]) < end[sid] for sid in sessions)
        ):
            await asyncio.sleep(0.05)
        if len(seen_all) < total:
            failures.append(f"subscribe_all saw {len(seen_all)} of {total} events within 120 s")
        await asyncio.sleep(0.2)  # a duplicate delivered late would show here
        for follower in followers:
            follower.cancel()
        for subscription in subscriptions:
            await subscription.aclose()
    finish(
        {
            "all": seen_all,
            "one": seen_one,
            "acked": acked,
            "failures": failures,
            "latency_ms": [round(latency, 2) for latency in latencies],
        }
    )


# ------------------------------------------------------------------ compaction beside everything else


async def reader(target: str, seconds: float) -> None:
    """Reads of every kind and a live subscription until ``STOP`` on stdin (at most ``seconds``).

    Any error but a clear ``HistoryUnavailableError`` fails.
    """
    failures: list[str] = []
    counts = {"loads": 0, "reads": 0, "read_alls": 0, "cut": 0, "subscribed": 0}
    rng = random.Random(1)
    async with sessiondb.open_store(target) as store:
        # Started before the writers: it follows everything from the first event, live.
        subscription = store.subscribe_all(after=0)
        say("READY")
        positions: list[int] = []

        async def follow() -> None:
            async for recorded in subscription:
                positions.append(recorded.position)

        follower = asyncio.create_task(follow())
        stop = asyncio.create_task(stdin_line())
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not failures and not stop.done():
            try:
                infos = await store.list_sessions()
                for info in rng.sample(infos, min(8, len(infos))):
                    session = await store.load(info.session_id)
                    counts["loads"] += 1
                    if session.version < info.version:
                        failures.append(f"load({info.session_id}) at {session.version} < listed {info.version}")
                    try:
                        events = [r async for r in store.read(info.session_id, after=max(0, info.version - 5))]
                        counts["reads"] += 1
                        if events and events[0].version != max(0, info.version - 5) + 1:
                            failures.append(f"read({info.session_id}) started at {events[0].version}")
                    except HistoryUnavailableError:
                        counts["cut"] += 1  # retention removed it: a clear error, allowed
                try:
                    page = await store.read_all(after=max(0, (positions[-1] if positions else 0) - 50), limit=100)
                    counts["read_alls"] += 1
                    if any(b.position <= a.position for a, b in itertools.pairwise(page)):
                        failures.append("read_all positions not increasing")
                except HistoryUnavailableError:
                    counts["cut"] += 1  # the subscription lags behind retention's window: a clear error, allowed
            except SessionDBError as exc:
                failures.append(f"read failed: {exc!r}")
            except Exception as exc:
                failures.append(f"read failed with a raw error: {exc!r}")
            await asyncio.sleep(0.01)
        follower.cancel()
        stop.cancel()
        await subscription.aclose()
        if follower.done() and not follower.cancelled():
            error = follower.exception()
            if isinstance(error, HistoryUnavailableError):
                # A subscriber slower than retention (2 kept segments of 16 KiB here) is told so: allowed.
                counts["subscription_cut"] = 1
            elif error is not None:
                failures.append(f"subscribe_all failed: {error!r}")
    counts["subscribed"] = len(positions)
    if any(b <= a for a, b in itertools.pairwise(positions)):
        failures.append("subscribe_all delivered positions out of order or twice")
    finish({**counts, "positions": positions, "failures": failures})


async def compactor(target: str, seconds: float, segment_bytes: int) -> None:
    """Compaction passes back to back; beside them two drivers of the crash workload (printing ledger lines).

    It passes for at least ``seconds``, and on until it has written a snapshot and (on a
    directory) retention by any process deleted the first segment, at most 120 s. It writes too because a PostgreSQL
    store snapshots only the sessions its own process wrote.
    """
    settings = CompactionSettings(background=False, min_tail_events=20, min_tail_bytes=16 * 1024, keep_segments=2)
    postgres = target.startswith("postgres")
    options: dict[str, Any] = {} if postgres else {"segment_bytes": segment_bytes}
    totals: dict[str, int] = {}
    passes = 0
    failures: list[str] = []

    def retention_ran() -> bool:
        # By any process's pass: the writers' background compactors take the compaction lock too,
        # so this process's own totals may show no deleted segment while retention did run.
        return postgres or not os.path.exists(os.path.join(target, "0000000001.seg"))

    def goal_met() -> bool:
        return totals.get("snapshots_written", 0) > 0 and retention_ran()

    async with sessiondb.open_store(target, compaction=settings, **options) as store:
        say("READY")
        workload = ProcessWorkload(store, 9, 0, 99, say, shared=6, tasks=2)
        writing = asyncio.create_task(workload.run([]))
        started = time.monotonic()
        while time.monotonic() - started < seconds or (not goal_met() and time.monotonic() - started < 120):
            try:
                done = await store.compact()
            except SessionDBError as exc:
                failures.append(f"compact() failed: {exc!r}")
                break
            passes += 1
            for key, value in done.items():
                if isinstance(value, int):
                    totals[key] = totals.get(key, 0) + value
            await asyncio.sleep(0.05)
        writing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writing
    finish({"passes": passes, "totals": totals, "failures": failures, "retention_ran": retention_ran()})


async def append(target: str, count: int, sessions: list[str]) -> None:
    """Append ``count`` messages to each session; report the versions reached."""
    async with sessiondb.open_store(target, compaction=CompactionSettings(background=False)) as store:
        say("READY")
        versions = {}
        for session_id in sessions:
            for n in range(count):
                versions[session_id] = await store.append(session_id, Message.user(f"{session_id} {n} " + "x" * 200))
    finish({"versions": versions, "failures": []})


async def labeler(target: str) -> None:
    """Create scoped sessions and change labels on the test's command; report the labels after each round."""
    async with sessiondb.open_store(target, compaction=CompactionSettings(background=False)) as store:
        say("READY")
        made: list[str] = []
        while (line := await stdin_line()) != "END":
            n = int(line.split()[1])
            sid = await store.create_session(session_id=f"lab-{n}", scope=f"scope-{n % 3}")
            made.append(sid)
            await store.set_title(sid, f"Round {n} of labels")
            await store.add_tags(sid, f"round-{n % 4}", "child")
            if n % 2:
                await store.set_pinned(sid, True)
            if n >= 2:  # change an earlier one too: its old tag and pin must leave the other process's sets
                earlier = made[n - 2]
                await store.remove_tags(earlier, "child")
                await store.set_pinned(earlier, False)
                await store.set_title(earlier, None)
            if n >= 4 and n % 4 == 0:
                await store.delete_session(made[n - 4])
            labels = {}
            for session_id in made:
                with contextlib.suppress(sessiondb.SessionNotFoundError):
                    info = await store.session_info(session_id)
                    labels[session_id] = [info.scope, info.title, list(info.tags), info.pinned]
            say(f"DONE {n} " + json.dumps(labels))
    finish({"failures": []})


async def relabel(target: str, session_id: str) -> None:
    """Race other processes making the same label changes: each change must be written once in all."""
    async with sessiondb.open_store(target, compaction=CompactionSettings(background=False)) as store:
        say("READY")
        await stdin_line()  # GO
        versions = await asyncio.gather(
            *(store.set_title(session_id, "same") for _ in range(10)),
            *(store.set_pinned(session_id, True) for _ in range(10)),
            *(store.remove_tags(session_id, "old") for _ in range(10)),
        )
    finish({"versions": list(versions), "failures": []})


# ------------------------------------------------------------------ falling behind retention


async def roll(target: str, name: str, count: int, segment_bytes: int) -> None:
    """Labelled sessions, many appends (rolling segments), label changes and a deletion; every ack reported."""
    acked: list[tuple[str, int, str]] = []
    settings = CompactionSettings(background=False)
    async with sessiondb.open_store(target, segment_bytes=segment_bytes, compaction=settings) as store:
        say("READY")
        own = [f"{name}-a", f"{name}-b", f"{name}-gone"]
        await store.create_session(session_id=own[0], scope=f"scope-{name}")
        await store.create_session(session_id=own[1], scope="scope-both")
        await store.create_session(session_id=own[2], scope=f"scope-{name}")
        await store.set_title(own[0], f"{name} first title")
        await store.add_tags(own[0], "roll", name)
        await store.add_tags(own[2], "roll")
        await store.set_pinned(own[1], True)
        for n in range(count):
            session_id = ["shared", *own][n % 4]
            text = f"{name}:{n} " + "r" * 150
            acked.append((session_id, await store.append(session_id, Message.user(text)), text))
            if n == count // 2:  # label changes half-way, while the other writer appends too
                await store.set_title(own[0], f"{name} second title")
                await store.remove_tags(own[0], "roll")
                await store.set_pinned(own[1], False)
                await store.add_tags(own[1], "late")
        await store.delete_session(own[2])
    finish({"acked": acked, "failures": []})


async def laggard(target: str, segment_bytes: int, queries: list[str]) -> None:
    """Read once, idle while others roll and retention removes this process's newest segment, then go on."""
    settings = CompactionSettings(background=False)
    async with sessiondb.open_store(target, segment_bytes=segment_bytes, compaction=settings) as store:
        await store.load("shared")
        await store.list_sessions()
        stats = store.statistics()
        say("READY " + json.dumps({"segment": stats["segments_sealed"] + 1, "position": stats["last_position"]}))
        heads = json.loads((await stdin_line()).removeprefix("GO "))
        # The first call after the others moved on: planned against the true head, or ConflictError.
        version = await store.append(
            "shared", Message.user("laggard after falling behind"), expected_version=heads["shared"]
        )
        created = await store.create_session(session_id="laggard-new", scope="scope-both")
        await store.set_title(created, "laggard title")
        await store.add_tags(created, "late", "laggard")
        view = await store_view(store, queries)
        texts = {sid: message_texts(await store.load(sid)) for sid in view["loaded"]}
        rebuilds = store.statistics()["index_rebuilds"]
    finish({"version": version, "view": view, "texts": texts, "rebuilds": rebuilds, "failures": []})


async def lagsub(target: str, segment_bytes: int) -> None:
    """Subscribers that must go on across a rebuild: exactly once, in order, or a clear error."""
    settings = CompactionSettings(background=False)
    delivered: dict[str, list[int]] = {"quiet": [], "shared": [], "all": []}
    ended: dict[str, str] = {}
    async with sessiondb.open_store(target, segment_bytes=segment_bytes, compaction=settings) as store:
        subscriptions = {"quiet": store.subscribe("quiet"), "shared": store.subscribe("shared")}
        subscriptions["all"] = store.subscribe_all()

        async def follow(key: str) -> None:
            try:
                async for recorded in subscriptions[key]:
                    delivered[key].append(recorded.position if key == "all" else recorded.version)
            except SessionDBError as exc:
                ended[key] = f"{type(exc).__name__}: {exc}"
            else:
                ended[key] = "end"

        followers = [asyncio.create_task(follow(key)) for key in subscriptions]
        heads = {info.session_id: info.version for info in await store.list_sessions()}
        last = store.statistics()["last_position"]
        while len(delivered["all"]) < last or any(len(delivered[s]) < heads[s] for s in ("quiet", "shared")):
            await asyncio.sleep(0.01)  # bounded by the test's wait for READY
        stats = store.statistics()
        say("READY " + json.dumps({"segment": stats["segments_sealed"] + 1, "position": stats["last_position"]}))
        heads = json.loads((await stdin_line()).removeprefix("GO "))
        failures: list[str] = []
        deadline = time.monotonic() + 120

        def settled(quiet_head: int) -> bool:
            quiet_done = len(delivered["quiet"]) >= quiet_head or "quiet" in ended
            return quiet_done and "shared" in ended and "all" in ended

        while time.monotonic() < deadline and not settled(heads["quiet"]):
            await asyncio.sleep(0.01)
        # This process's own append after the rebuild reaches its subscriber once.
        try:
            own = await store.append("quiet", Message.user("lagsub after falling behind"))
        except SessionDBError as exc:
            own = 0
            failures.append(f"append after falling behind failed: {exc!r}")
        while time.monotonic() < deadline and not settled(own):
            await asyncio.sleep(0.01)
        if time.monotonic() >= deadline:
            failures.append(f"subscribers did not finish within 120 s: {delivered['quiet']}, {ended}")
        await asyncio.sleep(0.2)  # a duplicate delivered late would show here
        for follower in followers:
            follower.cancel()
        for subscription in subscriptions.values():
            await subscription.aclose()
        rebuilds = store.statistics()["index_rebuilds"]
    finish({"delivered": delivered, "ended": ended, "own": own, "rebuilds": rebuilds, "failures": failures})


def main() -> None:
    role, target, *rest = sys.argv[1:]
    if role == "ryw":
        name, rounds, read_fd, write_fd, first = rest
        asyncio.run(ryw(target, name, int(rounds), int(read_fd), int(write_fd), first == "1"))
    elif role == "subscribe":
        name, count, sessions = rest
        asyncio.run(subscribe(target, name, int(count), sessions.split(",")))
    elif role == "reader":
        asyncio.run(reader(target, float(rest[0])))
    elif role == "append":
        asyncio.run(append(target, int(rest[0]), rest[1].split(",")))
    elif role == "compactor":
        asyncio.run(compactor(target, float(rest[0]), int(rest[1])))
    elif role == "labeler":
        asyncio.run(labeler(target))
    elif role == "relabel":
        asyncio.run(relabel(target, rest[0]))
    elif role == "roll":
        asyncio.run(roll(target, rest[0], int(rest[1]), int(rest[2])))
    elif role == "laggard":
        asyncio.run(laggard(target, int(rest[0]), rest[1].split(",")))
    elif role == "lagsub":
        asyncio.run(lagsub(target, int(rest[0])))
    else:
        raise SystemExit(f"unknown role {role!r}")


if __name__ == "__main__":
    main()
