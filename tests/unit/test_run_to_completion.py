"""``run_to_completion``: a cancelled caller never leaves its worker thread running behind it."""

from __future__ import annotations

import asyncio
import threading

import anyio
import pytest

from sessiondb._threads import run_to_completion

pytestmark = pytest.mark.anyio


async def test_a_cancelled_caller_returns_only_after_its_thread_finished() -> None:
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def work() -> int:
        started.set()
        release.wait()
        finished.set()
        return 1

    task = asyncio.create_task(run_to_completion(work))
    await anyio.to_thread.run_sync(started.wait)
    task.cancel()
    for _ in range(20):
        await asyncio.sleep(0)
    assert not task.done()  # still waiting for the thread
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert finished.is_set()


async def test_an_anyio_scope_cancelled_meanwhile_also_waits() -> None:
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def work() -> None:
        started.set()
        release.wait()
        finished.set()

    async def caller(scope: anyio.CancelScope) -> None:
        with scope:
            await run_to_completion(work)

    scope = anyio.CancelScope()
    task = asyncio.create_task(caller(scope))
    await anyio.to_thread.run_sync(started.wait)
    scope.cancel()
    for _ in range(20):
        await asyncio.sleep(0)
    assert not task.done()
    release.set()
    await task  # the work finished; the scope's cancellation lands at the caller's next await, if any
    assert finished.is_set()


async def test_the_work_failing_wins_over_the_cancellation() -> None:
    started, release = threading.Event(), threading.Event()

    def work() -> None:
        started.set()
        release.wait()
        raise OSError("disk")

    task = asyncio.create_task(run_to_completion(work))
    await anyio.to_thread.run_sync(started.wait)
    task.cancel()
    await asyncio.sleep(0)
    release.set()
    with pytest.raises(OSError, match="disk"):
        await task


async def test_a_result_and_an_error_pass_through() -> None:
    assert await run_to_completion(lambda a, b: a + b, 2, 3) == 5
    with pytest.raises(ZeroDivisionError):
        await run_to_completion(lambda: 1 // 0)
