"""Closing a store while its search indexer's worker thread is inside a chunk: the close waits for it.

The fault: ``aclose()`` cancelled the indexer task, whose ``anyio.to_thread.run_sync`` wait
ended at once while the thread went on applying the chunk; the index then closed its
SQLite connection from another thread under it, and libsqlite3 crashed the process.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest

import sessiondb
from sessiondb import Message
from sessiondb._search import _sqlite

pytestmark = pytest.mark.anyio


async def test_close_waits_for_the_chunk_a_thread_is_applying(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    order: list[str] = []
    entered = threading.Event()
    release = threading.Event()
    release.set()
    real_apply = _sqlite._apply
    real_close = _sqlite.SqliteIndex.close_sync

    def apply(conn: Any, after: int, events: Sequence[Any]) -> int:
        entered.set()
        release.wait()
        order.append("apply")
        return real_apply(conn, after, events)

    def close_sync(self: _sqlite.SqliteIndex) -> None:
        order.append("close")
        real_close(self)

    monkeypatch.setattr(_sqlite, "_apply", apply)
    monkeypatch.setattr(_sqlite.SqliteIndex, "close_sync", close_sync)
    store = sessiondb.open_store(tmp_path / "store")
    await store.start()
    sid = await store.create_session()
    await store.search("hello")  # the background indexer follows the log from now on
    release.clear()
    entered.clear()
    order.clear()
    await store.append(sid, Message.user("hello world"))
    await anyio.to_thread.run_sync(entered.wait)  # the indexer's thread is inside the chunk now
    indexer = store._search._task
    assert indexer is not None
    closer = asyncio.create_task(store.aclose())
    for _ in range(50):  # passes of the loop: the close cancels the indexer and goes as far as it may
        await asyncio.sleep(0)
    assert not indexer.done(), "the indexer's task ended while its thread was still applying a chunk"
    assert not closer.done()
    release.set()
    await closer
    assert order == ["apply", "close"]
    assert store.closed


async def test_a_cancelled_wait_for_the_write_lock_never_leaves_it_taken(tmp_path: Path) -> None:
    store = sessiondb.open_store(tmp_path / "store")
    async with store:
        sid = await store.create_session()
        await store.append(sid, Message.user("a"))
        backend = store.backend
        assert isinstance(backend, sessiondb.LocalBackend)
        holder = os.open(tmp_path / "store" / "WRITE.lock", os.O_RDWR)
        try:
            fcntl.flock(holder, fcntl.LOCK_EX)  # "another process" holds the write lock
            sealing = asyncio.create_task(backend.seal_active_segment())
            for _ in range(20):
                await asyncio.sleep(0)
            assert not sealing.done()  # waiting for the lock in a worker thread
            sealing.cancel()
        finally:
            fcntl.flock(holder, fcntl.LOCK_UN)
            os.close(holder)
        with pytest.raises(asyncio.CancelledError):
            await sealing
        assert not backend.locks.write_held  # taken by the thread after the cancellation, then released
        assert await store.append(sid, Message.user("b")) == 3
    async with sessiondb.open_store(tmp_path / "store") as again:
        assert (await again.session_info(sid)).version == 3
