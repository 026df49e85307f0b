"""The local backend's write thread: outcomes come back, and a queued frame always reaches the index."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

import sessiondb
from sessiondb import Message
from sessiondb._backends._base import AppendRequest
from sessiondb._backends.local._write_thread import WriteThread

pytestmark = pytest.mark.anyio


async def test_a_job_hands_back_its_result_or_its_exception() -> None:
    thread = WriteThread("test-write")
    loop = asyncio.get_running_loop()
    try:
        ran_on: list[str] = []

        def work(value: int) -> int:
            ran_on.append(threading.current_thread().name)
            return value * 2

        def fail() -> int:
            raise OSError(5, "Input/output error")

        assert await thread.submit(loop, work, 21).future == 42
        with pytest.raises(OSError, match="Input/output error"):
            await thread.submit(loop, fail).future
        assert ran_on == ["test-write"]
    finally:
        thread.stop()


async def test_jobs_run_in_the_order_queued() -> None:
    thread = WriteThread("test-write")
    loop = asyncio.get_running_loop()
    order: list[int] = []
    try:
        jobs = [thread.submit(loop, order.append, i) for i in range(200)]
        await asyncio.gather(*(job.future for job in jobs))
        assert order == list(range(200))
    finally:
        thread.stop()


async def test_a_cancelled_wait_still_gets_the_outcome() -> None:
    thread = WriteThread("test-write")
    loop = asyncio.get_running_loop()
    release = threading.Event()
    try:

        def slow() -> str:
            release.wait(10)
            return "written"

        job = thread.submit(loop, slow)
        waiter = asyncio.ensure_future(job.future)
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert job.future.cancelled() and not job.done
        again = job.wait_again()  # the job runs regardless of the cancelled wait
        release.set()
        assert await again == "written"
        assert job.done and job.wait_again().result() == "written"  # after delivery: at once
    finally:
        release.set()
        thread.stop()


async def test_a_commit_cancelled_while_its_frame_is_written_still_indexes_it(tmp_path: Path) -> None:
    async with sessiondb.open_store(tmp_path / "store") as store:
        sid = await store.create_session(session_id="a")
        request = AppendRequest(sid, (Message.user("in flight"),), timestamp_ms=1)
        commit = asyncio.ensure_future(store.backend.commit([request]))
        await asyncio.sleep(0)  # the commit planned its frame and awaits the write thread
        commit.cancel()
        with pytest.raises(asyncio.CancelledError):
            await commit
        # The frame was written whole and the index learned it before the cancellation went on:
        # nothing is indexed twice, and the next append gets the next version.
        assert request.error is None and request.version == 2
        assert await store.append(sid, Message.user("next")) == 3
        assert [m.text for m in (await store.load(sid)).messages] == ["in flight", "next"]
    async with sessiondb.open_store(tmp_path / "store") as store:
        assert [m.text for m in (await store.load(sid)).messages] == ["in flight", "next"]


async def test_stop_waits_for_the_running_job() -> None:
    """The backend closes the descriptors a job writes to right after stop(): the job must be over."""
    thread = WriteThread("test-write")
    loop = asyncio.get_running_loop()
    started = threading.Event()
    finished: list[bool] = []

    def job() -> None:
        started.set()
        threading.Event().wait(0.2)  # a write and fdatasync in progress
        finished.append(True)

    thread.submit(loop, job)
    assert started.wait(10)
    thread.stop()
    assert finished == [True]
    thread.stop()  # twice is fine
