"""Codec round trips: every block and event type, awkward text included, through msgspec and through stores."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sessiondb
from sessiondb import (
    Compacted,
    Custom,
    Event,
    Message,
    PromptRecorded,
    RecordedEvent,
    Session,
    SessionInfo,
    Text,
    Thinking,
    ToolResult,
    ToolUse,
    Usage,
)
from sessiondb._projection import replay_session

from ._strategies import AWKWARD, any_event, block, storable_event, user_event

pytestmark = pytest.mark.anyio
FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
STORE = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ------------------------------------------------------------------ msgspec


@FAST
@given(any_event)
def test_json_round_trip(event: Event) -> None:
    encoded = msgspec.json.encode(event)
    assert msgspec.json.decode(encoded, type=Event) == event
    # One JSONL record per event: the encoding never holds a raw line break.
    assert b"\n" not in encoded and b"\r" not in encoded


@FAST
@given(any_event)
def test_builtins_round_trip(event: Event) -> None:
    plain = msgspec.to_builtins(event)
    assert isinstance(plain, dict) and isinstance(plain["type"], str)
    # Plain data survives a trip through the standard library's json too.
    assert msgspec.convert(json.loads(json.dumps(plain)), Event) == event
    assert msgspec.convert(plain, type(event)) == event


@FAST
@given(block)
def test_block_round_trip(value: Text | Thinking | ToolUse | ToolResult) -> None:
    plain = msgspec.to_builtins(value)
    assert plain["type"] in {"text", "thinking", "tool_use", "tool_result"}
    assert msgspec.convert(plain, Text | Thinking | ToolUse | ToolResult) == value


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(user_event, max_size=12), st.integers(1, 2**40), st.text(max_size=10))
def test_recorded_event_and_session_round_trip(events: list[Event], timestamp: int, sid: str) -> None:
    recorded = [RecordedEvent(sid or "s", i + 1, i + 7, timestamp, e, f"id-{i}") for i, e in enumerate(events)]
    for one in recorded:
        assert msgspec.convert(msgspec.to_builtins(one), RecordedEvent) == one
        assert msgspec.json.decode(msgspec.json.encode(one), type=RecordedEvent) == one
    session = replay_session(sid or "s", recorded)
    assert msgspec.convert(msgspec.to_builtins(session), Session) == session
    assert msgspec.json.decode(msgspec.json.encode(session), type=Session) == session


def test_users_build_events_from_dicts() -> None:
    message = msgspec.convert(
        {
            "type": "message",
            "role": "assistant",
            "blocks": [
                {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                {"type": "tool_use", "id": "t1", "name": "bash", "input": '{"cmd":"ls"}'},
            ],
            "usage": {"input_tokens": 3, "output_tokens": 4},
        },
        Event,
    )
    assert message == Message.assistant(
        [Thinking("hmm", "sig"), ToolUse("t1", "bash", '{"cmd":"ls"}')], usage=Usage(3, 4)
    )
    assert msgspec.convert({"type": "prompt", "text": "p", "timestamp_ms": 5}, Event) == PromptRecorded("p", 5)
    assert msgspec.convert({"type": "compaction", "summary": "s", "removed_message_count": 2}, Event) == Compacted(
        "s", 2
    )
    assert msgspec.convert({"type": "custom", "name": "n", "data": {"k": [1]}}, Event) == Custom("n", {"k": [1]})
    assert msgspec.to_builtins(Message.tool_result("t1", "bash", "out")) == {
        "type": "message",
        "role": "tool",
        "blocks": [
            {"type": "tool_result", "tool_use_id": "t1", "tool_name": "bash", "output": "out", "is_error": False}
        ],
        "usage": None,
    }


@pytest.mark.parametrize(
    "plain",
    [
        {"type": "message", "role": "robot", "blocks": []},
        {"type": "message", "role": "user", "blocks": [{"type": "image", "url": "x"}]},
        {"type": "message", "role": "user", "blocks": [{"type": "text", "text": 5}]},
        {"type": "message", "role": "user", "blocks": [], "usage": {"input_tokens": -1}},
        {"type": "compaction", "summary": "s", "removed_message_count": -3},
        {"type": "prompt", "text": "p"},
        {"type": "no_such_event"},
    ],
)
def test_invalid_plain_data_is_refused(plain: dict[str, object]) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(plain, Event)


def test_session_info_round_trip() -> None:
    info = SessionInfo("s", 1, 2, 3, 4, 5, 6, 7, 8, "m", "/w", sessiondb.Fork("p", "b", 2), False, True)
    assert msgspec.convert(msgspec.to_builtins(info), SessionInfo) == info


# ------------------------------------------------------------------ through stores


async def _append_all(store: sessiondb.Store, sid: str, events: list[Event], split: list[bool]) -> None:
    """Append ``events``: runs of them as one atomic append where ``split`` says so."""
    run: list[Event] = []
    for index, event in enumerate(events):
        run.append(event)
        if index < len(split) and split[index]:
            await store.append(sid, *run)
            run = []
    if run:
        await store.append(sid, *run)


async def _stored(store: sessiondb.Store, sid: str) -> list[RecordedEvent]:
    return [e async for e in store.read(sid)]


def _check(recorded: list[RecordedEvent], sid: str, events: list[Event]) -> None:
    assert [r.event for r in recorded[1:]] == events
    assert [r.version for r in recorded] == list(range(1, len(events) + 2))
    assert all(r.session_id == sid for r in recorded)


@STORE
@given(st.lists(storable_event, min_size=1, max_size=8), st.lists(st.booleans(), max_size=8))
async def test_memory_store_round_trip(events: list[Event], split: list[bool]) -> None:
    async with sessiondb.open_store(":memory:") as store:
        sid = await store.create_session(model="\u2028m\x7f", workspace_root="/\U0001f600")
        await _append_all(store, sid, events, split)
        _check(await _stored(store, sid), sid, events)
        session = await store.load(sid)
        assert session.model == "\u2028m\x7f" and session.workspace_root == "/\U0001f600"
        assert session.version == len(events) + 1


@STORE
@given(st.lists(storable_event, min_size=1, max_size=8), st.lists(st.booleans(), max_size=8))
async def test_directory_store_round_trip_after_reopen(events: list[Event], split: list[bool]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "store"
        async with sessiondb.open_store(path) as store:
            sid = await store.create_session()
            await _append_all(store, sid, events, split)
            before = await _stored(store, sid)
            loaded_before = await store.load(sid)
        async with sessiondb.open_store(path) as store:
            after = await _stored(store, sid)
            _check(after, sid, events)
            assert after == before
            assert await store.load(sid) == loaded_before
            assert await store.read_all() == after
        # Every line of the log is one JSON document: no awkward character broke the framing.
        for segment in path.glob("*.seg"):
            for line in segment.read_bytes().split(b"\n")[:-1]:
                json.loads(line)


async def test_huge_awkward_strings_survive_reopen(tmp_path: Path) -> None:
    huge = "".join(AWKWARD) * 20_000  # ~2 MB of control characters, separators, NULs and emoji
    events: list[Event] = [
        Message.assistant([Text(huge), Thinking(huge, huge[:999]), ToolUse(huge, "n\x00", huge)], usage=Usage(1, 2)),
        Message.tool_result("\u2028", "\x00", huge, is_error=True),
        PromptRecorded(huge, 1),
        Compacted(huge, 0),
        Custom(huge, {huge: [huge, None, 1.5, -(2**63)]}),
    ]
    async with sessiondb.open_store(tmp_path / "s", max_event_bytes=256 * 2**20) as store:
        sid = await store.create_session(session_id="emoji-\U0001f600-id")
        await store.append(sid, *events)
    async with sessiondb.open_store(tmp_path / "s", max_event_bytes=256 * 2**20) as store:
        _check(await _stored(store, sid), sid, events)
        session = await store.load(sid)
        assert session.prompt_history[0].text == huge
        assert session.compaction is not None and session.compaction.summary == huge
        assert session.usage == Usage(1, 2)
