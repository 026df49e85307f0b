"""The group-commit writer: one task that turns every pending append into one backend commit.

Appenders put an ``AppendRequest`` in the pending list and await its future.
The writer takes everything pending as one batch, hands it to the backend
(one write and one fdatasync for the local backend), then resolves each
future. While one batch is being synced the next one fills up.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from ._backends._base import AppendRequest, Backend
from ._errors import StoreBrokenError, StoreClosedError, refused_because_broken

BatchListener = Callable[[Sequence[AppendRequest]], None]


class Writer:
    def __init__(self, backend: Backend, *, max_pending: int, max_batch: int, on_batch: BatchListener) -> None:
        self._backend = backend
        self._max_pending = max_pending
        self._max_batch = max_batch
        self._on_batch = on_batch
        self._pending: list[AppendRequest] = []
        self._futures: list[asyncio.Future[AppendRequest]] = []
        # The home loop's create_future, bound by start(): asyncio.get_running_loop() costs a
        # getpid system call per append on Python 3.11.
        self._new_future: Callable[[], asyncio.Future[Any]] = _future_on_running_loop
        # What the idle writer awaits: a bare future, cheaper than an asyncio.Event per idle spell.
        self._wakeup: asyncio.Future[None] | None = None
        # Appenders blocked by backpressure, in arrival order.
        self._space_waiters: deque[asyncio.Future[None]] = deque()
        self._closing = False
        self.broken: BaseException | None = None
        self.batches = 0
        self.largest_batch = 0

    def start(self) -> asyncio.Task[None]:
        """Start the writer task on the running loop, the one every ``submit`` then comes from."""
        loop = asyncio.get_running_loop()
        self._new_future = loop.create_future
        return loop.create_task(self.run(), name="sessiondb-writer")

    def offer(self, request: AppendRequest) -> asyncio.Future[AppendRequest] | None:
        """Queue ``request`` and return the future its outcome resolves; None while the pending list is full.

        On None, ``wait_for_space()`` and offer again (no await in between). Raises
        ``StoreBrokenError`` or ``StoreClosedError`` when no append is accepted.
        """
        if self.broken is not None:
            raise refused_because_broken(self.broken) from self.broken
        if self._closing:
            raise StoreClosedError("the store is closing; no more appends are accepted")
        if len(self._pending) >= self._max_pending:
            return None
        future = self._new_future()
        self._pending.append(request)
        self._futures.append(future)
        wakeup = self._wakeup
        if wakeup is not None:
            self._wakeup = None
            if not wakeup.done():  # done: cancelled with the writer task
                wakeup.set_result(None)
        return future

    async def submit(self, request: AppendRequest) -> asyncio.Future[AppendRequest]:
        """Queue ``request`` once the pending list has room (backpressure); return its outcome's future."""
        while True:
            future = self.offer(request)
            if future is not None:
                return future
            await self.wait_for_space()

    async def wait_for_space(self) -> None:
        """Backpressure: wait, in arrival order, while the pending list is full.

        Only as many waiters are woken as there is room for: waking every one of them
        after each batch made ten thousand blocked appenders cost quadratic time.
        """
        waiters = self._space_waiters
        first = True
        while len(self._pending) >= self._max_pending and self.broken is None and not self._closing:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            if first:
                waiters.append(waiter)
            else:  # woken, but the room went to someone else: keep this waiter's place
                waiters.appendleft(waiter)
            first = False
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake_waiters()  # woken but leaving: pass the room on
                raise

    def _wake_waiters(self, everyone: bool = False) -> None:
        room = len(self._space_waiters) if everyone else self._max_pending - len(self._pending)
        waiters = self._space_waiters
        while room > 0 and waiters:
            waiter = waiters.popleft()
            if not waiter.done():  # a cancelled waiter stays queued until it is reached here
                waiter.set_result(None)
                room -= 1

    async def run(self) -> None:
        backend = self._backend
        while True:
            if not self._pending:
                if self._closing:
                    return
                wakeup = self._wakeup = self._new_future()
                await wakeup
                continue
            if len(self._pending) <= self._max_batch:
                batch, futures = self._pending, self._futures
                self._pending, self._futures = [], []
            else:
                # A bounded batch lets the appenders of one batch run (and queue their
                # next append) while the next batch is being synced: CPU and disk overlap.
                cut = self._max_batch
                batch, futures = self._pending[:cut], self._futures[:cut]
                del self._pending[:cut], self._futures[:cut]
            if self._space_waiters:
                self._wake_waiters()
            try:
                await backend.commit(batch)
            except BaseException as exc:  # the batch may not be durable: the store is broken
                self._fail(exc, batch, futures)
                if not isinstance(exc, Exception):
                    raise
                return
            self.batches += 1
            if len(batch) > self.largest_batch:
                self.largest_batch = len(batch)
            for request, future in zip(batch, futures, strict=True):
                if future.done():  # the caller was cancelled; its append landed all the same
                    continue
                if request.error is None:
                    future.set_result(request)
                else:
                    future.set_exception(request.error)
            self._on_batch(batch)

    def _fail(
        self, exc: BaseException, batch: list[AppendRequest], futures: list[asyncio.Future[AppendRequest]]
    ) -> None:
        error = (
            exc
            if isinstance(exc, StoreBrokenError)
            else StoreBrokenError(
                f"the store's writer failed ({exc!r}); reopen the store to recover what was acknowledged"
            )
        )
        self.broken = error
        for future in [*futures, *self._futures]:
            if not future.done():
                future.set_exception(error)
                future.exception()  # the caller may have gone: do not warn "never retrieved"
        self._pending, self._futures = [], []
        self._wake_waiters(everyone=True)

    def close(self) -> None:
        """Stop accepting appends; ``run`` returns once everything pending is committed."""
        self._closing = True
        self._wake_waiters(everyone=True)
        wakeup = self._wakeup
        if wakeup is not None:
            self._wakeup = None
            if not wakeup.done():
                wakeup.set_result(None)

    @property
    def pending(self) -> int:
        return len(self._pending)


def _future_on_running_loop() -> asyncio.Future[Any]:
    return asyncio.get_running_loop().create_future()
