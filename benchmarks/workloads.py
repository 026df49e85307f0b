"""The workloads, run inside one child process against one system; each returns a dict of numbers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import time
from pathlib import Path
from typing import Any

from benchmarks.systems.base import NotSupported, System


def directory_bytes(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(os.path.join(root, name)).st_blocks * 512
    return total


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def latency_summary(latencies: list[float]) -> dict[str, float | None]:
    if not latencies:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    ordered = sorted(latencies)

    def at(fraction: float) -> float:
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000

    return {"p50_ms": at(0.50), "p99_ms": at(0.99), "max_ms": ordered[-1] * 1000}


class SetupTooSlow(Exception):
    pass


async def _gather_limited(count: int, make: Any, limit: int, budget: float) -> None:
    # An explicit deadline: peers that construct sessions synchronously block the loop,
    # so a timer (wait_for) would only fire long after the budget.
    semaphore = asyncio.Semaphore(limit)
    deadline = time.perf_counter() + budget

    async def one(i: int) -> None:
        async with semaphore:
            if time.perf_counter() > deadline:
                raise SetupTooSlow
            await make(i)

    tasks = [asyncio.create_task(one(i)) for i in range(count)]
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), budget + 5)
    except (SetupTooSlow, TimeoutError):
        for task in tasks:
            task.cancel()
        raise TimeoutError from None


async def concurrent(system: System, directory: Path, p: dict[str, Any]) -> dict[str, Any]:
    """``sessions`` agent loops, each awaiting every append; counted over a fixed window after a warm-up."""
    sessions: int = p["sessions"]
    length: int = p["conversation_length"]
    script_size: int = p["script_size"]
    await system.open(directory)
    handles: list[Any] = [None] * sessions

    async def make(i: int) -> None:
        handles[i] = await system.new_session(f"l{i}-c0")

    started = time.perf_counter()
    try:
        await _gather_limited(sessions, make, 256, p["setup_budget"])
    except TimeoutError:
        return {"skipped": f"creating {sessions:,} sessions took more than {p['setup_budget']:.0f} s"}
    setup_s = time.perf_counter() - started

    recording = False
    stopping = False
    latencies: list[float] = []
    acknowledged = 0
    errors: list[str] = []
    perf = time.perf_counter

    async def agent_loop(i: int) -> None:
        nonlocal acknowledged
        handle = handles[i]
        conversation = 0
        written = 0
        position = (i * 7919) % script_size
        while not stopping:
            if written == length:
                await system.end_session(handle)
                conversation += 1
                handle = await system.new_session(f"l{i}-c{conversation}")
                written = 0
            begin = perf()
            try:
                await system.append(handle, position)
            except Exception as error:  # a peer failing under load is a result, not a crash
                errors.append(f"{type(error).__name__}: {error}")
                await asyncio.sleep(0.01)
                continue
            end = perf()
            acknowledged += 1
            if recording:
                latencies.append(end - begin)
            written += 1
            position = (position + 1) % script_size

    tasks = [asyncio.create_task(agent_loop(i)) for i in range(sessions)]
    await asyncio.sleep(p["warmup"])
    recording = True
    window_start = perf()
    cpu_start = _cpu_seconds()
    await asyncio.sleep(p["duration"])
    recording = False
    window = perf() - window_start
    cpu = _cpu_seconds() - cpu_start
    measured = list(latencies)
    stopping = True
    drained = True
    done, pending = await asyncio.wait(tasks, timeout=p["drain_budget"])
    if pending:
        drained = False
        for task in pending:
            task.cancel()
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            errors.append(repr(task.exception()))
    disk = directory_bytes(directory)
    result: dict[str, Any] = {
        "sessions": sessions,
        "appends": len(measured),
        "window_s": window,
        "throughput": len(measured) / window,
        **latency_summary(measured),
        # Process CPU (all threads) per append in the window: robust to a busy machine,
        # unlike throughput, it says how much work each system does per durable append.
        "cpu_us_per_append": cpu / len(measured) * 1e6 if measured else None,
        "acknowledged_total": acknowledged,
        "bytes_per_event": disk / acknowledged if acknowledged else None,
        "setup_s": setup_s,
        # Slow systems may not get through one round of all sessions within the window.
        "time_capped": len(measured) < sessions,
        "drained": drained,
        "errors": len(errors),
        "first_error": errors[0][:300] if errors else None,
    }
    if drained:
        await asyncio.wait_for(system.close(), 60)
    return result


async def burst(system: System, directory: Path, p: dict[str, Any]) -> dict[str, Any]:
    """Many single-event appends into one session at once (not awaited one by one), capped by time."""
    reason = system.burst_supported()
    if reason is not None:
        return {"skipped": reason}
    count: int = p["events"]
    await system.open(directory)

    async def run(key: str, n: int, budget: float) -> tuple[float, list[float], bool]:
        handle = await system.new_session(key)
        latencies: list[float] = []

        async def one(i: int) -> None:
            begin = time.perf_counter()
            await system.append(handle, i % p["script_size"])
            latencies.append(time.perf_counter() - begin)

        begin = time.perf_counter()
        tasks = [asyncio.create_task(one(i)) for i in range(n)]
        _done, pending = await asyncio.wait(tasks, timeout=budget)
        elapsed = time.perf_counter() - begin
        for task in pending:
            task.cancel()
        if not pending:
            await system.end_session(handle)
        return elapsed, latencies, bool(pending)

    _, _, capped = await run("burst-warmup", max(10, count // 20), p["budget"] / 4)
    if capped:
        return {
            "skipped": f"the warm-up burst of {max(10, count // 20):,} events took more than {p['budget'] / 4:.0f} s"
        }
    elapsed, latencies, capped = await run("burst", count, p["budget"])
    result = {
        "events": len(latencies),
        "elapsed_s": elapsed,
        "throughput": len(latencies) / elapsed,
        "time_capped": capped,
        **latency_summary(latencies),
    }
    if not capped:
        await system.close()
    return result


async def prepare_load(system: System, directory: Path, p: dict[str, Any]) -> dict[str, Any]:
    await system.open(directory)
    handle = await system.new_session(p["key"])
    begin = time.perf_counter()
    await system.bulk_append(handle, [i % p["script_size"] for i in range(p["events"])])
    elapsed = time.perf_counter() - begin
    await system.end_session(handle)
    await system.close()
    return {"prepare_s": elapsed, "bytes": directory_bytes(directory)}


async def load(system: System, directory: Path, p: dict[str, Any]) -> dict[str, Any]:
    """Resume: open the store in a fresh process and read one session back."""
    begin = time.perf_counter()
    await system.open(directory)
    opened = time.perf_counter()
    count = await system.load(p["key"])
    loaded = time.perf_counter()
    if count < p["events"]:
        raise AssertionError(f"{system.name} loaded {count} of {p['events']} messages")
    await system.close()
    return {"events": p["events"], "open_s": opened - begin, "load_s": loaded - opened, "resume_s": loaded - begin}


async def prepare_list(system: System, directory: Path, p: dict[str, Any]) -> dict[str, Any]:
    await system.open(directory)
    begin = time.perf_counter()
    keys = [f"list-{i}" for i in range(p["sessions"])]
    try:
        await asyncio.wait_for(system.populate(keys, p["script_size"]), p["setup_budget"])
    except TimeoutError:
        return {"skipped": f"creating {p['sessions']:,} sessions took more than {p['setup_budget']:.0f} s"}
    elapsed = time.perf_counter() - begin
    await system.close()
    return {"prepare_s": elapsed}


async def list_sessions(system: System, directory: Path, p: dict[str, Any]) -> dict[str, Any]:
    begin = time.perf_counter()
    await system.open(directory)
    opened = time.perf_counter()
    try:
        count = await system.list_sessions()
    except NotSupported as reason:
        return {"skipped": str(reason)}
    listed = time.perf_counter()
    if count != p["sessions"]:
        raise AssertionError(f"{system.name} listed {count} of {p['sessions']} sessions")
    await system.close()
    return {"sessions": count, "open_s": opened - begin, "list_s": listed - opened, "total_s": listed - begin}


WORKLOADS = {
    "concurrent": concurrent,
    "burst": burst,
    "prepare-load": prepare_load,
    "load": load,
    "prepare-list": prepare_list,
    "list": list_sessions,
}
