"""Store lifecycle: start, close (twice), use after close, pending appends at close, errors in the body, the lock."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import anyio
import pytest

import sessiondb
from sessiondb import Message, StoreClosedError, StoreLockedError, StoreNotStartedError
from sessiondb._backends.local import repair_store

pytestmark = pytest.mark.anyio


def _closed_calls(store: sessiondb.Store, sid: str) -> list[object]:
    async def read() -> None:
        [e async for e in store.read(sid)]

    return [
        store.create_session(),
        store.append(sid, Message.user("x")),
        store.record_prompt(sid, "p"),
        store.record_compaction(sid, summary="s", removed_message_count=1),
        store.load(sid),
        store.session_info(sid),
        store.list_sessions(),
        store.read_all(),
        store.fork(sid),
        store.delete_session(sid),
        read(),
    ]


@pytest.mark.parametrize("target", ["memory", "directory"])
async def test_close_twice_and_use_after_close(tmp_path: Path, target: str) -> None:
    store = sessiondb.open_store(":memory:" if target == "memory" else tmp_path / "s")
    async with store:
        sid = await store.create_session()
        await store.append(sid, Message.user("a"))
    assert store.closed
    await store.aclose()  # closing again is fine
    await store.aclose()
    for call in _closed_calls(store, sid):
        with pytest.raises(StoreClosedError, match="closed"):
            await call  # type: ignore[misc]


def _every_call(store: sessiondb.Store, sid: str) -> dict[str, Callable[[], Awaitable[object]]]:
    """Every public coroutine of the store (and the iteration of read and the subscriptions)."""

    async def iterate(iterator: AsyncIterator[object]) -> None:
        async for _ in iterator:
            break

    return {
        "create_session": lambda: store.create_session(),
        "append": lambda: store.append(sid, Message.user("x")),
        "record_prompt": lambda: store.record_prompt(sid, "p"),
        "record_compaction": lambda: store.record_compaction(sid, summary="s", removed_message_count=1),
        "fork": lambda: store.fork(sid),
        "delete_session": lambda: store.delete_session(sid),
        "set_title": lambda: store.set_title(sid, "t"),
        "add_tags": lambda: store.add_tags(sid, "t"),
        "remove_tags": lambda: store.remove_tags(sid, "t"),
        "set_pinned": lambda: store.set_pinned(sid),
        "session_info": lambda: store.session_info(sid),
        "list_sessions": lambda: store.list_sessions(),
        "page_sessions": lambda: store.page_sessions(),
        "search": lambda: store.search("x"),
        "read": lambda: iterate(store.read(sid)),
        "read_all": lambda: store.read_all(),
        "subscribe": lambda: iterate(store.subscribe(sid)),
        "subscribe_all": lambda: iterate(store.subscribe_all()),
        "load": lambda: store.load(sid),
        "forget_projection": lambda: store.forget_projection("p"),
        "compact": lambda: store.compact(),
        "compact_conversation": lambda: store.compact_conversation(sid),
        "compaction_due": lambda: store.compaction_due(sid),
    }


@pytest.mark.parametrize("target", ["memory", "directory"])
async def test_every_call_before_start_says_not_started(tmp_path: Path, target: str) -> None:
    store = sessiondb.open_store(":memory:" if target == "memory" else tmp_path / "s")
    for name, call in _every_call(store, "sid").items():
        with pytest.raises(StoreNotStartedError, match=r"not started: use `async with store:`.*await store.start\(\)"):
            await call()
        assert not store.closed, name
    with pytest.raises(StoreNotStartedError):
        store.recorded_projections()
    assert issubclass(StoreNotStartedError, StoreClosedError)  # handlers of either kind still catch it
    assert issubclass(StoreNotStartedError, sessiondb.StoreLoopError)
    await store.start()
    try:
        assert await store.create_session(session_id="ok") == "ok"
    finally:
        await store.aclose()


async def test_a_store_starts_once_and_not_after_close(tmp_path: Path) -> None:
    store = sessiondb.open_store(tmp_path / "s")
    async with store:
        with pytest.raises(sessiondb.SessionDBError, match="already started"):
            await store.start()
        assert await store.create_session(session_id="a") == "a"
    with pytest.raises(StoreClosedError, match="closed; open it again") as caught:
        await store.start()
    assert not isinstance(caught.value, StoreNotStartedError)
    for call in _every_call(store, "a").values():
        with pytest.raises(StoreClosedError, match="closed; open it again"):
            await call()
    report = repair_store(tmp_path / "s")  # nothing holds the directory: the second start opened nothing
    assert report is not None


async def test_appends_pending_at_close_are_committed(tmp_path: Path) -> None:
    store = sessiondb.open_store(tmp_path / "s")
    await store.start()
    sid = await store.create_session()
    tasks = [asyncio.ensure_future(store.append(sid, Message.user(str(i)))) for i in range(300)]
    await asyncio.sleep(0)  # every task has queued its append; the writer has not run yet
    assert store.statistics()["pending"] == 300
    closing = asyncio.ensure_future(store.aclose())
    await asyncio.sleep(0)
    with pytest.raises(StoreClosedError):
        await store.append(sid, Message.user("during close"))
    await closing
    assert [t.result() for t in tasks] == list(range(2, 302))
    async with sessiondb.open_store(tmp_path / "s") as reopened:
        assert [e.event.text async for e in reopened.read(sid, after=1)] == [str(i) for i in range(300)]  # type: ignore[union-attr]


async def test_errors_in_the_body_propagate_unwrapped(tmp_path: Path) -> None:
    with pytest.raises(ZeroDivisionError) as caught:
        async with sessiondb.open_store(tmp_path / "s") as store:
            sid = await store.create_session()
            pending = asyncio.ensure_future(store.append(sid, Message.user("in flight")))
            await asyncio.sleep(0)
            1 / 0  # noqa: B018
    assert type(caught.value) is ZeroDivisionError  # not an ExceptionGroup
    assert store.closed and pending.result() == 2
    with pytest.raises(sessiondb.SessionNotFoundError) as not_found:
        async with sessiondb.open_store(tmp_path / "s") as store:
            await store.load("nobody")
    assert type(not_found.value) is sessiondb.SessionNotFoundError
    # The store was closed on the way out: the lock is free and the append is there.
    async with sessiondb.open_store(tmp_path / "s") as store:
        assert (await store.load(sid)).messages == [Message.user("in flight")]


async def test_cancelled_body_closes_the_store(tmp_path: Path) -> None:
    with anyio.move_on_after(0.05) as scope:
        async with sessiondb.open_store(tmp_path / "s") as store:
            sid = await store.create_session()
            while True:
                await store.append(sid, Message.user("tick"))
    assert scope.cancelled_caught and store.closed
    async with sessiondb.open_store(tmp_path / "s") as store:
        assert (await store.session_info(sid)).version >= 1


async def test_second_instance_in_the_same_process_is_a_second_writer(tmp_path: Path) -> None:
    async with sessiondb.open_store(tmp_path / "s") as first:
        sid = await first.create_session()
        async with sessiondb.open_store(tmp_path / "s") as second:
            # Both write, each seeing the other's appends (docs/multiprocess.md).
            assert await second.append(sid, Message.user("from the second")) == 2
            assert await first.append(sid, Message.user("from the first")) == 3
            assert (await second.session_info(sid)).version == 3
            # What needs the directory alone is refused while any instance has it open.
            with pytest.raises(StoreLockedError, match="close every store open on it") as caught:
                repair_store(tmp_path / "s")
            assert str(tmp_path / "s") in str(caught.value)
        # A read-only instance may look, but refuses writes without breaking anything.
        async with sessiondb.open_store(tmp_path / "s", read_only=True) as reader:
            assert (await reader.load(sid)).version == 3
            with pytest.raises(sessiondb.InvalidInputError, match="read-only"):
                await reader.append(sid, Message.user("no"))
            assert not reader.broken
        assert await first.append(sid, Message.user("still writing")) == 4
    assert not repair_store(tmp_path / "s").changed  # released on close


HOLDER = textwrap.dedent(
    """
    import asyncio, sys
    import sessiondb

    async def main():
        async with sessiondb.open_store(sys.argv[1]) as store:
            await store.create_session(session_id="held")
            print("ready", flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

    asyncio.run(main())
    """
)

OPENER = textwrap.dedent(
    """
    import asyncio, sys
    import sessiondb

    async def main():
        async with sessiondb.open_store(sys.argv[1]) as store:
            version = await store.append("held", sessiondb.Message.user("from the opener"))
            print("appended", version)

    asyncio.run(main())
    """
)


def test_another_process_opens_and_appends_beside_the_holder(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as holder:
        assert holder.stdin is not None and holder.stdout is not None
        try:
            assert holder.stdout.readline().strip() == "ready"
            result = subprocess.run(
                [sys.executable, "-c", OPENER, path], capture_output=True, text=True, timeout=60, check=True
            )
            assert result.stdout.strip() == "appended 2"
            with pytest.raises(StoreLockedError):
                repair_store(path)  # the holder still has it open
        finally:
            holder.stdin.close()
            assert holder.wait(timeout=30) == 0

    async def check() -> None:
        async with sessiondb.open_store(path) as store:
            assert (await store.session_info("held")).version == 2

    anyio.run(check)


def test_a_killed_owner_leaves_no_lock_behind(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as holder:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        holder.kill()
        holder.wait(timeout=30)
    # The kernel released its shared lock too: a repair, which needs the directory alone, may run.
    assert not repair_store(path).changed

    async def reopen() -> None:
        async with sessiondb.open_store(path) as store:
            assert (await store.session_info("held")).version == 1

    anyio.run(reopen)


async def test_a_second_aclose_returns_only_once_the_store_is_closed(tmp_path: Path) -> None:
    store = sessiondb.open_store(tmp_path / "s")
    await store.start()
    sid = await store.create_session()
    tasks = [asyncio.ensure_future(store.append(sid, Message.user(str(i)))) for i in range(100)]
    await asyncio.sleep(0)
    first = asyncio.ensure_future(store.aclose())
    await asyncio.sleep(0)  # the first close is under way, flushing the queued appends
    await store.aclose()
    assert first.done() and all(t.done() for t in tasks)
    async with sessiondb.open_store(tmp_path / "s") as again:  # the lock was released
        assert (await again.session_info(sid)).version == 101


async def test_appenders_blocked_at_close_get_store_closed_error(tmp_path: Path) -> None:
    store = sessiondb.open_store(tmp_path / "s", max_pending=4)
    await store.start()
    sid = await store.create_session()
    tasks = [asyncio.ensure_future(store.append(sid, Message.user(str(i)))) for i in range(50)]
    await asyncio.sleep(0)  # four are queued, the rest wait for room
    with anyio.fail_after(30):
        await store.aclose()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    versions = [r for r in results if isinstance(r, int)]
    refused = [r for r in results if isinstance(r, StoreClosedError)]
    assert len(versions) + len(refused) == 50 and len(versions) >= 4 and refused
    async with sessiondb.open_store(tmp_path / "s") as again:
        stored = [e.version async for e in again.read(sid, after=1)]
    assert stored == sorted(versions)  # acknowledged ones are there; refused ones are not


def _descriptors_into(directory: Path) -> list[str]:
    found = []
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{name}")
            if target.startswith(str(directory)):
                found.append(target)
    return found


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc")
def test_aclose_after_the_stores_loop_closed_releases_everything(tmp_path: Path) -> None:
    """``store = asyncio.run(opener())`` then ``asyncio.run(store.aclose())``: closed, nothing held, data kept."""
    path = tmp_path / "store"

    async def opener() -> sessiondb.Store:
        store = sessiondb.open_store(path)
        await store.start()
        await store.create_session(session_id="s")
        await store.append("s", Message.user("durable"))
        await store.search("durable")  # the search index (its connection and lock) is open too
        return store

    store = asyncio.run(opener())
    assert _descriptors_into(path)
    asyncio.run(store.aclose())
    assert store.closed
    assert _descriptors_into(path) == []
    asyncio.run(store.aclose())  # idempotent
    result = subprocess.run(
        [sys.executable, "-m", "sessiondb", "repair", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr

    async def reopen() -> int:
        async with sessiondb.open_store(path) as again:
            return (await again.session_info("s")).version

    assert asyncio.run(reopen()) == 2
