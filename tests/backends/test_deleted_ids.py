"""One rule for a deleted session's id, on every backend and in the OpenAI Agents adapter.

The id is never reused: append, create_session, fork to it, load, delete and the
adapter's get_items/add_items/clear_session all raise ``SessionDeletedError``, which
says so and what to do; the same after reopen and after a compaction pass.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import sessiondb
from sessiondb import (
    CompactionSettings,
    Message,
    SessionDeletedError,
    SessionExistsError,
    SessionNotFoundError,
    Store,
)
from sessiondb._backends.postgres import PostgresBackend

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["directory", "memory", "postgres"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Callable[[], Any], bool]]:
    """A way to open the store, and whether reopening finds the same data."""
    settings = CompactionSettings(background=False, keep_segments=1, min_tail_events=1, min_tail_bytes=1)
    if request.param == "directory":
        yield (lambda: sessiondb.open_store(tmp_path / "s", segment_bytes=4096, compaction=settings)), True
    elif request.param == "memory":
        yield (lambda: sessiondb.open_store(":memory:")), False
    else:
        dsn = request.getfixturevalue("pg_dsn")
        schema = request.getfixturevalue("pg_schema")
        yield (lambda: sessiondb.open_store(PostgresBackend(dsn, schema=schema), compaction=settings)), True


async def _all_refuse(store: Store, sid: str) -> None:
    # Issue 11: append said "no session ... create it first" and create_session said "already exists".
    with pytest.raises(SessionDeletedError, match=f"'{sid}' was deleted.*another id"):
        await store.append(sid, Message.user("again"))
    with pytest.raises(SessionDeletedError, match="another id"):
        await store.create_session(session_id=sid)
    with pytest.raises(SessionDeletedError):
        await store.load(sid)
    with pytest.raises(SessionDeletedError):
        await store.delete_session(sid)
    live = await store.create_session()
    with pytest.raises(SessionDeletedError):
        await store.fork(live, session_id=sid)
    # Handlers written for the older errors still catch it.
    with pytest.raises(SessionNotFoundError):
        await store.append(sid, Message.user("again"))
    with pytest.raises(SessionExistsError):
        await store.create_session(session_id=sid)


async def test_a_deleted_id_has_one_rule(opener: tuple[Callable[[], Any], bool]) -> None:
    open_, durable = opener
    sid = f"c-{uuid.uuid4().hex[:6]}"
    async with open_() as store:
        await store.create_session(session_id=sid)
        await store.append(sid, *(Message.user("x" * 500) for _ in range(20)))
        await store.delete_session(sid)
        await _all_refuse(store, sid)
        for _ in range(30):  # more segments, so that retention can free the deleted session's
            other = await store.create_session()
            await store.append(other, Message.user("y" * 500))
        await store.compact()
        await _all_refuse(store, sid)
    if durable:
        async with open_() as store:  # after reopen (from the checkpoint the pass wrote)
            await _all_refuse(store, sid)
            await store.compact()
        async with open_() as store:
            await _all_refuse(store, sid)


async def test_a_deleted_id_in_the_openai_agents_adapter(opener: tuple[Callable[[], Any], bool]) -> None:
    pytest.importorskip("agents")
    from sessiondb.integrations.openai_agents import SessionDBSession

    open_, _ = opener
    sid = f"a-{uuid.uuid4().hex[:6]}"
    async with open_() as store:
        session = SessionDBSession(sid, store)
        await session.add_items([{"role": "user", "content": "hi"}])
        await session.clear_session()  # the SDK's clear: the session stays usable
        await session.add_items([{"role": "user", "content": "again"}])
        assert await session.get_items() == [{"role": "user", "content": "again"}]
        await store.delete_session(sid)
        # Issue 11: get_items() returned [] while add_items() raised SessionNotFoundError.
        for call in (
            session.get_items,
            lambda: session.add_items([{"role": "user", "content": "x"}]),
            session.clear_session,
            session.pop_item,
            lambda: SessionDBSession(sid, store).get_items(),
            lambda: SessionDBSession(sid, store).add_items([{"role": "user", "content": "x"}]),
        ):
            with pytest.raises(SessionDeletedError):
                await call()


async def test_importing_a_file_for_a_deleted_id_says_it_was_deleted(tmp_path: Path) -> None:
    """The import path follows the one rule too: not 'already exists' for an id nobody can see."""
    async with sessiondb.open_store(tmp_path / "store") as store:
        sid = await store.create_session(session_id="gone")
        await store.append(sid, Message.user("hi"))
        exported = await sessiondb.export_claw_session(store, sid, tmp_path / "gone.jsonl")
        await store.delete_session(sid)
        with pytest.raises(sessiondb.SessionDeletedError, match="was deleted"):
            await sessiondb.import_claw_files(store, exported)
