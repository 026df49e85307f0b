"""Forks, time travel, listings and deletion through the public API, checked again after reopening."""

from __future__ import annotations

import asyncio

import pytest

import sessiondb
from sessiondb import Fork, Message, SessionNotFoundError, Usage

from .conftest import Opener

pytestmark = pytest.mark.anyio


async def _texts(store: sessiondb.Store, sid: str, **range_: int) -> list[str]:
    return [e.event.text async for e in store.read(sid, **range_) if isinstance(e.event, Message)]


async def test_fork_shares_history_up_to_the_fork_point(open_again: Opener) -> None:
    async with open_again() as store:
        parent = await store.create_session(model="m", workspace_root="/w")
        for i in range(5):
            await store.append(parent, Message.user(f"p{i}"), Message.assistant(f"a{i}", usage=Usage(1, 2)))
        # versions: 1 started, 2..11 messages; fork after p2/a2 (version 7)
        child = await store.fork(parent, branch_name="  try-2 \n", at_version=7)
        parent_events_before = store.statistics()["events"]
        await store.append(parent, Message.user("parent only"))
        await store.append(child, Message.user("child only"), Message.assistant("c", usage=Usage(100, 0)))

    async with open_again() as store:
        loaded = await store.load(child)
        assert loaded.session_id == child
        assert loaded.fork == Fork(parent, "try-2", 7)  # branch name trimmed, as the reference does
        assert loaded.model == "m" and loaded.workspace_root == "/w"
        assert [m.text for m in loaded.messages] == ["p0", "a0", "p1", "a1", "p2", "a2", "child only", "c"]
        assert loaded.usage == Usage(103, 6)
        assert loaded.version == 10  # 7 shared, the child's start, two of its own
        assert loaded.created_at_ms >= (await store.load(parent, at_version=1)).created_at_ms
        assert await _texts(store, parent) == [*(f"{k}{i}" for i in range(5) for k in "pa"), "parent only"]

        # Nothing was copied: the child's own log starts right after the parent's version.
        own = await store.backend.read_session(child, 0, None)
        assert [e.version for e in own] == [8, 9, 10]
        assert isinstance(own[0].event, sessiondb.SessionStarted)
        everything = await store.read_all()
        assert sum(1 for e in everything if e.session_id == child) == 3
        assert parent_events_before == 1 + 10 + 1  # the fork itself wrote one event

        # read() stitches the parent's shared events (under the parent's id) before the child's own.
        stitched = [(e.session_id, e.version) async for e in store.read(child)]
        assert stitched == [(parent, v) for v in range(1, 8)] + [(child, v) for v in (8, 9, 10)]
        assert [(e.session_id, e.version) async for e in store.read(child, after=5, up_to=9)] == [
            (parent, 6),
            (parent, 7),
            (child, 8),
            (child, 9),
        ]

        # Time travel below the fork point sees the parent's history under the child's id.
        early = await store.load(child, at_version=4)
        assert early.session_id == child
        assert [m.text for m in early.messages] == ["p0", "a0", "p1"]
        assert early.messages == (await store.load(parent, at_version=4)).messages

        info = await store.session_info(child)
        assert (info.parent_session_id, info.branch_name, info.version) == (parent, "try-2", 10)
        assert info.message_count == 8 and info.usage == Usage(103, 6)


@pytest.mark.parametrize("branch", [None, "", "   ", "\t\n"])
async def test_blank_branch_name_is_none(open_again: Opener, branch: str | None) -> None:
    async with open_again() as store:
        parent = await store.create_session()
        child = await store.fork(parent, branch_name=branch)
        assert (await store.load(child)).fork == Fork(parent, None, 1)
        assert (await store.session_info(child)).branch_name is None


async def test_fork_of_a_fork_and_default_head(open_again: Opener) -> None:
    async with open_again() as store:
        root = await store.create_session()
        await store.append(root, Message.user("r1"), Message.user("r2"))
        first = await store.fork(root)  # at the head: version 3
        await store.append(root, Message.user("root later"))
        await store.append(first, Message.user("f1"))  # version 5
        second = await store.fork(first, branch_name="deeper", at_version=5, session_id="my-second")
        assert second == "my-second"
        await store.append(second, Message.user("s1"))
        await store.append(first, Message.user("first later"))

    async with open_again() as store:
        assert [m.text for m in (await store.load(second)).messages] == ["r1", "r2", "f1", "s1"]
        assert [m.text for m in (await store.load(first)).messages] == ["r1", "r2", "f1", "first later"]
        assert (await store.load(first)).fork == Fork(root, None, 3)
        assert (await store.load(second)).fork == Fork(first, "deeper", 5)
        assert [(e.session_id, e.version) async for e in store.read(second)] == [
            (root, 1),
            (root, 2),
            (root, 3),
            (first, 4),
            (first, 5),
            (second, 6),
            (second, 7),
        ]
        assert (await store.session_info(second)).message_count == 4
        # Every prefix of the grandchild equals the matching prefix of its ancestors.
        for version in range(1, 8):
            ancestor = root if version <= 3 else first if version <= 5 else second
            assert (await store.load(second, at_version=version)).messages == (
                await store.load(ancestor, at_version=version)
            ).messages


async def test_fork_carries_the_parents_compaction(open_again: Opener) -> None:
    async with open_again() as store:
        parent = await store.create_session()
        await store.append(parent, *(Message.user(str(i)) for i in range(6)))
        await store.record_compaction(parent, summary="S", removed_message_count=4)
        child = await store.fork(parent)
        await store.append(child, Message.user("x"))
        loaded = await store.load(child)
        assert loaded.compaction is not None and loaded.compaction.count == 1
        assert [m.text for m in loaded.messages[1:]] == ["4", "5", "x"]
        assert (await store.session_info(child)).message_count == len(loaded.messages) == 4
        await store.record_compaction(child, summary="T", removed_message_count=2)
        loaded = await store.load(child)
        assert loaded.compaction is not None and loaded.compaction.count == 2
        assert [m.text for m in loaded.messages[1:]] == ["x"]
        assert (await store.session_info(child)).message_count == 2


async def test_time_travel_every_version(open_again: Opener) -> None:
    async with open_again() as store:
        sid = await store.create_session()
        texts = [f"m{i}" for i in range(12)]
        for text in texts:
            await store.append(sid, Message.user(text))
        await store.record_compaction(sid, summary="half", removed_message_count=6)
    async with open_again() as store:
        for version in range(0, 14):
            session = await store.load(sid, at_version=version)
            assert session.version == version
            assert [m.text for m in session.messages] == texts[: max(version - 1, 0)]
        assert (await store.load(sid, at_version=14)).messages[1:] == (await store.load(sid)).messages[1:]
        for bad in (-1, 15, 10**9, "3", 2.0):
            with pytest.raises(sessiondb.InvalidInputError, match=r"versions 0\.\.14"):
                await store.load(sid, at_version=bad)  # type: ignore[arg-type]
        with pytest.raises(sessiondb.InvalidInputError, match=r"versions 0\.\.14"):
            await store.fork(sid, at_version=15)


async def test_list_sessions_order_and_fields(open_again: Opener) -> None:
    async with open_again() as store:
        a = await store.create_session(session_id="a", model="ma", workspace_root="/a")
        b = await store.create_session(session_id="b", model="mb")
        c = await store.create_session(session_id="c")
        await store.append(a, Message.user("x"), Message.assistant("y", usage=Usage(3, 4, 5, 6)), timestamp_ms=3_000)
        await store.append(b, Message.user("x"), timestamp_ms=1_000)
        await store.append(c, Message.user("x"), timestamp_ms=2_000)
        child = await store.fork(a, branch_name="br", at_version=2)
        await store.append(child, Message.user("late"), timestamp_ms=2_500)
        await store.delete_session(b)

    async with open_again() as store:
        infos = await store.list_sessions()
        assert [i.session_id for i in infos] == ["a", child, "c"]
        by_id = {i.session_id: i for i in infos}
        assert by_id["a"].updated_at_ms == 3_000 and by_id["a"].message_count == 2
        assert by_id["a"].usage == Usage(3, 4, 5, 6) and by_id["a"].total_tokens == 18
        assert (by_id["a"].model, by_id["a"].workspace_root, by_id["a"].fork) == ("ma", "/a", None)
        assert by_id[child].fork == Fork("a", "br", 2)
        assert (by_id[child].parent_session_id, by_id[child].branch_name) == ("a", "br")
        assert by_id[child].message_count == 2 and by_id[child].model == "ma"
        assert by_id[child].usage == Usage()  # the assistant message with usage is after the fork point
        assert by_id["c"].model is None and by_id["c"].version == 2
        for info in infos:
            assert info.created_at_ms > 0
            assert info == await store.session_info(info.session_id)
            session = await store.load(info.session_id)
            assert (info.version, info.message_count, info.usage) == (
                session.version,
                len(session.messages),
                session.usage,
            )


async def test_delete_session(open_again: Opener) -> None:
    async with open_again() as store:
        parent = await store.create_session(session_id="parent")
        await store.append(parent, Message.user("shared"))
        child = await store.fork(parent)
        other = await store.create_session()
        await store.delete_session(parent)
        for call in (
            store.load(parent),
            store.session_info(parent),
            store.append(parent, Message.user("no")),
            store.fork(parent),
            store.delete_session(parent),
        ):
            with pytest.raises(SessionNotFoundError, match="'parent'"):
                await call
        with pytest.raises(SessionNotFoundError):
            [e async for e in store.read(parent)]
        with pytest.raises(sessiondb.SessionExistsError):
            await store.create_session(session_id="parent")  # the id stays taken
        assert {i.session_id for i in await store.list_sessions()} == {child, other}

    async with open_again() as store:
        with pytest.raises(SessionNotFoundError, match="deleted"):
            await store.load(parent)
        assert {i.session_id for i in await store.list_sessions()} == {child, other}
        # A fork of the deleted parent still loads its shared history.
        assert [m.text for m in (await store.load(child)).messages] == ["shared"]
        assert await store.append(child, Message.user("goes on")) == 4
        assert store.statistics()["sessions"] == 2


async def test_append_in_the_same_batch_as_a_delete_is_refused(open_again: Opener) -> None:
    async with open_again() as store:
        sid = await store.create_session()
        results = await asyncio.gather(
            store.delete_session(sid), store.append(sid, Message.user("too late")), return_exceptions=True
        )
        assert results[0] is None
        assert isinstance(results[1], SessionNotFoundError)
        assert [e.version for e in await store.backend.read_session(sid, 0, None)] == [1, 2]


async def test_fork_at_version_zero_keeps_model_and_workspace(open_again: Opener) -> None:
    async with open_again() as store:
        parent = await store.create_session(model="m", workspace_root="/w")
        await store.append(parent, Message.user("not shared"))
        child = await store.fork(parent, at_version=0)
        loaded = await store.load(child)
        assert loaded.messages == [] and loaded.fork == Fork(parent, None, 0) and loaded.version == 1
        assert (loaded.model, loaded.workspace_root) == ("m", "/w")
        assert [(e.session_id, e.version) async for e in store.read(child)] == [(child, 1)]
