"""Work in a worker thread that never outlives the task awaiting it: a cancelled caller waits for the end.

``anyio.to_thread.run_sync`` shields its wait from anyio's cancel scopes but not from
asyncio's own cancellation (``task.cancel()``: what a store's close sends its background
tasks, and ``asyncio.run`` every task left at its end): the await ends at once and the
thread runs on. Whatever that thread uses (a SQLite connection, a segment's descriptor,
a lock's turn) is then closed, or used by the next caller, under it; SQLite crashed the
process (SIGSEGV) when a store closed its search index while an abandoned thread was
still writing to it.

``run_to_completion`` runs the function in the event loop's default executor. A
cancellation that arrives before a thread took the work withdraws it (nothing ran, the
caller is cancelled at once); one that arrives while it runs waits for it to finish and
is then re-raised, unless the work failed: its exception is the outcome that matters.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import anyio

_T = TypeVar("_T")
_WAITING, _RUNNING, _WITHDRAWN = 0, 1, 2


class _Job(Generic[_T]):
    """One call handed to a thread, which may be withdrawn until a thread takes it."""

    __slots__ = ("args", "function", "lock", "state")

    def __init__(self, function: Callable[..., _T], args: tuple[Any, ...]) -> None:
        self.function = function
        self.args = args
        self.lock = threading.Lock()
        self.state = _WAITING

    def run(self) -> _T | None:
        with self.lock:
            if self.state == _WITHDRAWN:
                return None
            self.state = _RUNNING
        return self.function(*self.args)

    def withdraw(self) -> bool:
        """True if no thread took the call yet (then none ever will)."""
        with self.lock:
            if self.state == _WAITING:
                self.state = _WITHDRAWN
                return True
            return False


async def run_to_completion(function: Callable[..., _T], *args: Any) -> _T:
    """``function(*args)`` in a worker thread; if the caller is cancelled meanwhile, it waits for the end first."""
    job = _Job(function, args)
    done = asyncio.get_running_loop().run_in_executor(None, job.run)
    cancelled: asyncio.CancelledError | None = None
    # The anyio shield keeps cancel scopes from re-delivering their cancellation on every pass of
    # the loop while the thread runs (they deliver it at the caller's next await instead); asyncio's
    # own cancellation still arrives, once per task.cancel(), and is caught below.
    with anyio.CancelScope(shield=True):
        while True:
            try:
                result = await asyncio.shield(done)
                break
            except asyncio.CancelledError as exc:
                if cancelled is None and job.withdraw():
                    raise
                cancelled = cancelled or exc
    if cancelled is not None:
        raise cancelled
    return result  # type: ignore[return-value]  # None only for a withdrawn job, which returned above


__all__ = ["run_to_completion"]
