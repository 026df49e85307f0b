"""Snapshots: snapshot + tail == full replay, for the Session and for user projections, forks included."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sessiondb
from sessiondb import CompactionSettings, Custom, Message, Projection, RecordedEvent, Text, ToolResult, ToolUse, Usage
from sessiondb._projection import replay_session

pytestmark = pytest.mark.anyio

EAGER = CompactionSettings(background=False, min_tail_events=1, min_tail_bytes=1, state_ratio=0.0, keep_segments=None)


class Totals(msgspec.Struct):
    events: int = 0
    input_tokens: int = 0
    tools: list[str] = msgspec.field(default_factory=list)


def _fold(state: Totals, recorded: RecordedEvent) -> Totals:
    event = recorded.event
    state.events += 1
    if isinstance(event, Message):
        if event.usage is not None:
            state.input_tokens += event.usage.input_tokens
        state.tools += [b.name for b in event.blocks if isinstance(b, ToolUse)]
    return state


TOTALS = Projection("totals", lambda sid: Totals(), _fold, state_type=Totals)

# Histories: messages (with tool pairs and usage), prompts, custom events, conversation compactions.
_step = st.one_of(
    st.tuples(st.just("user"), st.text(max_size=30)),
    st.tuples(st.just("assistant"), st.integers(0, 5000)),
    st.tuples(st.just("tool"), st.text(max_size=10)),
    st.tuples(st.just("prompt"), st.text(max_size=10)),
    st.tuples(st.just("custom"), st.integers()),
    st.tuples(st.just("compact"), st.integers(0, 6)),
    st.tuples(st.just("snapshot"), st.none()),
)


async def _apply(store: sessiondb.Store, sid: str, step: tuple[str, Any], n: int) -> None:
    kind, value = step
    if kind == "user":
        await store.append(sid, Message.user(value or "x"))
    elif kind == "assistant":
        await store.append(sid, Message.assistant(f"answer {n}", usage=Usage(value, value // 2)))
    elif kind == "tool":
        use = Message("assistant", [ToolUse(f"t{n}", "read_file", '{"path": "src/a.py"}')])
        await store.append(sid, use, Message.tool_result(f"t{n}", "read_file", value))
    elif kind == "prompt":
        await store.record_prompt(sid, value)
    elif kind == "custom":
        await store.append(sid, Custom("note", {"n": value}))
    elif kind == "compact":
        with contextlib.suppress(sessiondb.InvalidInputError):  # nothing to compact yet
            await store.compact_conversation(sid, keep_last=value)
    elif kind == "snapshot":
        await store.compact()


async def _full_replay(store: sessiondb.Store, sid: str, at: int | None = None) -> sessiondb.Session:
    events = [e async for e in store.read(sid, up_to=at)]
    return replay_session(sid, events)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(_step, min_size=1, max_size=30))
async def test_snapshot_plus_tail_equals_full_replay(tmp_path_factory: pytest.TempPathFactory, steps: list) -> None:
    path = tmp_path_factory.mktemp("snap")
    async with sessiondb.open_store(path, compaction=EAGER) as store:
        store.register_projection(TOTALS)
        sid = await store.create_session(model="m")
        for n, step in enumerate(steps):
            await _apply(store, sid, step, n)
        await store.compact()
        assert store.backend.snapshot_versions()[sid][0] == (await store.session_info(sid)).version
        loaded = await store.load(sid)
        assert loaded == await _full_replay(store, sid)
        # Time travel below the snapshot replays the log.
        for at in range(0, loaded.version + 1, max(1, loaded.version // 5)):
            assert await store.load(sid, at_version=at) == await _full_replay(store, sid, at)
        state = await store.project(sid, "totals")
        events = [e async for e in store.read(sid)]
        assert state == TOTALS.replay(sid, events)
    # After reopening, the projection starts from its snapshotted state.
    async with sessiondb.open_store(path, compaction=EAGER) as store:
        store.register_projection(TOTALS)
        assert await store.project(sid, "totals") == TOTALS.replay(sid, events)
        assert await store.load(sid) == loaded


async def test_load_reads_snapshot_and_only_the_tail(tmp_path: Path) -> None:
    async with sessiondb.open_store(tmp_path / "s", compaction=EAGER) as store:
        sid = await store.create_session()
        for i in range(50):
            await store.append(sid, Message.user(f"m{i}"))
        await store.compact()
        reads: list[tuple[int, int | None]] = []
        original = store.backend.read_session

        async def spy(session_id: str, after: int, up_to: int | None) -> list[RecordedEvent]:
            reads.append((after, up_to))
            return await original(session_id, after, up_to)

        store.backend.read_session = spy  # type: ignore[method-assign]
        await store.append(sid, Message.user("tail"))
        session = await store.load(sid)
        assert reads == [(51, 52)]  # only the event after the snapshot at version 51
        assert [m.text for m in session.messages][-2:] == ["m49", "tail"]


async def test_fork_snapshot_covers_inherited_history(tmp_path: Path) -> None:
    async with sessiondb.open_store(tmp_path / "s", compaction=EAGER) as store:
        parent = await store.create_session()
        for i in range(10):
            await store.append(parent, Message.user(f"p{i}"))
        child = await store.fork(parent, branch_name="b")
        await store.append(child, Message.user("c0"))
        await store.compact()
        payload = await store._snapshot_payload(child, 100)
        assert payload is not None and next(m.text for m in payload.session.messages) == "p0"
        assert await store.load(child) == await _full_replay(store, child)
        assert (await store.load(child)).fork is not None


async def test_threshold_is_relative_to_state_size(tmp_path: Path) -> None:
    """A large state is not rewritten for a small tail."""
    settings_ = CompactionSettings(background=False, min_tail_events=10, min_tail_bytes=10**9, keep_segments=None)
    async with sessiondb.open_store(tmp_path / "s", compaction=settings_) as store:
        sid = await store.create_session()
        for i in range(200):
            await store.append(sid, Message.user(f"message {i} " + "x" * 100))
        assert (await store.compact())["snapshots_written"] == 1
        for _ in range(20):  # 20 events: past min_tail_events, but ~10% of the state
            await store.append(sid, Message.user("more " + "x" * 100))
        assert (await store.compact())["snapshots_written"] == 0
        for _ in range(200):
            await store.append(sid, Message.user("more " + "x" * 100))
        assert (await store.compact())["snapshots_written"] == 1


async def test_damaged_snapshot_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "s"
    async with sessiondb.open_store(path, compaction=EAGER) as store:
        sid = await store.create_session()
        for i in range(20):
            await store.append(sid, Message("user", [Text(f"m{i}")]))
        await store.compact()
        expected = await store.load(sid)
    snapshot = next(path.glob("snapshot-*.snap"))
    data = bytearray(snapshot.read_bytes())
    data[-10] ^= 0x01
    snapshot.write_bytes(bytes(data))
    async with sessiondb.open_store(path, compaction=EAGER) as store:
        assert await store.load(sid) == expected  # replayed from the log
        assert store.statistics()["snapshots_damaged"] >= 1


async def test_tool_result_pair_in_snapshot_round_trips(tmp_path: Path) -> None:
    async with sessiondb.open_store(tmp_path / "s", compaction=EAGER) as store:
        sid = await store.create_session()
        await store.append(
            sid, Message("assistant", [ToolUse("1", "bash", "ls")]), Message("tool", [ToolResult("1", "bash", "ok")])
        )
        await store.compact()
        assert await store.load(sid) == await _full_replay(store, sid)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(_step, min_size=1, max_size=30))
async def test_fast_replay_equals_event_by_event_fold(tmp_path_factory: pytest.TempPathFactory, steps: list) -> None:
    """replay_session's inlined message path (usage summed once) folds exactly like apply_to_session."""
    from sessiondb._projection import Session, apply_to_session

    path = tmp_path_factory.mktemp("fold")
    async with sessiondb.open_store(path, compaction=EAGER) as store:
        sid = await store.create_session(model="m")
        for n, step in enumerate(steps):
            if step[0] != "snapshot":
                await _apply(store, sid, step, n)
        events = [e async for e in store.read(sid)]
    one_by_one = Session(sid)
    for recorded in events:
        apply_to_session(one_by_one, recorded)
    assert replay_session(sid, events) == one_by_one
    half = len(events) // 2
    assert replay_session(sid, events[half:], replay_session(sid, events[:half])) == one_by_one


async def test_a_damaged_newest_snapshot_falls_back_to_the_older_one(tmp_path: Path) -> None:
    path = tmp_path / "s"
    async with sessiondb.open_store(path, compaction=EAGER) as store:
        sid = await store.create_session()
        for i in range(50):
            await store.append(sid, Message.user(f"m{i}"))
        await store.compact()  # snapshot at version 51
        for i in range(50, 100):
            await store.append(sid, Message.user(f"m{i}"))
        await store.compact()  # snapshot at version 101; the one at 51 stays (its tail is retained)
        assert sorted(v for v, _ in store.backend.snapshots.older[sid]) == [51]  # type: ignore[attr-defined]
        expected = await store.load(sid)
    newest = max(path.glob("snapshot-*.snap"))
    data = bytearray(newest.read_bytes())
    data[-10] ^= 0x01
    newest.write_bytes(bytes(data))
    async with sessiondb.open_store(path, compaction=EAGER) as store:
        reads: list[int] = []
        original = store.backend.read_session

        async def spy(session_id: str, after: int, up_to: int | None) -> list[RecordedEvent]:
            reads.append(after)
            return await original(session_id, after, up_to)

        store.backend.read_session = spy  # type: ignore[method-assign]
        assert await store.load(sid) == expected
        assert reads == [51]  # from the older snapshot, not from the start of the log
