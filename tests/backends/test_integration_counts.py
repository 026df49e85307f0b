"""Sessions the integrations write as custom events are counted in their summaries, on every backend.

An OpenAI Agents SDK session holds items, a LangGraph thread checkpoints; neither holds a
``Message``, so ``message_count`` alone listed them as "0 messages". ``SessionInfo`` and
``Session`` count their live items (``get_items()``'s length) and checkpoints written, the same
after appends of several events, concurrent appends in one batch, forks and reopening (the
directory store's rescan and its checkpoint; PostgreSQL's ``append_batch``).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

import sessiondb
from sessiondb import Custom, Message, Store
from sessiondb._backends._base import AppendRequest
from sessiondb._backends.postgres import PostgresBackend
from sessiondb.integrations._langgraph_state import CHECKPOINT, pack
from sessiondb.integrations.openai_agents import CLEAR, ITEMS, POP, SessionDBSession

from .conftest import StoreOpener

pytestmark = pytest.mark.anyio


def _items(*names: str) -> Custom:
    return Custom(ITEMS, {"items": [{"role": "user", "content": name} for name in names]})


def _checkpoint(n: int) -> Custom:
    packed = pack(("t", b"", "t", b"", [], [], []))  # the saver's shape, empty: the count does not read it
    return Custom(CHECKPOINT, {"ns": "", "id": f"c{n}", "parent": None, "x": packed})


async def _counts(store: Store, session_id: str) -> tuple[int, int, int]:
    """(messages, items, checkpoints) from the summary, checked against the replayed Session."""
    info = await store.session_info(session_id)
    session = await store.load(session_id)
    assert (session.item_count, session.checkpoint_count) == (info.item_count, info.checkpoint_count)
    return info.message_count, info.item_count, info.checkpoint_count


# What each session holds when written (and after reopening).
EXPECTED = {
    "agent": (0, 4, 0),
    "batched": (0, 2, 0),
    "floor": (0, 2, 0),
    "thread": (0, 0, 3),
    "plain": (1, 0, 0),
    "fork": (0, 4, 0),
}


async def _write(store: Store) -> None:
    # Through the adapter: what the SDK's Runner does.
    agent = SessionDBSession("agent", store)
    await agent.add_items([{"role": "user", "content": "hi"}])
    assert await _counts(store, "agent") == (0, 1, 0)
    await agent.add_items([{"role": "assistant", "content": "a"}, {"type": "function_call", "call_id": "c"}])
    await agent.add_items([{"type": "function_call_output", "call_id": "c", "output": "o"}])
    assert await _counts(store, "agent") == (0, 4, 0) == (0, len(await agent.get_items()), 0)
    assert await agent.pop_item() is not None
    assert await _counts(store, "agent") == (0, 3, 0)
    await agent.clear_session()
    assert await _counts(store, "agent") == (0, 0, 0)
    await agent.add_items([{"role": "user", "content": f"again {n}"} for n in range(4)])
    assert await _counts(store, "agent") == (0, 4, 0) == (0, len(await agent.get_items()), 0)
    # Several counted events in one append compose (PostgreSQL sends them as one change).
    await store.create_session(session_id="batched")
    await store.append("batched", _items("a", "b", "c"), Custom(POP), Custom(CLEAR), _items("d"), _items("e"))
    await store.create_session(session_id="floor")
    await store.append("floor", _items("a"), Custom(POP), Custom(POP), Custom(POP), _items("b", "c"))
    # LangGraph: one per checkpoint written, appended concurrently (one batch, the ordered path).
    await store.create_session(session_id="thread", scope="langgraph")
    await asyncio.gather(*(store.append("thread", _checkpoint(n)) for n in range(3)))
    await store.create_session(session_id="plain")
    await store.append("plain", Message.user("hello"), Custom("mine", {"items": [1, 2]}))
    # A fork inherits the parent's count at the fork point, then counts its own.
    # v1 started, v2-v4 add 4 items, v5 pops one: 3 then.
    assert (await store.load("agent", at_version=5)).item_count == 3
    await store.fork("agent", at_version=5, session_id="fork")
    await store.append("fork", _items("own"))


async def _check(store: Store) -> None:
    for session_id, expected in EXPECTED.items():
        assert await _counts(store, session_id) == expected, session_id
    listed = {
        info.session_id: (info.message_count, info.item_count, info.checkpoint_count)
        for info in await store.list_sessions()
    }
    assert listed == EXPECTED
    paged = (await store.page_sessions(scope="langgraph")).sessions
    assert [(info.session_id, info.checkpoint_count) for info in paged] == [("thread", 3)]


async def test_integration_sessions_are_counted(opener: StoreOpener) -> None:
    """Small segments and eager passes (snapshots, the index checkpoint), then reopened with and without it."""
    open_store, durable, directory = opener
    async with open_store() as store:
        await _write(store)
        await _check(store)
        await store.compact()  # the directory store writes its index checkpoint
    if not durable:
        return
    async with open_store() as store:
        if directory is not None:
            assert store.statistics()["opened_from_checkpoint"] is True
        await _check(store)
    if directory is not None:
        # The recovery scan's summaries: decoded from the log's records (and, for a session whose
        # start retention removed, from its snapshot's summary).
        (directory / "CHECKPOINT").unlink()
        async with open_store() as store:
            assert store.statistics()["opened_from_checkpoint"] is False
            await _check(store)
    async with open_store() as store:
        assert await store.append("agent", Custom(POP)) > 0
        assert await _counts(store, "agent") == (0, 3, 0)


@pytest.mark.postgres
async def test_a_version_5_postgresql_schema_counts_what_it_holds(pg_dsn: str, pg_schema: str) -> None:
    """The upgrade fills the new columns from the events already stored (in version order per session)."""
    import asyncpg

    from .test_labels_upgrade import _schema_at

    def payload(event: dict[str, Any]) -> bytes:
        return json.dumps(event, separators=(",", ":")).encode()

    item = {"role": "user", "content": "x"}
    events = {
        "agent": [
            {"type": "custom", "name": ITEMS, "data": {"items": [item, item, item]}},
            {"type": "custom", "name": POP, "data": None},
            {"type": "custom", "name": CLEAR, "data": None},
            {"type": "custom", "name": ITEMS, "data": {"items": [item, item]}},
            {"type": "custom", "name": POP, "data": None},
        ],
        "thread": [{"type": "custom", "name": CHECKPOINT, "data": {"x": "c"}} for _ in range(2)],
        "plain": [{"type": "message", "role": "user", "blocks": [{"type": "text", "text": "hello"}]}],
    }
    conn = await asyncpg.connect(pg_dsn)
    try:
        await _schema_at(conn, pg_schema, 5)
        position = 0
        for session_id, stored in events.items():
            started = [{"type": "session_started", "created_at_ms": 5}]
            messages = sum(1 for event in stored if event["type"] == "message")
            await conn.execute(
                f"insert into {pg_schema}.sessions (session_id, version, message_count) values ($1, $2, $3)",
                session_id,
                len(stored) + 1,
                messages,
            )
            # Inserted newest first: the fill must follow versions, not the table's order.
            for version, event in reversed(list(enumerate(started + stored, 1))):
                position += 1
                await conn.execute(
                    f"insert into {pg_schema}.events (position, session_id, version, timestamp_ms, payload) "
                    "values ($1, $2, $3, 5, $4)",
                    position,
                    session_id,
                    version,
                    payload(event),
                )
        async with sessiondb.open_store(PostgresBackend(pg_dsn, schema=pg_schema)) as store:
            assert await _counts(store, "agent") == (0, 1, 0)
            assert await _counts(store, "thread") == (0, 0, 2)
            assert await _counts(store, "plain") == (1, 0, 0)
            await store.append("agent", _items("new"))
            assert await _counts(store, "agent") == (0, 2, 0)
    finally:
        await conn.close()


async def test_a_counted_name_in_another_shape_adds_nothing(opener: StoreOpener) -> None:
    """Events of a counted name in another shape (append refuses them now; an older sessiondb stored them):
    they count 0 and never fail an open or a rescan."""
    open_store, durable, directory = opener
    odd = [Custom(ITEMS, {"items": "not a list"}), Custom(ITEMS, [1]), Custom(ITEMS), Custom(ITEMS, {"items": {}})]
    async with open_store() as store:
        await store.create_session(session_id="foreign")
        events = (*odd, _items("x"), Custom(CHECKPOINT, "any data"))
        with pytest.raises(sessiondb.InvalidInputError, match="reserves"):
            await store.append("foreign", *events)
        # As an older sessiondb wrote them: straight to the backend, past the store's checks.
        await store._submit(AppendRequest("foreign", events, timestamp_ms=1))
        assert await _counts(store, "foreign") == (0, 1, 1)
    if directory is not None:
        (directory / "CHECKPOINT").unlink()
    if durable:
        async with open_store() as store:
            assert await _counts(store, "foreign") == (0, 1, 1)
