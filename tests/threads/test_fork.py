"""A process forked after a store was opened (gunicorn ``--preload``, multiprocessing's fork start method) must
not use its parent's writer: every call in the child raises ``StoreForkedError`` at once, ``aclose()`` there only
marks the copy closed (dropping its descriptors without unlocking: flock locks are shared with the parent), and the
parent's store goes on untouched, its write lock held and its appends whole. A store the parent created but never
started is the child's to open."""

from __future__ import annotations

import asyncio
import fcntl
import multiprocessing
import os
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pytest

import sessiondb
from sessiondb import CompactionSettings, Message
from sessiondb._backends.local import verify_store

pytestmark = [
    pytest.mark.anyio,
    # Python 3.12+ warns about fork() in a process with threads (the store's worker threads); that is the case tested.
    pytest.mark.filterwarnings("ignore:.*fork\\(\\) may lead to deadlocks:DeprecationWarning"),
]
FORK = multiprocessing.get_context("fork")
WAIT_SECONDS = 60.0
QUIET = CompactionSettings(background=False)  # no pass of its own takes the write lock while a test holds it


async def run_child(target: Callable[..., None], *args: object) -> Any:
    """Fork a child running ``target(*args, report)``; what it reported, once it exited with status 0."""
    receive, send = FORK.Pipe(duplex=False)
    child = FORK.Process(target=target, args=(*args, send))
    child.start()
    send.close()
    try:
        outcome = await asyncio.wait_for(asyncio.to_thread(receive.recv), WAIT_SECONDS)
        await asyncio.wait_for(asyncio.to_thread(child.join), WAIT_SECONDS)
    finally:
        if child.is_alive():
            child.kill()
            child.join()
    assert child.exitcode == 0
    return outcome


def use_the_parents_store(store: sessiondb.Store, session_id: str, report: Connection) -> None:
    """In the forked child: every kind of call, each expected to fail with StoreForkedError."""
    outcome: dict[str, Any] = {}

    async def each_call() -> None:
        calls = {
            "append": lambda: store.append(session_id, Message.user("from the child")),
            "create_session": lambda: store.create_session(),
            "load": lambda: store.load(session_id),
            "list_sessions": lambda: store.list_sessions(),
        }
        for name, call in calls.items():
            try:
                await call()
                outcome[name] = "succeeded"
            except sessiondb.StoreForkedError as exc:
                outcome[name] = str(exc)
        try:
            outcome["read"] = [event.version async for event in store.read(session_id)]
        except sessiondb.StoreForkedError as exc:
            outcome["read"] = str(exc)
        await store.aclose()  # allowed: it closes only the child's copy
        outcome["closed"] = store.closed

    asyncio.run(each_call())
    report.send(outcome)


async def test_a_forked_child_gets_a_clear_error_and_the_parent_goes_on(store_target: str) -> None:
    async with sessiondb.open_store(store_target) as store:
        session_id = await store.create_session()
        await store.append(session_id, Message.user("before the fork"))
        # Forked while the store's loop runs, with a session's projection cached and the writer idle.
        outcome = await run_child(use_the_parents_store, store, session_id)
        for name in ("append", "create_session", "load", "list_sessions", "read"):
            assert "was forked from it" in outcome[name], (name, outcome[name])
            assert "Open the store in the child" in outcome[name]
        assert outcome["closed"] is True
        # The parent's writer, files and connections were not disturbed.
        assert await store.append(session_id, Message.user("after the fork")) == 3
        assert [m.text for m in (await store.load(session_id)).messages] == ["before the fork", "after the fork"]
    async with sessiondb.open_store(store_target) as reopened:
        assert (await reopened.load(session_id)).version == 3


def start_in_the_child(store: sessiondb.Store, report: Connection) -> None:
    async def use() -> tuple[str, int]:
        async with store:
            session_id = await store.create_session()
            return session_id, await store.append(session_id, Message.user("written by the child"))

    report.send(asyncio.run(use()))


async def test_a_store_created_before_the_fork_and_started_in_the_child_works(store_target: str) -> None:
    # gunicorn --preload: the app module runs open_store() in the parent; each worker starts it in its lifespan.
    store = sessiondb.open_store(store_target)
    session_id, version = await run_child(start_in_the_child, store)
    assert version == 2
    async with store:  # the parent's own copy was never started: it opens normally
        assert [m.text for m in (await store.load(session_id)).messages] == ["written by the child"]


def touch_the_inherited_store(store: sessiondb.Store, session_id: str, report: Connection) -> None:
    """In the forked child: an append and a load (both refused), then close the copy, then exit."""

    async def touch() -> tuple[list[str], bool]:
        outcomes = []
        for call in (lambda: store.append(session_id, Message.user("from the child")), lambda: store.load(session_id)):
            try:
                await call()
                outcomes.append("succeeded")
            except sessiondb.StoreForkedError:
                outcomes.append("forked")
        await store.aclose()
        return outcomes, store.closed

    report.send(asyncio.run(touch()))


def lock_is_free(path: Path, *, exclusive: bool = True) -> bool:
    """Whether a new open file description (like another process's) gets ``path``'s flock at once."""
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # releases the probe's lock, if it got one
    return True


async def test_a_child_closing_its_copy_does_not_release_the_parents_locks(tmp_path: Path) -> None:
    path = tmp_path / "store"
    async with sessiondb.open_store(path, compaction=QUIET) as store:
        session_id = await store.create_session()
        locks = store.backend.locks  # type: ignore[attr-defined]
        # Held as a writer holds it in the middle of a batch; the child inherits the locked open file description.
        assert locks.try_write()
        try:
            assert await run_child(touch_the_inherited_store, store, session_id) == (["forked", "forked"], True)
            # An unlock (or close-then-reopen) in the child would release these for every holder of the description.
            assert not lock_is_free(path / "WRITE.lock")
            assert not lock_is_free(path / "LOCK")  # held shared by the parent: repair must still be refused
        finally:
            locks.release_write()
        assert await store.append(session_id, Message.user("after the child")) == 2
    assert lock_is_free(path / "LOCK") and lock_is_free(path / "WRITE.lock")  # the parent's close released them


async def test_children_forked_while_the_parent_appends_leave_its_log_whole(tmp_path: Path) -> None:
    """Children fork while appends from several tasks are in flight (the writer's thread holding WRITE.lock mid-batch
    at some of the forks), touch their copy and exit. A second writer on the directory takes WRITE.lock whenever the
    parent's is free: had a child released the parent's lock mid-batch, their frames would interleave."""
    path = tmp_path / "store"
    ours = [f"parent-{k}" for k in range(4)]
    theirs = [f"other-{k}" for k in range(2)]
    acknowledged: dict[str, list[int]] = {name: [] for name in ours + theirs}
    async with (
        sessiondb.open_store(path, compaction=QUIET) as store,
        sessiondb.open_store(path, compaction=QUIET) as other,  # its own descriptors: a writer like another process
    ):
        for name in ours:
            await store.create_session(session_id=name)
        for name in theirs:
            await other.create_session(session_id=name)
        stop = asyncio.Event()
        progressed = asyncio.Event()

        async def append_until_stopped(writer: sessiondb.Store, name: str) -> None:
            while not stop.is_set():
                acknowledged[name].append(await writer.append(name, Message.user(f"{name} {len(acknowledged[name])}")))
                progressed.set()

        appenders = [asyncio.create_task(append_until_stopped(store, name)) for name in ours]
        appenders += [asyncio.create_task(append_until_stopped(other, name)) for name in theirs]
        try:
            for _ in range(6):
                progressed.clear()
                await asyncio.wait_for(progressed.wait(), WAIT_SECONDS)  # appends are flowing at this fork
                assert await run_child(touch_the_inherited_store, store, ours[0]) == (["forked", "forked"], True)
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*appenders), WAIT_SECONDS)
    report = verify_store(path)
    assert report.ok, report
    async with sessiondb.open_store(path, compaction=QUIET) as reopened:
        positions = [event.position for event in await reopened.read_all(limit=1_000_000)]
        assert positions == list(range(1, len(positions) + 1))
        for name, versions in acknowledged.items():
            assert versions == list(range(2, len(versions) + 2)), name
            assert [event.version async for event in reopened.read(name)] == list(range(1, len(versions) + 2))
