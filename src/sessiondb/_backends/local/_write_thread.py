"""``WriteThread``: the one thread that writes and syncs a local backend's frames.

One thread hop per batch is the group commit's price; this keeps it small. A
``ThreadPoolExecutor`` plus ``asyncio.wrap_future`` (what ``run_in_executor``
does) creates a concurrent future, a work item, an asyncio future and the
callbacks that chain them, and takes half a dozen locks, per hop: at one
session, where every append is its own batch, that was a fifth of an append's
latency outside the fdatasync. Here a job is put on a ``SimpleQueue``; the
thread runs it, keeps the outcome on the job and hands it back with one
``call_soon_threadsafe``.

A job, once queued, always runs: a caller cancelled while awaiting it calls
``WriteJob.wait_again`` and awaits the outcome anyway, because a frame that may
be on disk must reach the index (``LocalBackend._commit_locked``).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class WriteJob(Generic[T]):
    """One call made on the write thread; await ``future`` (on the loop that queued it) for its outcome."""

    __slots__ = ("_args", "_function", "_loop", "done", "error", "future", "result")

    def __init__(self, loop: asyncio.AbstractEventLoop, function: Callable[..., T], args: tuple[Any, ...]) -> None:
        self._loop = loop
        self._function = function
        self._args = args
        self.future: asyncio.Future[T] = loop.create_future()
        self.done = False  # the outcome reached the loop (set there, so read there without a lock)
        self.result: T | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        """On the write thread: call the function, then hand the outcome to the loop."""
        try:
            self.result = self._function(*self._args)
        except BaseException as exc:  # handed to the awaiting task, which decides
            self.error = exc
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody awaits the outcome any more
            self._loop.call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        self.done = True
        future = self.future
        if future.done():  # cancelled: wait_again() gives a new one, or nobody waits
            return
        if self.error is not None:
            future.set_exception(self.error)
        else:
            future.set_result(self.result)  # type: ignore[arg-type]

    def wait_again(self) -> asyncio.Future[T]:
        """After the awaiting task was cancelled: a fresh future for the same outcome (on the loop)."""
        future: asyncio.Future[T] = self._loop.create_future()
        if self.done:
            if self.error is not None:
                future.set_exception(self.error)
            else:
                future.set_result(self.result)  # type: ignore[arg-type]
        self.future = future
        return future


class WriteThread:
    """A thread started on first use that runs ``WriteJob``s one at a time, in the order queued."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._jobs: queue.SimpleQueue[WriteJob[Any] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def submit(self, loop: asyncio.AbstractEventLoop, function: Callable[..., T], *args: Any) -> WriteJob[T]:
        """Queue ``function(*args)``; it runs even if nobody awaits the job's future."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name=self._name, daemon=True)
            self._thread.start()
        job = WriteJob(loop, function, args)
        self._jobs.put(job)
        return job

    def _serve(self) -> None:
        jobs = self._jobs
        while True:
            job = jobs.get()
            if job is None:
                return
            job.run()

    def stop(self) -> None:
        """End the thread once the queued jobs have run, and wait for it.

        The caller closes the descriptors the jobs write to next: a job still running
        could otherwise write into a closed descriptor, or into a file that reused its
        number. After an orderly close the thread is idle and this returns at once.
        """
        thread = self._thread
        if thread is not None:
            self._thread = None
            self._jobs.put(None)
            if thread is not threading.current_thread():
                thread.join()

    def abandon(self) -> None:
        """In a child made by ``fork()``: the thread is the parent's; the child has none to stop."""
        self._thread = None
        self._jobs = queue.SimpleQueue()
