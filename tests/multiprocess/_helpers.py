"""Talking to ``_child.py`` processes: wait for a line with a bound, collect the result, fail fast on an early exit."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from typing import Any

import sessiondb


async def wait_line(
    process: subprocess.Popen[str], prefix: str, timeout: float = 60.0, skipped: list[str] | None = None
) -> str:
    """The next stdout line starting with ``prefix``; fails at once (with stderr) if the child exits first.

    Lines before it are appended to ``skipped`` when given.
    """
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    while True:
        try:
            # On a timeout the reading thread stays blocked until the fixture kills the child.
            line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), deadline - time.monotonic())
        except TimeoutError:
            raise AssertionError(f"child {process.args[2:4]} printed no {prefix!r} within {timeout} s") from None
        if not line:
            process.wait(timeout=30)
            assert process.stderr is not None
            errors = process.stderr.read()[-3000:]
            raise AssertionError(f"child {process.args[2:4]} exited ({process.returncode}) before {prefix!r}: {errors}")
        if line.startswith(prefix):
            return line[len(prefix) :].strip()
        if skipped is not None:
            skipped.append(line)


async def result_of(
    process: subprocess.Popen[str], timeout: float = 120.0, skipped: list[str] | None = None
) -> dict[str, Any]:
    """The child's ``RESULT`` (it then exits); the lines before it go to ``skipped`` when given."""
    result: dict[str, Any] = json.loads(await wait_line(process, "RESULT ", timeout, skipped))
    await asyncio.to_thread(process.wait, 30)
    return result


async def create_sessions(target: str, session_ids: list[str]) -> None:
    async with sessiondb.open_store(target) as store:
        for session_id in session_ids:
            await store.create_session(session_id=session_id)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] if ordered else float("nan")
