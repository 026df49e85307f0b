"""A process forked after a store was opened (gunicorn ``--preload``, multiprocessing's fork start method) must
not use its parent's writer: every call in the child raises ``StoreForkedError`` at once, ``aclose()`` there only
marks the copy closed, and the parent's store goes on untouched. A store the parent created but never started is
the child's to open."""

from __future__ import annotations

import asyncio
import multiprocessing
from multiprocessing.connection import Connection
from typing import Any

import pytest

import sessiondb
from sessiondb import Message

pytestmark = [
    pytest.mark.anyio,
    # Python 3.12+ warns about fork() in a process with threads (the store's worker threads); that is the case tested.
    pytest.mark.filterwarnings("ignore:.*fork\\(\\) may lead to deadlocks:DeprecationWarning"),
]
FORK = multiprocessing.get_context("fork")
WAIT_SECONDS = 60.0


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
        receive, send = FORK.Pipe(duplex=False)
        # Forked while the store's loop runs, with a session's projection cached and the writer idle.
        child = FORK.Process(target=use_the_parents_store, args=(store, session_id, send))
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
    receive, send = FORK.Pipe(duplex=False)
    child = FORK.Process(target=start_in_the_child, args=(store, send))
    child.start()
    send.close()
    try:
        session_id, version = await asyncio.wait_for(asyncio.to_thread(receive.recv), WAIT_SECONDS)
        await asyncio.wait_for(asyncio.to_thread(child.join), WAIT_SECONDS)
    finally:
        if child.is_alive():
            child.kill()
            child.join()
    assert child.exitcode == 0 and version == 2
    async with store:  # the parent's own copy was never started: it opens normally
        assert [m.text for m in (await store.load(session_id)).messages] == ["written by the child"]
