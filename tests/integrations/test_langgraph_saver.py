"""SessionDBSaver beyond the conformance suite: thread ids, cross-thread filters, the metadata index, errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from langgraph.checkpoint.conformance.test_utils import generate_checkpoint, generate_config, generate_metadata

import sessiondb
from sessiondb.integrations._langgraph_state import thread_of, thread_session_id
from sessiondb.integrations.langgraph import SessionDBSaver

pytestmark = pytest.mark.anyio


@given(st.text(min_size=1, max_size=60))
def test_thread_ids_map_to_valid_session_ids_and_back(thread_id: str) -> None:
    try:
        session_id = thread_session_id(thread_id)
    except sessiondb.InvalidInputError:
        assert len(thread_id.encode("utf-8", "surrogatepass")) > 60  # only ids too long once escaped
        return
    sessiondb._ids.validate_session_id(session_id)  # type: ignore[attr-defined]
    assert thread_of(session_id) == thread_id
    assert thread_of(session_id + "~~7") == thread_id  # a later generation


def test_a_thread_id_too_long_is_refused_with_its_name() -> None:
    with pytest.raises(sessiondb.InvalidInputError, match="use a shorter thread_id"):
        thread_session_id("x" * 300)


def test_the_thread_id_limit_is_said_in_the_thread_ids_terms() -> None:
    """docs/langgraph.md: up to 215 bytes once escaped; the error counts the thread id, not the session id."""
    assert thread_session_id("a" * 215) == "lg~" + "a" * 215
    with pytest.raises(sessiondb.InvalidInputError) as caught:
        thread_session_id("a" * 216)
    assert "is 216 bytes once escaped; a thread id may have at most 215" in str(caught.value)
    with pytest.raises(sessiondb.InvalidInputError, match="is 240 bytes once escaped"):
        thread_session_id("é" * 40)  # 2 UTF-8 bytes each, %XX each


async def _put(saver: SessionDBSaver, thread_id: str, **metadata: Any) -> dict[str, Any]:
    stored = await saver.aput(generate_config(thread_id), generate_checkpoint(), generate_metadata(**metadata), {})
    return dict(stored)


async def test_filters_across_threads_use_the_index_and_agree_with_decoding(tmp_path: Path) -> None:
    async with sessiondb.open_store(tmp_path / "store") as store:
        saver = SessionDBSaver(store)
        await _put(saver, "a", step=1, user="ann", score=1)
        await _put(saver, "a", step=2, user="bob", score=1.0, tags=["x"])
        await _put(saver, "b", step=1, user="ann", score=True, nested={"k": 1})
        await _put(saver, "c", step=3, user="ann", big=2**62 + 1)

        async def threads(**filter: Any) -> list[tuple[str, int]]:
            return sorted(
                [
                    (t.config["configurable"]["thread_id"], t.metadata["step"])
                    async for t in saver.alist(None, filter=filter)
                ]
            )

        assert await threads(user="ann") == [("a", 1), ("b", 1), ("c", 3)]
        assert await threads(user="ann", step=1) == [("a", 1), ("b", 1)]
        assert await threads(score=1) == [("a", 1), ("a", 2), ("b", 1)]  # 1 == 1.0 == True, as in Python
        assert await threads(tags=["x"]) == [("a", 2)]  # a list: checked by decoding
        assert await threads(nested={"k": 1}) == [("b", 1)]
        assert await threads(big=2**62 + 1) == [("c", 3)]
        assert await threads(big=2**62) == []  # the same hash (as floats they are equal): decoding tells them apart
        assert await threads(missing=None) == [("a", 1), ("a", 2), ("b", 1), ("c", 3)]  # as metadata.get(k)
        assert await threads(user="nobody") == []
        newest_first = [t.config["configurable"]["thread_id"] async for t in saver.alist(None, limit=2)]
        assert newest_first == ["c", "b"]


async def test_a_config_without_thread_id_says_what_is_missing(tmp_path: Path) -> None:
    async with sessiondb.open_store(tmp_path / "store") as store:
        saver = SessionDBSaver(store)
        with pytest.raises(sessiondb.InvalidInputError, match=r"configurable\.thread_id"):
            await saver.aget_tuple({"configurable": {}})
        with pytest.raises(sessiondb.InvalidInputError, match="strategy"):
            await saver.aprune(["t"], strategy="oldest")
        with pytest.raises(sessiondb.InvalidInputError, match=r"checkpoint_id, as aput returns it"):
            await saver.aput_writes(generate_config("t"), [("ch", 1)], "task")
        assert await store.list_sessions() == []  # nothing was written


async def test_copy_onto_a_thread_with_checkpoints_is_refused(tmp_path: Path) -> None:
    async with sessiondb.open_store(tmp_path / "store") as store:
        saver = SessionDBSaver(store)
        await _put(saver, "src")
        await _put(saver, "dst")
        with pytest.raises(sessiondb.InvalidInputError, match="already has checkpoints"):
            await saver.acopy_thread("src", "dst")
        await saver.adelete_thread("dst")
        await saver.acopy_thread("src", "dst")  # a deleted thread's id takes the copy (a new generation)
        assert (await saver.aget_tuple(generate_config("dst"))) is not None
        assert sorted(s.session_id for s in await store.list_sessions()) == ["lg~dst~~2", "lg~src"]


async def test_threads_are_the_langgraph_scope_and_other_sessions_are_not_threads(tmp_path: Path) -> None:
    async with sessiondb.open_store(tmp_path / "store") as store:
        saver = SessionDBSaver(store)
        await _put(saver, "t1", step=1)
        await saver.acopy_thread("t1", "t2")  # a fork inherits the scope
        # An application's own session, even one whose id looks like a thread's, is not listed as a thread.
        await store.create_session(session_id="lg~mine")
        assert sorted(s.session_id for s in await store.list_sessions(scope="langgraph")) == ["lg~t1", "lg~t2"]
        listed = sorted({t.config["configurable"]["thread_id"] async for t in saver.alist(None)})
        assert listed == ["t1", "t2"]


async def test_writes_from_another_process_are_seen(tmp_path: Path) -> None:
    """Two stores on one directory (as two processes have): a checkpoint one writes, the other reads."""
    async with sessiondb.open_store(tmp_path / "store") as first, sessiondb.open_store(tmp_path / "store") as second:
        writer, reader = SessionDBSaver(first), SessionDBSaver(second)
        await _put(writer, "shared", step=1)
        assert (await reader.aget_tuple(generate_config("shared"))).metadata["step"] == 1  # type: ignore[union-attr]
        await _put(writer, "shared", step=2)
        assert (await reader.aget_tuple(generate_config("shared"))).metadata["step"] == 2  # type: ignore[union-attr]


async def test_snapshot_plus_tail_equals_full_replay(tmp_path: Path) -> None:
    """The thread projection from the compactor's snapshot and the events after it equals a replay of all events."""
    import msgspec

    from sessiondb.integrations._langgraph_state import PROJECTION

    settings = sessiondb.CompactionSettings(background=False, min_tail_events=5, keep_segments=None)
    path = tmp_path / "store"
    async with sessiondb.open_store(path, compaction=settings) as store:
        saver = SessionDBSaver(store)
        for round_ in range(4):
            parent: dict[str, Any] | None = None
            for step in range(6):
                config = generate_config("t", checkpoint_ns="" if step % 3 else "child:1")
                if (
                    parent is not None
                    and parent["configurable"]["checkpoint_ns"] == config["configurable"]["checkpoint_ns"]
                ):
                    config["configurable"]["checkpoint_id"] = parent["configurable"]["checkpoint_id"]
                checkpoint = generate_checkpoint(channel_values={"v": f"{round_}-{step}"}, channel_versions={"v": step})
                metadata = generate_metadata(step=step, run_id=f"run-{round_}")
                parent = dict(await saver.aput(config, checkpoint, metadata, {"v": step}))
                await saver.aput_writes(parent, [("ch", step), ("__error__", "e")], f"task-{step}")
            if round_ == 1:
                await saver.aprune(["t"])
            if round_ == 2:
                await saver.adelete_for_runs(["run-0", "run-2"])
            await store.compact()  # a snapshot mid-history
        assert store.backend.snapshot_versions()["lg~t"][0] > 0
        await saver.aput(generate_config("t"), generate_checkpoint(), generate_metadata(step=99), {})  # a tail
        events = [event async for event in store.read("lg~t")]
        replayed = PROJECTION.replay("lg~t", events)
    async with sessiondb.open_store(path, compaction=settings) as store:
        saver = SessionDBSaver(store)  # registers the projection
        from_snapshot = await store.project("lg~t", PROJECTION)
        assert msgspec.json.encode(from_snapshot) == msgspec.json.encode(replayed)
        listed = [
            (t.config["configurable"]["checkpoint_ns"], t.metadata["step"])
            async for t in saver.alist(generate_config("t"))
        ]
        assert listed[0] == ("", 99) and len(listed) > 2


def test_sync_calls_on_a_store_never_started_say_how_to_start_it(tmp_path: Path) -> None:
    store = sessiondb.open_store(tmp_path / "store")  # opened, never started (no `async with`, no start())
    saver = SessionDBSaver(store)
    with pytest.raises(sessiondb.StoreLoopError, match=r"not started: use `async with sessiondb.open_store"):
        saver.get_tuple(generate_config("t"))


async def test_every_saver_call_on_a_store_not_started_or_closed_raises_the_stores_error(tmp_path: Path) -> None:
    """The saver reads through the Store, so it refuses as the Store does, never answers None or [] instead."""
    store = sessiondb.open_store(tmp_path / "store")
    saver = SessionDBSaver(store)
    config = generate_config("t")
    for error in (sessiondb.StoreNotStartedError, sessiondb.StoreClosedError):
        with pytest.raises(error):
            await saver.aget_tuple(config)
        with pytest.raises(error):
            [item async for item in saver.alist(config)]
        with pytest.raises(error):
            [item async for item in saver.alist(None)]
        with pytest.raises(error):
            await saver.aput(config, generate_checkpoint(), generate_metadata(), {})
        with pytest.raises(error):
            await saver.aput_writes(generate_config("t", checkpoint_id="1"), [("channel", 1)], "task")
        with pytest.raises(error):
            await saver.aput_writes(generate_config("t", checkpoint_id="1"), [], "task")
        with pytest.raises(error):
            await saver.adelete_thread("t")
        with pytest.raises(error):
            await saver.adelete_for_runs([])
        with pytest.raises(error):
            await saver.acopy_thread("t", "u")
        with pytest.raises(error):
            await saver.aprune([])
        if error is sessiondb.StoreNotStartedError:
            async with store:
                await _put(saver, "t")  # a thread the saver has seen: a cached session id must not skip the check
                assert await saver.aget_tuple(config) is not None


async def test_a_thread_with_no_checkpoint_yet_holds_0_checkpoints_not_0_messages(tmp_path: Path) -> None:
    from sessiondb._counts import describe

    async with sessiondb.open_store(tmp_path / "store") as store:
        saver = SessionDBSaver(store)
        await saver.aput_writes(
            generate_config("w", checkpoint_id="1"), [("channel", 1)], "task"
        )  # pending writes before any checkpoint
        info = await store.session_info(thread_session_id("w"))
        assert info.checkpoint_count == 0 and info.scope == "langgraph"
        assert describe(info.message_count, info.item_count, info.checkpoint_count, scope=info.scope) == (
            "0 checkpoints"
        )
