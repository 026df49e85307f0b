"""Conversation compaction: an event that shrinks the live context while the history stays readable."""

from __future__ import annotations

from pathlib import Path

import pytest

import sessiondb
from sessiondb import (
    ConflictError,
    InvalidInputError,
    Message,
    TokenThresholdPolicy,
    ToolUse,
    Usage,
    plan_compaction,
    summarize_messages,
)
from sessiondb._projection import CONTINUATION_PREAMBLE, is_continuation_message

pytestmark = pytest.mark.anyio


def _use(call: str, name: str = "read_file", path: str = "src/app.py") -> Message:
    return Message("assistant", [ToolUse(call, name, f'{{"path": "{path}"}}')])


async def test_compaction_keeps_last_messages_and_history(store: sessiondb.Store) -> None:
    sid = await store.create_session()
    for i in range(10):
        await store.append(sid, Message.user(f"question {i}"), Message.assistant(f"answer {i}"))
    before = await store.load(sid)
    version = await store.compact_conversation(sid, summary="They talked about numbers.", keep_last=4)
    session = await store.load(sid)
    assert version == before.version + 1 == session.version
    assert len(session.messages) == 5
    head = session.messages[0]
    assert head.role == "system" and head.text.startswith(CONTINUATION_PREAMBLE)
    assert "They talked about numbers." in head.text
    assert session.messages[1:] == before.messages[-4:]
    assert session.compaction is not None
    assert (session.compaction.count, session.compaction.removed_message_count) == (1, 16)
    info = await store.session_info(sid)
    assert info.message_count == 5 and info.compacted
    # History stays: time travel and read show everything before it.
    assert await store.load(sid, at_version=before.version) == before
    assert len([e async for e in store.read(sid)]) == version


async def test_second_compaction_counts_and_merges_local_summary(store: sessiondb.Store) -> None:
    sid = await store.create_session()
    for i in range(8):
        await store.append(sid, Message.user(f"first round {i}"))
    await store.compact_conversation(sid, keep_last=2)
    for i in range(8):
        await store.append(sid, Message.user(f"second round {i}"))
    await store.compact_conversation(sid, keep_last=2)
    session = await store.load(sid)
    assert session.compaction is not None and session.compaction.count == 2
    assert session.compaction.removed_message_count == 8  # the 2 kept + 6 of the second round
    summary = session.compaction.summary
    assert "Previously compacted context:" in summary and "Newly compacted context:" in summary
    assert [m.text for m in session.messages[1:]] == ["second round 6", "second round 7"]
    assert (await store.session_info(sid)).message_count == 3


async def test_boundary_moves_back_to_keep_tool_pairs(store: sessiondb.Store) -> None:
    sid = await store.create_session()
    await store.append(sid, Message.user("look at the file"))
    await store.append(sid, _use("c1"), Message.tool_result("c1", "read_file", "contents"))
    await store.append(sid, Message.assistant("done"))
    # keep_last=2 would keep [tool_result, "done"] and drop the tool use: the cut moves back one.
    await store.compact_conversation(sid, summary="s", keep_last=2)
    session = await store.load(sid)
    assert session.compaction is not None and session.compaction.removed_message_count == 1
    assert isinstance(session.messages[1].blocks[0], ToolUse)
    with pytest.raises(InvalidInputError, match="separate a tool result"):
        plan_compaction(sid, session.messages, 2, move_boundary=False)


async def test_orphaned_tool_result_is_refused(store: sessiondb.Store) -> None:
    sid = await store.create_session()
    await store.append(sid, Message.user("hi"))
    await store.append(sid, Message.tool_result("nowhere", "bash", "output"))
    await store.append(sid, Message.assistant("ok"))
    with pytest.raises(InvalidInputError, match="without its tool use"):
        await store.compact_conversation(sid, summary="s", keep_last=2)
    assert (await store.load(sid)).compaction is None


async def test_nothing_to_compact(store: sessiondb.Store) -> None:
    sid = await store.create_session()
    await store.append(sid, Message.user("only one"))
    with pytest.raises(InvalidInputError, match="nothing to compact"):
        await store.compact_conversation(sid, summary="s", keep_last=4)
    with pytest.raises(InvalidInputError, match="non-empty"):
        await store.compact_conversation(sid, summary=" ", keep_last=0)


async def test_concurrent_append_is_a_conflict(store: sessiondb.Store, monkeypatch: pytest.MonkeyPatch) -> None:
    sid = await store.create_session()
    for i in range(6):
        await store.append(sid, Message.user(f"m{i}"))
    original = store.load

    async def load_then_race(session_id: str, **kwargs: object) -> sessiondb.Session:
        session = await original(session_id, **kwargs)  # type: ignore[arg-type]
        await store.append(session_id, Message.user("slipped in"))  # lands between load and record
        return session

    monkeypatch.setattr(store, "load", load_then_race)
    with pytest.raises(ConflictError):
        await store.compact_conversation(sid, summary="given", keep_last=2)
    monkeypatch.setattr(store, "load", original)
    assert (await store.load(sid)).compaction is None


def test_local_summary_like_the_reference() -> None:
    messages = [
        Message.user("please fix the bug in src/main.rs " + "x" * 300),
        _use("c1", "bash", "rust/crates/runtime/src/compact.rs"),
        Message.tool_result("c1", "bash", "cargo test: ok"),
        Message.assistant("Next: update docs/README.md, pending review"),
    ]
    text = summarize_messages(messages)
    assert "- Scope: 4 earlier messages compacted (user=1, assistant=2, tool=1)." in text
    assert "- Tools mentioned: bash." in text
    assert "- Recent user requests:" in text and "…" in text  # entries are shortened
    assert "- Pending work:" in text and "Next: update docs/README.md" in text
    assert "- Key files referenced: docs/README.md, rust/crates/runtime/src/compact.rs, src/main.rs." in text
    assert "- Current work: Next: update docs/README.md" in text
    assert "  - tool: tool_result bash: cargo test: ok" in text
    assert max(len(line) for line in text.splitlines()) < 220


async def test_token_policy(store: sessiondb.Store) -> None:
    sid = await store.create_session()
    policy = TokenThresholdPolicy(threshold=1000)
    await store.append(sid, Message.user("q"), Message.assistant("a", usage=Usage(input_tokens=600)))
    assert not await store.compaction_due(sid, policy)
    await store.append(sid, Message.user("q"), Message.assistant("a", usage=Usage(input_tokens=600)))
    assert await store.compaction_due(sid, policy)
    assert not await store.compaction_due(sid)  # the default threshold: 100,000 like upstream
    await store.compact_conversation(sid, keep_last=1)
    assert not await store.compaction_due(sid, policy)  # only the live context counts
    assert is_continuation_message((await store.load(sid)).messages[0])


async def test_compacted_conversation_survives_storage_compaction(tmp_path: Path) -> None:
    settings = sessiondb.CompactionSettings(background=False, min_tail_events=1, keep_segments=0)
    path = tmp_path / "s"
    async with sessiondb.open_store(path, segment_bytes=1024, compaction=settings) as store:
        sid = await store.create_session()
        for i in range(40):
            await store.append(sid, Message.user(f"m{i}"))
        await store.compact_conversation(sid, keep_last=3)
        await store.compact()
        expected = await store.load(sid)
    async with sessiondb.open_store(path, compaction=settings) as store:
        assert await store.load(sid) == expected
        assert len(expected.messages) == 4
