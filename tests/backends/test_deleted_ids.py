"""One rule for a deleted session's id, on every backend and in the OpenAI Agents adapter.

The id is never reused: append, create_session, fork to it, load, delete and the
adapter's get_items/add_items/clear_session all raise ``SessionDeletedError``, which
says so and what to do; the same after reopen and after a compaction pass.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

import sessiondb
from sessiondb import (
    Message,
    SessionDeletedError,
    SessionExistsError,
    SessionNotFoundError,
    Store,
)

from .conftest import StoreOpener

pytestmark = pytest.mark.anyio


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


async def test_a_deleted_id_has_one_rule(opener: StoreOpener) -> None:
    open_, durable, _ = opener
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


async def test_a_deleted_id_in_the_openai_agents_adapter(opener: StoreOpener) -> None:
    pytest.importorskip("agents")
    from sessiondb.integrations.openai_agents import SessionDBSession

    open_ = opener.open
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
