"""The backend conformance suite: the behaviour every storage backend must show, as pytest tests.

Subclass ``BackendConformance`` in a test module (its name must start with
``Test``) and provide a ``backend_factory`` fixture: a callable that returns a
new, unopened ``Backend`` over the same storage each time it is called (so the
suite can close a store and open it again), accepting ``max_event_bytes``::

    class TestMyBackend(BackendConformance):
        @pytest.fixture
        def backend_factory(self, tmp_path):
            return lambda **options: MyBackend(tmp_path / "store", **options)

Every test runs through the public ``Store`` API, so a backend passes only if
the whole stack behaves: versions, conflicts, event ids, forks, time travel,
deletion, listings, the store-wide order and the limits.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from .._backends._base import Backend
from .._errors import (
    ConflictError,
    EventTooLargeError,
    InvalidInputError,
    SessionExistsError,
    SessionNotFoundError,
)
from .._events import Compacted, Custom, Message, RecordedEvent, SessionStarted, ToolUse, Usage
from .._store import Store, open_store
from ._label_conformance import LabelConformance

BackendFactory = Callable[..., Backend]


class BackendConformance(LabelConformance):
    """Tests every backend passes. Subclasses provide the ``backend_factory`` fixture."""

    pytestmark = pytest.mark.anyio

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    @pytest.fixture
    async def store(self, backend_factory: BackendFactory) -> AsyncIterator[Store]:
        async with open_store(backend_factory()) as opened:
            yield opened

    # ------------------------------------------------------------------ append and versions

    async def test_versions_start_at_one_and_have_no_gaps(self, store: Store) -> None:
        sid = await store.create_session(model="m", workspace_root="/w")
        versions = [await store.append(sid, Message.user(f"m{i}")) for i in range(5)]
        assert versions == [2, 3, 4, 5, 6]
        info = await store.session_info(sid)
        assert info.version == 6 and info.message_count == 5 and info.model == "m" and info.workspace_root == "/w"
        events = [e async for e in store.read(sid)]
        assert [e.version for e in events] == [1, 2, 3, 4, 5, 6]
        assert isinstance(events[0].event, SessionStarted)
        assert [e.event.text for e in events[1:]] == [f"m{i}" for i in range(5)]  # type: ignore[union-attr]

    async def test_multi_event_append_is_one_version_range_with_consecutive_positions(self, store: Store) -> None:
        sid = await store.create_session()
        version = await store.append(sid, Message.user("a"), Message.assistant("b"), Custom("note", {"k": 1}))
        assert version == 4
        events = [e async for e in store.read(sid, after=1)]
        assert [e.version for e in events] == [2, 3, 4]
        positions = [e.position for e in events]
        assert positions == list(range(positions[0], positions[0] + 3))
        assert events[2].event == Custom("note", {"k": 1})

    async def test_concurrent_appends_to_one_session_get_distinct_versions(self, store: Store) -> None:
        sid = await store.create_session()
        versions = await asyncio.gather(*(store.append(sid, Message.user(str(i))) for i in range(40)))
        assert sorted(versions) == list(range(2, 42))
        texts = [e.event.text async for e in store.read(sid, after=1)]  # type: ignore[union-attr]
        assert sorted(texts, key=int) == [str(i) for i in range(40)]

    async def test_create_existing_session_fails(self, store: Store) -> None:
        await store.create_session(session_id="dup")
        with pytest.raises(SessionExistsError):
            await store.create_session(session_id="dup")
        results = await asyncio.gather(
            store.create_session(session_id="twice"), store.create_session(session_id="twice"), return_exceptions=True
        )
        assert sorted(type(r).__name__ for r in results) == ["SessionExistsError", "str"]

    async def test_append_to_missing_session_fails(self, store: Store) -> None:
        with pytest.raises(SessionNotFoundError):
            await store.append("nobody", Message.user("x"))
        with pytest.raises(SessionNotFoundError):
            await store.session_info("nobody")
        with pytest.raises(SessionNotFoundError):
            await store.load("nobody")

    async def test_usage_and_summary_are_kept_current(self, store: Store) -> None:
        sid = await store.create_session(model="claude")
        await store.append(sid, Message.user("q"))
        await store.append(sid, Message.assistant("a", usage=Usage(10, 20, 3, 4)))
        await store.append(sid, Message.assistant([ToolUse("t1", "bash", "{}")], usage=Usage(1, 2)))
        info = await store.session_info(sid)
        assert info.message_count == 3
        assert info.usage == Usage(11, 22, 3, 4)
        assert info.updated_at_ms >= info.created_at_ms > 0

    # ------------------------------------------------------------------ optimistic concurrency

    async def test_stale_expected_version_conflicts(self, store: Store) -> None:
        sid = await store.create_session()
        assert await store.append(sid, Message.user("a"), expected_version=1) == 2
        with pytest.raises(ConflictError) as caught:
            await store.append(sid, Message.user("b"), expected_version=1)
        assert caught.value.expected_version == 1 and caught.value.actual_version == 2
        assert (await store.session_info(sid)).version == 2

    async def test_conflict_fails_only_that_append_of_a_batch(self, store: Store) -> None:
        sids = [await store.create_session() for _ in range(10)]
        for sid in sids:
            await store.append(sid, Message.user("first"))
        stale = sids[3]
        results = await asyncio.gather(
            *(store.append(sid, Message.user("second"), expected_version=1 if sid == stale else 2) for sid in sids),
            return_exceptions=True,
        )
        for sid, result in zip(sids, results, strict=True):
            if sid == stale:
                assert isinstance(result, ConflictError)
            else:
                assert result == 3
        assert (await store.session_info(stale)).version == 2

    async def test_two_appends_expecting_the_same_version_one_wins(self, store: Store) -> None:
        sid = await store.create_session()
        results = await asyncio.gather(
            *(store.append(sid, Message.user(str(i)), expected_version=1) for i in range(5)), return_exceptions=True
        )
        assert sum(1 for r in results if r == 2) == 1
        assert sum(1 for r in results if isinstance(r, ConflictError)) == 4
        assert (await store.session_info(sid)).version == 2

    # ------------------------------------------------------------------ idempotency

    async def test_retry_with_event_ids_is_stored_once(self, store: Store) -> None:
        sid = await store.create_session()
        first = await store.append(sid, Message.user("a"), Message.user("b"), event_ids=["e1", "e2"])
        await store.append(sid, Message.user("c"))
        again = await store.append(sid, Message.user("a"), Message.user("b"), event_ids=["e1", "e2"])
        assert first == again == 3
        assert (await store.session_info(sid)).version == 4
        events = [e async for e in store.read(sid)]
        assert [e.event_id for e in events] == [None, "e1", "e2", None]

    async def test_partial_retry_is_refused(self, store: Store) -> None:
        sid = await store.create_session()
        await store.append(sid, Message.user("a"), event_ids=["x1"])
        with pytest.raises(InvalidInputError):
            await store.append(sid, Message.user("a"), Message.user("b"), event_ids=["x1", "x2"])
        assert (await store.session_info(sid)).version == 2

    async def test_retry_queued_in_the_same_batch_is_stored_once(self, store: Store) -> None:
        sid = await store.create_session()
        # Both attempts are queued before either commits (a retry after a cancelled await, say).
        first, second = await asyncio.gather(
            store.append(sid, Message.user("a"), event_ids=["same"]),
            store.append(sid, Message.user("a"), event_ids=["same"]),
        )
        assert first == second == 2
        assert [e.event_id async for e in store.read(sid)] == [None, "same"]

    async def test_an_event_id_repeated_in_one_append_is_refused(self, store: Store) -> None:
        sid = await store.create_session()
        with pytest.raises(InvalidInputError, match=r"event id 'same' is given twice") as caught:
            await store.append(sid, Message.user("x"), Message.user("y"), event_ids=["same", "same"])
        assert repr(sid) in str(caught.value)
        with pytest.raises(InvalidInputError, match="one str"):
            await store.append(sid, Message.user("x"), Message.user("y"), event_ids="ab")  # type: ignore[arg-type]
        assert (await store.session_info(sid)).version == 1  # nothing written
        # The id is still free: the next append that carries it is stored, not taken for a retry.
        assert await store.append(sid, Message.user("z"), event_ids=["same"]) == 2
        assert [(e.event_id, getattr(e.event, "text", None)) async for e in store.read(sid, after=1)] == [("same", "z")]
        # None may repeat: it is no id.
        assert await store.append(sid, Message.user("a"), Message.user("b"), event_ids=[None, None]) == 4

    async def test_an_event_id_repeated_in_one_import_is_refused(self, store: Store) -> None:
        started = SessionStarted(1)
        events = [Message.user("x"), Message.user("y")]
        with pytest.raises(InvalidInputError, match=r"'imported'.*event id 'same' is given twice"):
            await store._import_session("imported", started, events, timestamp_ms=1, event_ids=["same", "same"])
        with pytest.raises(SessionNotFoundError):
            await store.session_info("imported")  # nothing half-created
        assert await store._import_session("imported", started, events, timestamp_ms=1, event_ids=["a", "b"]) == 3

    async def test_event_ids_are_per_session(self, store: Store) -> None:
        a = await store.create_session()
        b = await store.create_session()
        assert await store.append(a, Message.user("x"), event_ids=["same"]) == 2
        assert await store.append(b, Message.user("x"), event_ids=["same"]) == 2
        assert (await store.session_info(b)).version == 2

    async def test_retry_is_recognised_after_reopen(self, backend_factory: BackendFactory) -> None:
        async with open_store(backend_factory()) as store:
            sid = await store.create_session()
            version = await store.append(sid, Message.user("once"), event_ids=["only"])
        async with open_store(backend_factory()) as store:
            assert await store.append(sid, Message.user("once"), event_ids=["only"]) == version
            assert (await store.session_info(sid)).version == version

    # ------------------------------------------------------------------ forks and time travel

    async def test_fork_shares_history_without_copying(self, store: Store) -> None:
        parent = await store.create_session(model="m")
        for i in range(4):
            await store.append(parent, Message.user(f"p{i}"))
        child = await store.fork(parent, at_version=3, branch_name="alt")
        await store.append(parent, Message.user("parent only"))
        await store.append(child, Message.user("child only"))
        info = await store.session_info(child)
        assert info.fork is not None
        assert (info.fork.parent_session_id, info.fork.branch_name, info.fork.parent_version) == (parent, "alt", 3)
        assert info.version == 5 and info.message_count == 3 and info.model == "m"
        own = await store.backend.read_session(child, 0, None)
        assert [e.version for e in own] == [4, 5]  # only the child's own events are stored under it
        events = [e async for e in store.read(child)]
        assert [(e.session_id, e.version) for e in events] == [
            (parent, 1),
            (parent, 2),
            (parent, 3),
            (child, 4),
            (child, 5),
        ]
        session = await store.load(child)
        assert [m.text for m in session.messages] == ["p0", "p1", "child only"]
        assert [m.text for m in (await store.load(parent)).messages][-1] == "parent only"

    async def test_fork_of_a_fork(self, store: Store) -> None:
        root = await store.create_session()
        await store.append(root, Message.user("r"))
        child = await store.fork(root)
        await store.append(child, Message.user("c"))
        grandchild = await store.fork(child)
        await store.append(grandchild, Message.user("g"))
        assert [m.text for m in (await store.load(grandchild)).messages] == ["r", "c", "g"]
        assert (await store.session_info(grandchild)).version == 6

    async def test_time_travel_loads_past_versions(self, store: Store) -> None:
        sid = await store.create_session()
        for i in range(6):
            await store.append(sid, Message.user(str(i)))
        for version in range(1, 8):
            session = await store.load(sid, at_version=version)
            assert [m.text for m in session.messages] == [str(i) for i in range(version - 1)]
        with pytest.raises(InvalidInputError):
            await store.load(sid, at_version=8)
        window = [e.version async for e in store.read(sid, after=2, up_to=5)]
        assert window == [3, 4, 5]

    async def test_conversation_compaction_updates_the_summary(self, store: Store) -> None:
        sid = await store.create_session()
        for i in range(6):
            await store.append(sid, Message.user(str(i)))
        await store.record_compaction(sid, summary="earlier", removed_message_count=4)
        info = await store.session_info(sid)
        assert info.compacted and info.message_count == 3
        await store.append(sid, Message.user("after"))
        await store.record_compaction(sid, summary="again", removed_message_count=2)
        info = await store.session_info(sid)
        session = await store.load(sid)
        assert info.message_count == len(session.messages) == 2
        assert len((await store.load(sid, at_version=7)).messages) == 6

    # ------------------------------------------------------------------ delete and list

    async def test_a_compaction_of_more_messages_than_the_live_context_is_refused(self, store: Store) -> None:
        sid = await store.create_session()
        await store.append(sid, Message.user("a"), Message.user("b"), Message.user("c"))
        with pytest.raises(InvalidInputError, match=r"has 3 live message\(s\).*cannot remove 1000000") as caught:
            await store.record_compaction(sid, summary="s", removed_message_count=10**6)
        assert repr(sid) in str(caught.value)
        with pytest.raises(InvalidInputError, match=r"has 4 live message\(s\) before events\[1\].*cannot remove 5"):
            await store.append(sid, Message.user("d"), Compacted("s", 5))
        assert (await store.session_info(sid)).version == 4  # nothing written
        assert [m.text for m in (await store.load(sid)).messages] == ["a", "b", "c"]
        assert await store.record_compaction(sid, summary="all", removed_message_count=3) == 5
        # Only the summary is live now, and a summary is not a removable message.
        with pytest.raises(InvalidInputError, match="has 0 live"):
            await store.record_compaction(sid, summary="more", removed_message_count=1)
        # A fork counts the live messages it inherited.
        child = await store.fork(sid, at_version=4)
        with pytest.raises(InvalidInputError, match="has 3 live"):
            await store.record_compaction(child, summary="c", removed_message_count=4)
        assert await store.record_compaction(child, summary="c", removed_message_count=3) == 6
        # Versions past the head are refused as well, naming the ones that exist.
        with pytest.raises(InvalidInputError, match=r"versions 0\.\.5"):
            await store.fork(sid, at_version=6)
        with pytest.raises(InvalidInputError, match=r"versions 0\.\.5"):
            await store.load(sid, at_version=6)

    async def test_concurrent_compactions_are_checked_against_each_other(self, store: Store) -> None:
        # The backend checks each flagged compaction (AppendRequest.full_check) as it commits: a check
        # made before the batch would let all of these remove the same four messages.
        sid = await store.create_session()
        await store.append(sid, *[Message.user(f"m{i}") for i in range(4)])
        results = await asyncio.gather(
            *[store.record_compaction(sid, summary=f"s{k}", removed_message_count=4) for k in range(3)],
            return_exceptions=True,
        )
        assert sum(1 for r in results if isinstance(r, int)) == 1, results
        assert all(isinstance(r, int | InvalidInputError) for r in results), results
        assert (await store.session_info(sid)).message_count == 1  # the summary alone

    async def test_delete_hides_the_session(self, store: Store) -> None:
        keep = await store.create_session()
        gone = await store.create_session()
        await store.append(gone, Message.user("x"))
        await store.delete_session(gone)
        with pytest.raises(SessionNotFoundError):
            await store.session_info(gone)
        with pytest.raises(SessionNotFoundError):
            await store.append(gone, Message.user("y"))
        with pytest.raises(SessionNotFoundError):
            await store.delete_session(gone)
        with pytest.raises(SessionExistsError):
            await store.create_session(session_id=gone)
        assert [info.session_id for info in await store.list_sessions()] == [keep]
        deleted = await store.backend.info(gone)
        assert deleted is not None and deleted.deleted

    async def test_list_sessions_shows_every_live_session(self, store: Store) -> None:
        sids = {await store.create_session(model=f"m{i}") for i in range(12)}
        for i, sid in enumerate(sorted(sids)):
            for _ in range(i):
                await store.append(sid, Message.user("x"))
        listed = await store.list_sessions()
        assert {info.session_id for info in listed} == sids
        assert {info.session_id: info.message_count for info in listed} == {
            sid: i for i, sid in enumerate(sorted(sids))
        }
        assert [i.updated_at_ms for i in listed] == sorted((i.updated_at_ms for i in listed), reverse=True)

    # ------------------------------------------------------------------ the store-wide order

    async def test_read_all_returns_every_event_once_in_position_order(self, store: Store) -> None:
        sids = [await store.create_session() for _ in range(8)]
        await asyncio.gather(*(store.append(sid, Message.user(f"{sid}:{n}")) for n in range(5) for sid in sids))
        seen: list[RecordedEvent] = []
        after = 0
        while True:
            page = await store.read_all(after=after, limit=7)
            if not page:
                break
            assert len(page) <= 7
            seen += page
            after = page[-1].position
        positions = [e.position for e in seen]
        assert positions == sorted(positions) and len(set(positions)) == len(positions)
        assert len(seen) == 8 * 6
        for sid in sids:
            assert [e.version for e in seen if e.session_id == sid] == list(range(1, 7))
        assert store.backend.last_position >= positions[-1]
        assert await store.read_all(after=positions[-1]) == []

    async def test_positions_match_read(self, store: Store) -> None:
        sid = await store.create_session()
        await store.append(sid, Message.user("a"), Message.user("b"))
        by_read = [(e.version, e.position) async for e in store.read(sid)]
        by_all = [(e.version, e.position) for e in await store.read_all() if e.session_id == sid]
        assert by_read == by_all

    # ------------------------------------------------------------------ limits and durability

    async def test_event_over_the_size_limit_is_refused_alone(self, backend_factory: BackendFactory) -> None:
        async with open_store(backend_factory(max_event_bytes=2_000)) as store:
            sid = await store.create_session()
            results = await asyncio.gather(
                store.append(sid, Message.user("x" * 5_000)),
                store.append(sid, Message.user("small")),
                return_exceptions=True,
            )
            assert isinstance(results[0], EventTooLargeError) and results[1] == 2
            with pytest.raises(EventTooLargeError):
                await store.append(sid, Message.user("ok"), Message.user("y" * 5_000))
            assert (await store.session_info(sid)).version == 2

    async def test_unencodable_event_fails_alone(self, store: Store) -> None:
        sid = await store.create_session()
        results = await asyncio.gather(
            store.append(sid, Custom("bad", object())), store.append(sid, Message.user("fine")), return_exceptions=True
        )
        assert isinstance(results[0], InvalidInputError) and results[1] == 2
        assert await store.append(sid, Message.user("still open")) == 3

    async def test_everything_acknowledged_survives_reopen(self, backend_factory: BackendFactory) -> None:
        async with open_store(backend_factory()) as store:
            sids = [await store.create_session(model="m") for _ in range(5)]
            await asyncio.gather(*(store.append(sid, Message.user(str(i))) for i in range(10) for sid in sids))
            child = await store.fork(sids[0], at_version=4)
            await store.append(child, Message.user("c"))
            await store.delete_session(sids[4])
            before = {info.session_id: info for info in await store.list_sessions()}
            everything = await store.read_all(limit=100_000)
        async with open_store(backend_factory()) as store:
            after = {info.session_id: info for info in await store.list_sessions()}
            assert after == before
            assert await store.read_all(limit=100_000) == everything
            assert [m.text for m in (await store.load(child)).messages] == ["0", "1", "2", "c"]
            assert await store.append(sids[0], Message.user("more")) == 12

    async def test_snapshots_round_trip(self, store: Store) -> None:
        backend = store.backend
        if not backend.supports_snapshots:
            pytest.skip("this backend keeps no snapshots")
        sid = await store.create_session()
        assert await backend.write_snapshot(sid, 1, b"state one")
        assert await backend.read_snapshot(sid, 5) == (1, b"state one")
        assert await backend.write_snapshot(sid, 3, b"state three")
        assert await backend.read_snapshot(sid, 5) == (3, b"state three")
        # Never a snapshot newer than asked for (a backend may keep only the newest).
        assert await backend.read_snapshot(sid, 2) in (None, (1, b"state one"))
        assert backend.snapshot_versions()[sid][0] == 3
        assert await backend.read_snapshot("no-such-session", 5) is None

    async def test_closed_store_refuses_appends(self, backend_factory: BackendFactory) -> None:
        store = open_store(backend_factory())
        await store.start()
        sid = await store.create_session()
        await store.aclose()
        await store.aclose()
        with pytest.raises(Exception, match="closed"):
            await store.append(sid, Message.user("late"))


__all__ = ["BackendConformance", "BackendFactory"]
