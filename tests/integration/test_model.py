"""Random operation sequences against a plain model: create, append, prompt, compact, fork, delete, reopen.

After every reopen and at the end, every live session must load exactly what the
model says (at the head and at every earlier version), listings must match, and
deleted sessions must be gone while their forks still load.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sessiondb
from sessiondb import Compacted, Event, Fork, Message, PromptRecorded, RecordedEvent, Usage
from sessiondb._backends._memory import MemoryFileSystem
from sessiondb._projection import is_continuation_message, replay_session


@dataclass
class ModelSession:
    history: list[Event]  # the events that count for this session, a fork's inherited ones first
    fork: Fork | None = None
    deleted: bool = False
    model: str | None = None


@dataclass
class Model:
    sessions: dict[str, ModelSession] = field(default_factory=dict)

    def live(self) -> list[str]:
        return [sid for sid, s in self.sessions.items() if not s.deleted]


def _replay(sid: str, events: list[Event]) -> sessiondb.Session:
    return replay_session(sid, [RecordedEvent(sid, i + 1, i + 1, 0, e) for i, e in enumerate(events)])


def _same(actual: sessiondb.Session, expected: sessiondb.Session) -> None:
    assert actual.version == expected.version
    assert actual.messages == expected.messages
    assert actual.usage == expected.usage
    assert actual.compaction == expected.compaction
    assert [p.text for p in actual.prompt_history] == [p.text for p in expected.prompt_history]


operation = st.one_of(
    st.tuples(st.just("create"), st.sampled_from([None, "m1", "m2"])),
    st.tuples(st.just("append"), st.integers(0, 99), st.integers(1, 3), st.integers(0, 5)),
    st.tuples(st.just("append"), st.integers(0, 99), st.integers(1, 3), st.integers(0, 5)),
    st.tuples(st.just("prompt"), st.integers(0, 99)),
    st.tuples(st.just("compact"), st.integers(0, 99), st.integers(0, 5)),
    st.tuples(st.just("fork"), st.integers(0, 99), st.integers(0, 100), st.sampled_from([None, " b ", ""])),
    st.tuples(st.just("delete"), st.integers(0, 99)),
    st.tuples(st.just("reopen")),
)


async def _check(store: sessiondb.Store, model: Model, every_version: bool) -> None:
    live = model.live()
    assert sorted(i.session_id for i in await store.list_sessions()) == sorted(live)
    for sid in live:
        expected = _replay(sid, model.sessions[sid].history)
        loaded = await store.load(sid)
        _same(loaded, expected)
        assert loaded.fork == model.sessions[sid].fork and loaded.model == model.sessions[sid].model
        info = await store.session_info(sid)
        assert (info.version, info.message_count, info.usage) == (
            expected.version,
            len(expected.messages),
            expected.usage,
        )
        if every_version:
            for version in range(expected.version + 1):
                _same(await store.load(sid, at_version=version), _replay(sid, model.sessions[sid].history[:version]))
    for sid, s in model.sessions.items():
        if s.deleted:
            with pytest.raises(sessiondb.SessionNotFoundError):
                await store.load(sid)


async def _run(ops: list[tuple[Any, ...]], opener: Any) -> None:
    model = Model()
    store = opener()
    await store.start()
    try:
        for op in ops:
            live = model.live()
            kind = op[0]
            if kind == "create":
                sid = await store.create_session(model=op[1])
                model.sessions[sid] = ModelSession([sessiondb.SessionStarted(0, op[1])], model=op[1])
            elif kind == "reopen":
                await store.aclose()
                store = opener()
                await store.start()
                await _check(store, model, every_version=False)
            elif not live:
                continue
            else:
                sid = live[op[1] % len(live)]
                session = model.sessions[sid]
                if kind == "append":
                    events: list[Event] = [
                        Message.assistant(f"{sid}-{len(session.history)}-{k}", usage=Usage(op[3], 1))
                        if k % 2
                        else Message.user(f"{sid}-{len(session.history)}-{k}")
                        for k in range(op[2])
                    ]
                    version = await store.append(sid, *events, expected_version=len(session.history))
                    session.history += events
                    assert version == len(session.history)
                elif kind == "prompt":
                    await store.record_prompt(sid, f"prompt {len(session.history)}")
                    session.history.append(PromptRecorded(f"prompt {len(session.history)}", 0))
                elif kind == "compact":
                    live_messages = _replay(sid, session.history).messages
                    summary = 1 if live_messages and is_continuation_message(live_messages[0]) else 0
                    removable = len(live_messages) - summary
                    if op[2] > removable:  # more than the live context: refused, nothing written
                        with pytest.raises(sessiondb.InvalidInputError, match=f"has {removable} live message"):
                            await store.record_compaction(sid, summary="too many", removed_message_count=op[2])
                        continue
                    await store.record_compaction(
                        sid, summary=f"sum {len(session.history)}", removed_message_count=op[2]
                    )
                    session.history.append(Compacted(f"sum {len(session.history)}", op[2]))
                elif kind == "fork":
                    at = op[2] % (len(session.history) + 1)
                    child = await store.fork(sid, at_version=at, branch_name=op[3])
                    branch = op[3].strip() or None if op[3] is not None else None
                    model.sessions[child] = ModelSession(
                        [*session.history[:at], sessiondb.SessionStarted(0, session.model)],
                        fork=Fork(sid, branch, at),
                        model=session.model,
                    )
                elif kind == "delete":
                    await store.delete_session(sid)
                    session.deleted = True
        await _check(store, model, every_version=True)
    finally:
        await store.aclose()


SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(st.lists(operation, max_size=30))
def test_random_operations_in_memory(ops: list[tuple[Any, ...]]) -> None:
    file_system = MemoryFileSystem()
    asyncio.run(_run(ops, lambda: sessiondb.open_store(sessiondb.LocalBackend("/:memory:", file_system=file_system))))


@SETTINGS
@given(st.lists(operation, max_size=30))
def test_random_operations_on_disk(ops: list[tuple[Any, ...]]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(_run(ops, lambda: sessiondb.open_store(Path(directory) / "s")))


@pytest.mark.slow
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(operation, max_size=60))
def test_random_operations_on_disk_long(ops: list[tuple[Any, ...]]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(_run(ops, lambda: sessiondb.open_store(Path(directory) / "s", segment_bytes=4096)))
