"""Calls from other threads and event loops, handed off to the event loop a store was opened on.

A store's writer task, futures and locks belong to one asyncio event loop: the
loop that ran ``start()`` (its *home* loop). A public coroutine of the store
called from any other loop (a worker thread's ``asyncio.run``, the Agents SDK's
``Runner.run_sync`` in a thread pool) runs on the home loop instead: the call
is queued there with ``loop.call_soon_threadsafe``, becomes a task, and the
caller awaits a ``concurrent.futures.Future`` wrapped for its own loop. No
thread blocks; a call made on the home loop costs one identity check.

What cannot work fails at once and never hangs:

- the home loop is closed or not running, so nothing would ever run the call
  (``StoreLoopError``);
- the caller runs on the home loop's own thread under another loop, so the home
  loop cannot run until the caller returns (``StoreLoopError``);
- the process was forked after the store was opened (``StoreForkedError``).

A home loop that runs but does not *take* a call within ``pickup_seconds`` (its
thread is blocked, for example waiting synchronously for the caller's thread)
has the call withdrawn: it never runs, and the caller gets ``StoreLoopError``
saying nothing was done. A call that was taken runs to its end like one made
on the home loop. Cancelling the caller cancels it there (an append then lands
whole or not at all, as always); if the home loop cancels it (shutting down),
the caller gets ``StoreLoopError`` saying it may have taken effect.

Why the coroutine is created on the home loop and not handed over made
(``asyncio.run_coroutine_threadsafe``): a withdrawn call must leave nothing
behind, not even a coroutine object that warns it was never awaited.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import os
import threading
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from ._errors import StoreForkedError, StoreLoopError, StoreNotStartedError

_running_loop = asyncio.get_running_loop  # the hot path's one lookup, bound once

# A running event loop runs a ready callback within milliseconds; one that has not
# taken a call for this long is blocked, and the call is withdrawn rather than waited for.
DEFAULT_PICKUP_SECONDS = 10.0

_P = ParamSpec("_P")
_T = TypeVar("_T")


class StoreLoop:
    """The home event loop of one store, and the hand-off of calls to it from anywhere else."""

    __slots__ = ("__weakref__", "forked", "loop", "pickup_seconds", "pid", "thread")

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = 0
        self.pid = 0
        self.forked = False
        self.pickup_seconds = DEFAULT_PICKUP_SECONDS

    def bind(self) -> None:
        """Make the running loop (and this thread and process) the store's home. Called by ``start()``."""
        self.check_not_forked()
        self.loop = asyncio.get_running_loop()
        self.thread = threading.get_ident()
        self.pid = os.getpid()
        _homes.add(self)

    def check_not_forked(self) -> None:
        if self.forked or (self.pid and self.pid != os.getpid()):
            raise StoreForkedError(
                f"this store was opened in process {self.pid}, and process {os.getpid()} was forked from it "
                "afterwards; a forked child must not use its parent's writer, files or connections. Open the "
                "store in the child instead (in the ASGI lifespan or a post-fork hook, not at import time)"
            )

    def is_current(self) -> bool:
        """Whether a call may run right here: on the home loop (or the store was never started)."""
        self.check_not_forked()
        loop = self.loop
        return loop is None or loop is asyncio.get_running_loop()

    async def run(self, start: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
        """Await ``start()`` here if this is the home loop, else hand it off with ``call``."""
        if self.is_current():
            return await start()
        return await self.call(start)

    async def call(self, start: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
        """Run ``start()`` on the home loop as a task and return (or raise) what it does."""
        loop = self._reachable_loop(
            "this call comes from another event loop on the thread of the store's own loop, which cannot run "
            "until this call returns; await the store's methods on its own loop instead"
        )
        done: concurrent.futures.Future[_T] = concurrent.futures.Future()
        taken = _hand_over(loop, start, done)
        waiter = asyncio.wrap_future(done)
        try:
            finished, _ = await asyncio.wait((waiter,), timeout=self.pickup_seconds)
            if not finished and done.cancel():
                raise self._not_taken()
            return await waiter
        except asyncio.CancelledError:
            if not done.cancel():  # already taken: cancel it where it runs
                _cancel_taken(loop, taken)
            if waiter.done() and not waiter.cancelled():
                waiter.exception()  # retrieved: the caller is gone, no "never retrieved" warning
            waiter.cancel()
            raise

    def call_blocking(self, start: Callable[[], Coroutine[Any, Any, _T]], on_home_thread: str) -> _T:
        """``call`` for synchronous code: block this thread until ``start()`` ran on the home loop.

        For sync APIs over a store (LangGraph's ``invoke``): on the home loop's own thread
        it raises ``StoreLoopError(on_home_thread)`` at once: waiting there would stop the loop.
        """
        loop = self._reachable_loop(on_home_thread)
        done: concurrent.futures.Future[_T] = concurrent.futures.Future()
        taken = _hand_over(loop, start, done)
        try:
            finished, _ = concurrent.futures.wait((done,), timeout=self.pickup_seconds)
            if not finished and done.cancel():
                raise self._not_taken()
            return done.result()
        except BaseException:  # KeyboardInterrupt in the waiting thread: stop the call where it runs
            if not done.done():
                _cancel_taken(loop, taken)
            raise

    def _reachable_loop(self, on_home_thread: str) -> asyncio.AbstractEventLoop:
        """The home loop, if a call from this thread can reach it; else ``StoreLoopError`` saying why."""
        self.check_not_forked()
        loop = self.loop
        if loop is None:
            raise StoreNotStartedError(
                "the store is not started: use `async with sessiondb.open_store(...) as store:`, or "
                "`await store.start()` on the loop that will serve it, before calling it from another thread"
            )
        if loop.is_closed():
            raise StoreLoopError(
                "the event loop this store was opened on is closed; a store lives on the loop that opened it: "
                "open the store again inside the loop that uses it"
            )
        if not loop.is_running():
            raise StoreLoopError(
                "the event loop this store was opened on is not running, so nothing can serve this call; keep "
                "that loop running (a server's loop, or a loop in a thread of its own) while other threads use "
                "the store"
            )
        if threading.get_ident() == self.thread:
            raise StoreLoopError(on_home_thread)
        return loop

    def _not_taken(self) -> StoreLoopError:
        return StoreLoopError(
            f"the store's event loop did not take this call within {self.pickup_seconds:g} s: its thread "
            "is blocked (waiting synchronously for this thread?). Nothing was done; never block the "
            "store's loop on work that uses the store"
        )


def _hand_over(
    loop: asyncio.AbstractEventLoop,
    start: Callable[[], Coroutine[Any, Any, _T]],
    done: concurrent.futures.Future[_T],
) -> list[asyncio.Task[_T]]:
    """Queue ``start()`` on ``loop``; it becomes a task there unless ``done`` is cancelled first."""
    taken: list[asyncio.Task[_T]] = []

    def take() -> None:  # on the home loop
        if not done.set_running_or_notify_cancel():
            return  # withdrawn before the loop got here: nothing runs
        try:
            task = loop.create_task(start())
        except BaseException as exc:  # the caller must hear of it, or it would wait forever
            done.set_exception(exc)
            raise
        taken.append(task)
        task.add_done_callback(functools.partial(_settle, done))

    try:
        loop.call_soon_threadsafe(take)
    except RuntimeError:  # closed between the check and here
        raise StoreLoopError("the event loop this store was opened on closed; open the store again") from None
    return taken


def _cancel_taken(loop: asyncio.AbstractEventLoop, taken: list[asyncio.Task[Any]]) -> None:
    def cancel() -> None:  # on the home loop, queued after take(): the task exists
        for task in taken:
            task.cancel()

    with contextlib.suppress(RuntimeError):  # the home loop closed: the task is gone with it
        loop.call_soon_threadsafe(cancel)


def _settle(done: concurrent.futures.Future[_T], task: asyncio.Task[_T]) -> None:
    """Pass a finished home-loop task's outcome to the caller's future."""
    if task.cancelled():
        done.set_exception(
            StoreLoopError(
                "the store's event loop cancelled this call (it is shutting down); it may or may not have "
                "taken effect: read the session to find out"
            )
        )
        return
    error = task.exception()
    if error is not None:
        done.set_exception(error)
    else:
        done.set_result(task.result())


class _HasStoreLoop(Protocol):
    @property
    def _home(self) -> StoreLoop: ...


_S = TypeVar("_S", bound=_HasStoreLoop)


def on_store_loop(
    method: Callable[Concatenate[_S, _P], Coroutine[Any, Any, _T]],
) -> Callable[Concatenate[_S, _P], Coroutine[Any, Any, _T]]:
    """Make a coroutine method run on its store's home loop, whichever loop awaits it.

    The loop is checked when the call is awaited, not when the coroutine is made: a
    coroutine made on the home loop may be awaited by another (``pool.submit(asyncio.run,
    store.append(...))``).
    """

    @functools.wraps(method)
    async def run_on_store_loop(self: _S, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        home = self._home
        if home.loop is _running_loop():  # the common case: one identity check
            return await method(self, *args, **kwargs)
        return await home.run(functools.partial(method, self, *args, **kwargs))

    return run_on_store_loop


def iterated_on_store_loop(
    method: Callable[Concatenate[_S, _P], AsyncIterator[_T]],
) -> Callable[Concatenate[_S, _P], AsyncIterator[_T]]:
    """Make an async-generator method's iteration (each step, and closing) run on its store's home loop."""

    @functools.wraps(method)
    def iterate_on_store_loop(self: _S, /, *args: _P.args, **kwargs: _P.kwargs) -> AsyncIterator[_T]:
        iterator = method(self, *args, **kwargs)  # runs nothing yet
        home = self._home
        try:
            if home.is_current():
                return iterator
        except RuntimeError:  # no running loop yet: decide at each step
            pass
        return _HandedOffIterator(iterator, home)

    return iterate_on_store_loop


class _HandedOffIterator(AsyncIterator[_T]):
    """An async iterator whose steps run on a store's home loop (see ``iterated_on_store_loop``)."""

    def __init__(self, iterator: AsyncIterator[_T], home: StoreLoop) -> None:
        self._iterator = iterator
        self._home = home

    async def __anext__(self) -> _T:
        if self._home.is_current():
            return await anext(self._iterator)
        ended, value = await self._home.call(functools.partial(_step, self._iterator))
        if ended:
            raise StopAsyncIteration
        return value  # type: ignore[return-value]

    async def aclose(self) -> None:
        close = getattr(self._iterator, "aclose", None)
        if close is None:
            return
        if self._home.is_current():
            await close()
        else:
            await self._home.call(functools.partial(_close, close))


async def _step(iterator: AsyncIterator[_T]) -> tuple[bool, _T | None]:
    # The end travels as a value: a StopAsyncIteration crossing a task and two futures reads badly.
    try:
        return False, await anext(iterator)
    except StopAsyncIteration:
        return True, None


async def _close(close: Callable[[], Awaitable[object]]) -> None:
    await close()  # an async generator's aclose() is an awaitable, not the coroutine a task needs


_homes: weakref.WeakSet[StoreLoop] = weakref.WeakSet()


def _mark_forked() -> None:
    """In a forked child: every store opened before the fork belongs to the parent."""
    for home in list(_homes):
        # The fast path's identity check fails in the child too: asyncio never reports a loop
        # copied from the parent as running (it records the pid of the process running it).
        home.forked = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_mark_forked)


__all__ = ["DEFAULT_PICKUP_SECONDS", "StoreLoop", "iterated_on_store_loop", "on_store_loop"]
