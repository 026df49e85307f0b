"""Bad input gets a clear error naming what and where, and nothing is written."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

import sessiondb
from sessiondb import (
    Compacted,
    ConflictError,
    Custom,
    EventTooLargeError,
    InvalidInputError,
    InvalidSessionIdError,
    Message,
    PromptRecorded,
    SessionDBError,
    SessionDeleted,
    SessionExistsError,
    SessionNotFoundError,
    SessionStarted,
    Text,
)
from sessiondb._store import Store

pytestmark = pytest.mark.anyio

UNSAFE_IDS = [
    "",
    "a/b",
    "/etc/passwd",
    "..",
    ".",
    "../x",
    "a\\b",
    "nul\x00byte",
    "line\nbreak",
    "tab\there",
    "esc\x1b[31m",
    "del\x7f",
    "sep\u2028arator",
    "next\x85line",
    "x" * 10_240,
]


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    async with sessiondb.open_store(":memory:", max_event_bytes=4096, max_events_per_append=5) as opened:
        yield opened


async def _snapshot(store: Store) -> tuple[int, list[Any]]:
    """Everything the store holds: to show that a refused call wrote nothing."""
    return store.statistics()["events"], await store.read_all()


@pytest.mark.parametrize("bad", UNSAFE_IDS, ids=lambda s: repr(s[:20]))
async def test_unsafe_session_ids_are_refused(store: Store, bad: str) -> None:
    before = await _snapshot(store)
    with pytest.raises(InvalidSessionIdError) as caught:
        await store.create_session(session_id=bad)
    assert len(str(caught.value)) < 400  # a 10 KB id is shortened, not echoed whole
    parent = await store.create_session()
    with pytest.raises(InvalidSessionIdError):
        await store.fork(parent, session_id=bad)
    for call in (store.load(bad), store.session_info(bad), store.delete_session(bad), store.fork(bad)):
        with pytest.raises(InvalidSessionIdError) as caught:
            await call
        assert len(str(caught.value)) < 400
    with pytest.raises(InvalidSessionIdError):
        await store.append(bad, Message.user("x"))
    with pytest.raises(InvalidSessionIdError):
        [e async for e in store.read(bad)]
    assert (await _snapshot(store))[0] == before[0] + 1  # only the parent was written
    assert {i.session_id for i in await store.list_sessions()} == {parent}


@pytest.mark.parametrize("bad", [5, b"bytes", ["list"], ("t",)])
async def test_non_string_session_ids(store: Store, bad: Any) -> None:
    with pytest.raises(InvalidSessionIdError, match=r"must be a str"):
        await store.create_session(session_id=bad)
    for call in (store.load(bad), store.session_info(bad), store.fork(bad), store.delete_session(bad)):
        with pytest.raises(InvalidSessionIdError, match=r"must be a str"):
            await call
    with pytest.raises(InvalidSessionIdError, match=r"must be a str"):
        await store.append(bad, Message.user("x"))


async def test_safe_unusual_ids_are_accepted(store: Store) -> None:
    for sid in ("x" * 224, "é" * 112, "émoji-\U0001f600", "with space", "a.b", "...", "-", "session-1-2"):
        assert await store.create_session(session_id=sid) == sid
        assert await store.append(sid, Message.user("hi")) == 2
        assert (await store.load(sid)).session_id == sid


async def test_unknown_session(store: Store) -> None:
    for call in (
        store.load("ghost"),
        store.session_info("ghost"),
        store.append("ghost", Message.user("x")),
        store.record_prompt("ghost", "p"),
        store.record_compaction("ghost", summary="s", removed_message_count=1),
        store.fork("ghost"),
        store.delete_session("ghost"),
    ):
        with pytest.raises(SessionNotFoundError) as caught:
            await call
        assert caught.value.session_id == "ghost"
        assert str(caught.value).startswith("no session 'ghost' in this store")
        assert isinstance(caught.value, KeyError) and isinstance(caught.value, SessionDBError)
    assert await store.read_all() == []


async def test_expected_version_in_the_past_and_in_the_future(store: Store) -> None:
    sid = await store.create_session()
    await store.append(sid, Message.user("a"))
    others = [await store.create_session() for _ in range(5)]
    for expected in (0, 1, 3, 10**6):
        results = await asyncio.gather(
            *(store.append(o, Message.user("fine")) for o in others[:2]),
            store.append(sid, Message.user("refused"), expected_version=expected),
            *(store.append(o, Message.user("fine")) for o in others[2:]),
            return_exceptions=True,
        )
        conflict = results[2]
        assert isinstance(conflict, ConflictError)
        assert (conflict.session_id, conflict.expected_version, conflict.actual_version) == (sid, expected, 2)
        assert f"at version 2, but the append expected version {expected}" in str(conflict)
        assert all(isinstance(r, int) for r in results[:2] + results[3:])
    assert (await store.session_info(sid)).version == 2
    assert [(await store.session_info(o)).version for o in others] == [5] * 5
    assert await store.append(sid, Message.user("right"), expected_version=2) == 3
    for bad in (-1, "2", 2.0, True):
        with pytest.raises(InvalidInputError, match=r"expected_version"):
            await store.append(sid, Message.user("x"), expected_version=bad)  # type: ignore[arg-type]


async def test_append_shapes_that_are_refused(store: Store) -> None:
    sid = await store.create_session()
    before = await _snapshot(store)
    with pytest.raises(InvalidInputError, match=r"at least one event"):
        await store.append(sid)
    with pytest.raises(InvalidInputError, match=r"got 6 events for session .* the limit for one atomic append is 5"):
        await store.append(sid, *(Message.user(str(i)) for i in range(6)))
    for not_an_event in ("hello", {"type": "message"}, Text("a block"), None, 42, Message):
        with pytest.raises(InvalidInputError, match=r"Message, PromptRecorded, Compacted or Custom") as caught:
            await store.append(sid, not_an_event)  # type: ignore[arg-type]
        assert repr(sid) in str(caught.value)
        with pytest.raises(InvalidInputError):
            await store.append(sid, Message.user("ok"), not_an_event)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=r"create_session"):
        await store.append(sid, SessionStarted(1))
    with pytest.raises(InvalidInputError, match=r"delete_session"):
        await store.append(sid, SessionDeleted())
    with pytest.raises(InvalidInputError, match=r"one str"):
        await store.append(sid, Message.user("a"), Message.user("b"), event_ids=["only-one"])
    with pytest.raises(InvalidInputError, match=r"one str"):
        await store.append(sid, Message.user("a"), event_ids=[7])  # type: ignore[list-item]
    assert await _snapshot(store) == before
    assert await store.append(sid, *(Message.user(str(i)) for i in range(5))) == 6  # exactly the limit


async def test_invalid_events_fail_when_built() -> None:
    with pytest.raises(InvalidInputError, match=r"Message\.role"):
        Message("robot", [])  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=r"Text\.text must be a str"):
        Text(5)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=r"Usage\.input_tokens"):
        sessiondb.Usage(-1)
    with pytest.raises(InvalidInputError, match=r"removed_message_count"):
        Compacted("s", -1)
    with pytest.raises(InvalidInputError, match=r"Message\.blocks"):
        Message("user", ["not a block"])  # type: ignore[list-item]


def test_token_counts_have_bounds() -> None:
    """One model call's usage is u32 per field (the reference format); any Usage fits in int64."""
    u32 = 2**32 - 1
    # Both errors give both ranges in the same words: a Usage that builds may still be too large for a Message.
    both = r"token counts are 0\.\.2\*\*32-1 per field for one model call .* and 0\.\.2\*\*63-1 for a Usage on its own"
    with pytest.raises(InvalidInputError, match=r"Usage\.output_tokens must be an int in 0\.\.2\*\*63-1 ") as caught:
        sessiondb.Usage(0, 2**70)
    assert re.search(both, str(caught.value))
    with pytest.raises(
        InvalidInputError,
        match=r"Message\.usage\.cache_read_input_tokens must be an int in 0\.\.2\*\*32-1 \(4294967295\)",
    ) as caught:
        Message("assistant", [Text("x")], usage=sessiondb.Usage(cache_read_input_tokens=u32 + 1))
    assert re.search(both, str(caught.value))
    Message("assistant", [Text("x")], usage=sessiondb.Usage(u32, u32, u32, u32))  # the largest is fine
    assert sessiondb.Usage(2**62).input_tokens == 2**62  # a session total may pass u32


async def test_session_totals_past_u32_survive_compaction_and_reopen(tmp_path: Any) -> None:
    """Totals past u32 compact, checkpoint and reopen (a per-message Usage(2**63 - 1) once broke close)."""
    u32 = 2**32 - 1
    biggest = Message("assistant", [Text("x")], usage=sessiondb.Usage(u32, u32, u32, u32))
    async with sessiondb.open_store(tmp_path / "s") as store:
        sid = await store.create_session()
        await store.append(sid, *([biggest] * 5))
        await store.compact()
    async with sessiondb.open_store(tmp_path / "s") as store:
        assert (await store.session_info(sid)).input_tokens == 5 * u32
        assert (await store.load(sid)).usage.cache_read_input_tokens == 5 * u32


@pytest.mark.parametrize("smuggled", ["a str", {"type": "text", "text": "a dict"}, None, Message.user("nested")])
async def test_a_message_mutated_after_building_is_still_checked(store: Store, smuggled: Any) -> None:
    """Such a record would encode but never decode: the session would be unreadable for good."""
    sid = await store.create_session()
    message = Message.assistant("fine")
    message.blocks.append(smuggled)
    for events in ([message], [Message.user("a"), message]):
        with pytest.raises(InvalidInputError, match=r"Message\.blocks may hold"):
            await store.append(sid, *events)
    assert (await store.session_info(sid)).version == 1
    assert (await store.load(sid)).messages == []  # still readable


async def test_event_over_max_event_bytes(store: Store) -> None:
    sid = await store.create_session()
    await store.append(sid, Message.user("small"))
    before = await _snapshot(store)
    for events in (
        [Message.user("x" * 5000)],
        [Message.user("fits"), Custom("big", "\x00" * 1000)],  # escapes make it larger than it looks
        [PromptRecorded("p", 1), Message.user("ok"), Compacted("y" * 4097, 1)],
    ):
        with pytest.raises(EventTooLargeError) as caught:
            await store.append(sid, *events)
        message = str(caught.value)
        assert repr(sid) in message and "max_event_bytes of 4096" in message
    assert await _snapshot(store) == before
    assert (await store.session_info(sid)).version == 2
    assert await store.append(sid, Message.user("still works")) == 3


async def test_too_large_event_does_not_disturb_its_batch(store: Store) -> None:
    sids = [await store.create_session() for _ in range(6)]
    results = await asyncio.gather(
        *(store.append(s, Message.user("y" * 9000 if i == 3 else "ok")) for i, s in enumerate(sids)),
        return_exceptions=True,
    )
    assert isinstance(results[3], EventTooLargeError)
    assert [r for i, r in enumerate(results) if i != 3] == [2] * 5
    positions = [e.position for e in await store.read_all()]
    assert positions == list(range(1, len(positions) + 1))


async def test_create_session_with_an_existing_id(store: Store) -> None:
    await store.create_session(session_id="taken", model="first")
    with pytest.raises(SessionExistsError, match=r"'taken' already exists") as caught:
        await store.create_session(session_id="taken", model="second")
    assert caught.value.session_id == "taken"
    with pytest.raises(SessionExistsError):
        await store.fork("taken", session_id="taken")
    assert (await store.session_info("taken")).model == "first"
    assert (await store.session_info("taken")).version == 1


async def test_event_ids_make_retries_idempotent(store: Store) -> None:
    sid = await store.create_session()
    v = await store.append(sid, Message.user("a"), Message.user("b"), event_ids=["e1", "e2"])
    assert v == 3
    await store.append(sid, Message.user("c"), event_ids=["e3"])
    before = await _snapshot(store)
    # A retry returns the first attempt's version, even with the expected_version the first attempt used.
    assert await store.append(sid, Message.user("a"), Message.user("b"), event_ids=["e1", "e2"]) == 3
    assert (
        await store.append(sid, Message.user("a"), Message.user("b"), event_ids=["e1", "e2"], expected_version=1) == 3
    )
    assert await store.append(sid, Message.user("c"), event_ids=["e3"], expected_version=3) == 4
    assert await _snapshot(store) == before
    # Some ids stored, some not: refused, nothing written.
    with pytest.raises(InvalidInputError, match=r"some event ids .* are already stored and some are not"):
        await store.append(sid, Message.user("b"), Message.user("new"), event_ids=["e2", "e4"])
    assert await _snapshot(store) == before
    # None entries are allowed and ignored for matching.
    assert await store.append(sid, Message.user("d"), Message.user("e"), event_ids=[None, "e5"]) == 6
    assert await store.append(sid, Message.user("d"), Message.user("e"), event_ids=[None, "e5"]) == 6
    ids = [e.event_id async for e in store.read(sid)]
    assert ids == [None, "e1", "e2", "e3", None, "e5"]


async def test_a_retry_queued_with_its_first_attempt_is_stored_once(store: Store) -> None:
    sid = await store.create_session()
    first = asyncio.ensure_future(store.append(sid, Message.user("a"), event_ids=["once"]))
    await asyncio.sleep(0)  # queued, not yet committed
    first.cancel()
    results = await asyncio.gather(
        store.append(sid, Message.user("a"), event_ids=["once"]),
        store.append(sid, Message.user("a"), event_ids=["once"]),
    )
    assert results == [2, 2]
    assert [e.event_id async for e in store.read(sid)] == [None, "once"]
    # And a conflicting append queued behind a successful one in the same batch:
    results = await asyncio.gather(
        store.append(sid, Message.user("x"), expected_version=2, event_ids=["x"]),
        store.append(sid, Message.user("x"), expected_version=2, event_ids=["x"]),
        store.append(sid, Message.user("y"), expected_version=2),
        return_exceptions=True,
    )
    assert results[:2] == [3, 3] and isinstance(results[2], ConflictError)
    assert results[2].actual_version == 3


async def test_read_ranges(store: Store) -> None:
    sid = await store.create_session()
    await store.append(sid, *(Message.user(str(i)) for i in range(5)))
    assert [e.version async for e in store.read(sid, after=2)] == [3, 4, 5, 6]
    assert [e.version async for e in store.read(sid, after=2, up_to=4)] == [3, 4]
    assert [e.version async for e in store.read(sid, after=6)] == []
    assert [e.version async for e in store.read(sid, up_to=100)] == [1, 2, 3, 4, 5, 6]
    assert [e.version async for e in store.read(sid, after=-5, up_to=1)] == [1]
    assert await store.read_all(after=10**6) == []
    assert [e.position for e in await store.read_all(after=2, limit=3)] == [3, 4, 5]
    assert [e.position for e in await store.read_all(after=-7)] == [1, 2, 3, 4, 5, 6]  # like read(after=-5)
    for bad in ("1", 1.0, None):
        with pytest.raises(InvalidInputError, match=r"read_all\(\) takes int"):
            await store.read_all(after=bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError, match=r"read\(\) takes int"):
            [e async for e in store.read(sid, after=bad)]  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        await store.read_all(limit="10")  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["1700000000000", 1.5, -1, 2**63, True, [1]])
async def test_bad_timestamps_are_refused_and_the_store_still_opens(tmp_path: Any, bad: Any) -> None:
    """A wrong timestamp type used to be acknowledged and then made the whole store fail to open."""
    async with sessiondb.open_store(tmp_path / "s") as store:
        sid = await store.create_session()
        with pytest.raises(InvalidInputError, match="timestamp_ms must be an int"):
            await store.append(sid, Message.user("a"), timestamp_ms=bad)
        assert await store.append(sid, Message.user("b"), timestamp_ms=1_700_000_000_000) == 2
    async with sessiondb.open_store(tmp_path / "s") as store:
        session = await store.load(sid)
        assert [m.text for m in session.messages] == ["b"] and session.updated_at_ms == 1_700_000_000_000


async def test_fork_arguments(store: Store) -> None:
    sid = await store.create_session()
    for bad in (5, b"bytes", ["b"]):
        with pytest.raises(InvalidInputError, match="branch_name"):
            await store.fork(sid, branch_name=bad)  # type: ignore[arg-type]
    for bad_version in (-1, 2, "1"):
        with pytest.raises(InvalidInputError, match=r"versions 0\.\.1"):
            await store.fork(sid, at_version=bad_version)  # type: ignore[arg-type]
    assert [i.session_id for i in await store.list_sessions()] == [sid]
