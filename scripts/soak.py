#!/usr/bin/env python3
"""Soak run (``make soak``): 10,000 concurrent appenders, random cancellations, readers and subscribers, for minutes.

Each appender owns a session and appends numbered messages (``"<n>"``), awaiting
each one as an agent loop does. A fraction of appends is cancelled at a random
await point; a cancelled append may land or not, but never partly. Readers load
and read random sessions the whole time (checking each view is gapless and in
order); subscribers follow every session (``subscribe_all``) checking positions
arrive gapless. Every minute one line reports throughput, p50/p99/max append
latency, the pending queue, and current and peak RSS.

At the end the store is closed, reopened, and every session checked: versions
gapless; messages in the order they were appended, none twice; every append
that returned is there at the version it returned; everything there was
attempted, and anything not returned was a cancelled append. Exit status 1 on
any violation.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import resource
import shutil
import sys
import tempfile
import time
from array import array

import sessiondb
from sessiondb import Message

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * PAGE / 1e6


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3  # KiB on Linux


class Appender:
    """One session's driver and its record: what returned (n, version), what was cancelled."""

    __slots__ = ("attempted", "cancelled", "returned_n", "returned_v", "session_id")

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.attempted = 0
        self.returned_n = array("I")
        self.returned_v = array("I")
        self.cancelled: set[int] = set()


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.stop = False
        self.latencies: list[float] = []
        self.appends = 0
        self.cancellations = 0
        self.cancelled_but_returned = 0
        self.reads = 0
        self.subscribed = 0
        self.violations: list[str] = []
        self.appenders: list[Appender] = []

    async def appender(self, store: sessiondb.Store, record: Appender) -> None:
        rng = random.Random(record.session_id)
        cancel_rate = self.args.cancel_rate
        while not self.stop:
            record.attempted += 1
            n = record.attempted
            message = Message.user(f"{n}")
            started = time.perf_counter()
            if rng.random() < cancel_rate:
                task = asyncio.ensure_future(store.append(record.session_id, message))
                # Cancel at a random await point: before it is queued, while queued, or while syncing.
                for _ in range(rng.randint(0, 3)):
                    await asyncio.sleep(0)
                if rng.random() < 0.5:
                    await asyncio.sleep(rng.random() * 0.005)
                task.cancel()
                try:
                    version = await task
                except asyncio.CancelledError:
                    record.cancelled.add(n)
                    self.cancellations += 1
                    continue
                self.cancelled_but_returned += 1  # it finished before the cancel arrived
            else:
                version = await store.append(record.session_id, message)
            self.latencies.append(time.perf_counter() - started)  # the reporter swaps the list
            record.returned_n.append(n)
            record.returned_v.append(version)
            self.appends += 1
            if rng.random() < 0.01:
                await asyncio.sleep(rng.random() * 0.05)  # think time, now and then

    async def reader(self, store: sessiondb.Store) -> None:
        rng = random.Random(self.rng.random())
        while not self.stop:
            record = rng.choice(self.appenders)
            try:
                if rng.random() < 0.5:
                    session = await store.load(record.session_id)
                    numbers = [int(m.text) for m in session.messages]
                    if numbers != sorted(set(numbers)):
                        self.violations.append(f"reader: {record.session_id} messages out of order")
                else:
                    after = max(0, (await store.session_info(record.session_id)).version - 100)
                    versions = [e.version async for e in store.read(record.session_id, after=after)]
                    if versions != list(range(after + 1, after + len(versions) + 1)):
                        self.violations.append(f"reader: {record.session_id} versions not gapless")
            except sessiondb.StoreClosedError:
                return
            self.reads += 1
            await asyncio.sleep(0.005)

    async def subscriber(self, store: sessiondb.Store) -> None:
        subscribe_all = getattr(store, "subscribe_all", None)
        if subscribe_all is None:
            return
        last = 0
        with contextlib.suppress(sessiondb.StoreClosedError):
            async for event in subscribe_all(after=0):
                if event.position != last + 1:
                    self.violations.append(f"subscriber: position {event.position} after {last}")
                last = event.position
                self.subscribed += 1
                if self.stop:
                    return

    async def report(self, store: sessiondb.Store, started: float) -> None:
        minute = 0
        previous = 0
        print(
            f"{'t (s)':>6} {'appends/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'pending':>8} "
            f"{'cancelled':>9} {'reads':>8} {'subscribed':>10} {'RSS MB':>7} {'peak MB':>7}",
            flush=True,
        )
        while not self.stop:
            await asyncio.sleep(max(0.0, started + (minute + 1) * self.args.interval - time.monotonic()))
            minute += 1
            latencies, self.latencies = self.latencies, []
            latencies.sort()
            count = self.appends - previous
            previous = self.appends

            def pct(p: float, latencies: list[float] = latencies) -> float:
                return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1e3 if latencies else 0.0

            self.minutes.append((minute, count / self.args.interval, pct(0.5), pct(0.99), pct(1.0), rss_mb()))
            print(
                f"{minute * self.args.interval:>6.0f} {count / self.args.interval:>10.0f} "
                f"{pct(0.5):>8.1f} {pct(0.99):>8.1f} {pct(1.0):>8.1f} {store.statistics()['pending']:>8} "
                f"{self.cancellations:>9} {self.reads:>8} "
                f"{self.subscribed:>10} {rss_mb():>7.0f} {peak_rss_mb():>7.0f}",
                flush=True,
            )

    async def run(self, path: str) -> None:
        args = self.args
        self.minutes: list[tuple[int, float, float, float, float, float]] = []
        async with sessiondb.open_store(path) as store:
            ids = await asyncio.gather(*(store.create_session(model="soak") for _ in range(args.appenders)))
            self.appenders = [Appender(sid) for sid in ids]
            started = time.monotonic()
            workers = [asyncio.ensure_future(self.appender(store, record)) for record in self.appenders]
            helpers = [asyncio.ensure_future(self.reader(store)) for _ in range(args.readers)]
            helpers += [asyncio.ensure_future(self.subscriber(store)) for _ in range(args.subscribers)]
            reporter = asyncio.ensure_future(self.report(store, started))
            await asyncio.sleep(args.minutes * 60)
            self.stop = True
            await asyncio.gather(*workers)  # each finishes the append it is in
            reporter.cancel()
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(reporter, *helpers, return_exceptions=True)
            self.elapsed = time.monotonic() - started

    async def verify(self, path: str) -> int:
        """Reopen and check every session against what its appender saw; return the events checked."""
        checked = 0
        async with sessiondb.open_store(path) as store:
            for record in self.appenders:
                events = [e async for e in store.read(record.session_id)]
                versions = [e.version for e in events]
                if versions != list(range(1, len(events) + 1)):
                    self.violations.append(f"{record.session_id}: versions not gapless")
                    continue
                found = {int(e.event.text): e.version for e in events[1:]}  # type: ignore[union-attr]
                numbers = [int(e.event.text) for e in events[1:]]  # type: ignore[union-attr]
                if numbers != sorted(found) or len(found) != len(numbers):
                    self.violations.append(f"{record.session_id}: messages out of order or repeated")
                for n, version in zip(record.returned_n, record.returned_v, strict=True):
                    if found.get(n) != version:
                        self.violations.append(
                            f"{record.session_id}: append {n} returned version {version}, stored at {found.get(n)}"
                        )
                returned = set(record.returned_n)
                for n in found:
                    if n > record.attempted or (n not in returned and n not in record.cancelled):
                        self.violations.append(f"{record.session_id}: message {n} was never attempted or returned")
                self.landed_cancelled += sum(1 for n in found if n in record.cancelled)
                checked += len(events)
        return checked


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--appenders", type=int, default=10_000)
    parser.add_argument("--readers", type=int, default=8)
    parser.add_argument("--subscribers", type=int, default=2)
    parser.add_argument("--cancel-rate", type=float, default=0.01)
    parser.add_argument("--interval", type=float, default=60.0, help="seconds per report line")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dir", help="store directory (default: a temporary one, removed afterwards)")
    args = parser.parse_args()
    root = args.dir or tempfile.mkdtemp(prefix="sessiondb-soak-")
    path = os.path.join(root, "store")
    print(
        f"soak: {args.appenders} concurrent appenders, {args.readers} readers, {args.subscribers} subscribers, "
        f"{args.cancel_rate:.0%} of appends cancelled, {args.minutes} min, store {path}",
        flush=True,
    )
    soak = Soak(args)
    soak.landed_cancelled = 0
    await soak.run(path)
    checked = await soak.verify(path)
    minutes = soak.minutes
    print(
        f"\nappends returned {soak.appends} ({soak.appends / soak.elapsed:.0f}/s); cancelled {soak.cancellations} "
        f"(landed anyway, whole: {soak.landed_cancelled}; finished before the cancel: {soak.cancelled_but_returned}); "
        f"reads {soak.reads}; events delivered to subscribers {soak.subscribed}"
    )
    if minutes:
        print(
            f"p99 per interval (ms): {', '.join(f'{m[3]:.1f}' for m in minutes)}; "
            f"worst p99 {max(m[3] for m in minutes):.1f} ms; peak RSS {peak_rss_mb():.0f} MB"
        )
    print(f"events checked after reopen: {checked}; violations: {len(soak.violations)}")
    for violation in soak.violations[:30]:
        print("VIOLATION", violation)
    if not args.dir:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if soak.violations else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
