"""The Session projection against the reference's semantics: messages, usage, prompts, compaction.

Two independent folds must agree with a model written here from the reference
(``session.rs`` and upstream's compaction): ``replay_session`` (what ``load``
returns) and ``apply_to_info`` (what ``list_sessions`` shows without replay).
"""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sessiondb
from sessiondb import (
    Compacted,
    CompactionInfo,
    Custom,
    Event,
    Message,
    PromptEntry,
    PromptRecorded,
    RecordedEvent,
    SessionInfo,
    SessionStarted,
    Text,
    ToolUse,
    Usage,
)
from sessiondb._backends._base import apply_to_info
from sessiondb._projection import replay_session

pytestmark = pytest.mark.anyio

# Upstream's words (claw-code-format.md): the summary message "begins" with this sentence.
REFERENCE_PREAMBLE = "This session is being continued from a previous conversation that ran out of context."


def _recorded(sid: str, events: list[Event], start_ms: int = 1_000) -> list[RecordedEvent]:
    stream = [SessionStarted(start_ms, "model-x", "/repo"), *events]
    return [RecordedEvent(sid, i + 1, i + 1, start_ms + i, e) for i, e in enumerate(stream)]


def _is_summary(message: Message, summary: str) -> bool:
    return (
        message.role == "system"
        and len(message.blocks) == 1
        and message.text.startswith(REFERENCE_PREAMBLE)
        and summary in message.text
    )


# ------------------------------------------------------------------ a model of the reference


class Model:
    """The live context as upstream keeps it, written independently of the engine."""

    def __init__(self) -> None:
        self.live: list[Message] = []
        self.has_summary = False
        self.count = 0
        self.usage = Usage()
        self.prompts: list[tuple[int, str]] = []
        self.last: Compacted | None = None

    def apply(self, event: Event) -> None:
        if isinstance(event, Message):
            self.live.append(event)
            if event.usage is not None:
                self.usage = self.usage + event.usage
        elif isinstance(event, PromptRecorded):
            self.prompts.append((event.timestamp_ms, event.text))
        elif isinstance(event, Compacted):
            if event.rewrite_context:
                body = self.live[1:] if self.has_summary else self.live
                self.live = [Message.system(event.summary), *body[event.removed_message_count :]]
                self.has_summary = True
            self.count = event.count if event.count is not None else self.count + 1
            self.last = event


small = st.integers(0, 1000)
usage = st.builds(Usage, small, small, small, small)
message = st.builds(
    Message,
    st.sampled_from(["user", "assistant", "tool", "system"]),
    st.lists(st.builds(Text, st.text(max_size=5)), max_size=2),
    st.none() | usage,
)
event = st.one_of(
    message,
    message,
    message,
    st.builds(PromptRecorded, st.text(max_size=5), st.integers(0, 2**40)),
    st.builds(Compacted, st.text(max_size=8), st.integers(0, 8), st.booleans() | st.just(True)),
    st.builds(Compacted, st.text(max_size=8), st.integers(0, 8), st.just(True), st.integers(0, 50)),
    st.builds(Custom, st.text(max_size=5), st.integers()),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(event, max_size=40))
def test_session_and_summary_agree_with_the_reference_model(events: list[Event]) -> None:
    model = Model()
    for e in events:
        model.apply(e)
    recorded = _recorded("s", events)
    session = replay_session("s", recorded)
    info = SessionInfo("s")
    for r in recorded:
        apply_to_info(info, r.event, r.version, r.timestamp_ms)

    assert session.version == info.version == len(events) + 1
    assert session.created_at_ms == info.created_at_ms == 1_000
    assert session.updated_at_ms == info.updated_at_ms == recorded[-1].timestamp_ms
    assert session.model == info.model == "model-x" and session.workspace_root == "/repo"
    assert session.usage == info.usage == model.usage
    assert [PromptEntry(t, x) for t, x in model.prompts] == session.prompt_history
    assert len(session.messages) == len(model.live) == info.message_count
    if model.has_summary:
        assert model.last is not None
        # The first live message is the latest summary; the kept messages follow verbatim.
        assert _is_summary(session.messages[0], model.live[0].text)
        assert session.messages[1:] == model.live[1:]
        assert info.compacted
    else:
        assert session.messages == model.live
    if model.last is None:
        assert session.compaction is None
    else:
        assert session.compaction == CompactionInfo(model.count, model.last.removed_message_count, model.last.summary)
    # Custom events never touch the built-in projection, and the state is plain data.
    assert msgspec.convert(msgspec.to_builtins(session), sessiondb.Session) == session


# ------------------------------------------------------------------ the same, spelled out through a store


async def test_messages_usage_and_prompts() -> None:
    async with sessiondb.open_store(":memory:") as store:
        sid = await store.create_session(model="claude", workspace_root="/repo")
        await store.record_prompt(sid, "first prompt")
        await store.append(sid, Message.user("hi"))
        await store.append(
            sid,
            Message.assistant([Text("a"), ToolUse("t1", "bash", '{"cmd":"ls"}')], usage=Usage(10, 4, 2, 1)),
            Message.tool_result("t1", "bash", "out"),
        )
        await store.append(sid, Message.assistant("done", usage=Usage(5, 6)))
        await store.record_prompt(sid, "second prompt")
        session = await store.load(sid)
        assert [m.role for m in session.messages] == ["user", "assistant", "tool", "assistant"]
        assert session.messages[1].blocks[1] == ToolUse("t1", "bash", '{"cmd":"ls"}')
        assert session.usage == Usage(15, 10, 2, 1) and session.usage.total_tokens == 28
        assert [p.text for p in session.prompt_history] == ["first prompt", "second prompt"]
        assert session.prompt_history[0].timestamp_ms <= session.prompt_history[1].timestamp_ms
        assert session.version == 7 and session.model == "claude" and session.workspace_root == "/repo"
        assert session.compaction is None and session.fork is None
        assert session.created_at_ms <= session.updated_at_ms
        info = await store.session_info(sid)
        assert info.message_count == 4 and info.usage == session.usage and info.version == 7


async def test_compaction_rewrites_the_live_context_and_keeps_history() -> None:
    async with sessiondb.open_store(":memory:") as store:
        sid = await store.create_session()
        for i in range(6):
            await store.append(sid, Message.user(f"m{i}"), Message.assistant(f"r{i}", usage=Usage(1, 1)))
        before = await store.load(sid)
        assert len(before.messages) == 12

        v1 = await store.record_compaction(sid, summary="SUMMARY-ONE", removed_message_count=8)
        s1 = await store.load(sid)
        assert _is_summary(s1.messages[0], "SUMMARY-ONE")
        assert s1.messages[1:] == before.messages[8:]
        assert s1.compaction == CompactionInfo(1, 8, "SUMMARY-ONE")
        assert s1.usage == before.usage == Usage(6, 6)  # compaction removes messages, not spent tokens
        assert (await store.session_info(sid)).message_count == 5

        await store.append(sid, Message.user("after"))
        v2 = await store.record_compaction(sid, summary="SUMMARY-TWO", removed_message_count=3)
        s2 = await store.load(sid)
        # The second summary replaces the first: removed_message_count does not count the old summary.
        assert len(s2.messages) == 3
        assert _is_summary(s2.messages[0], "SUMMARY-TWO") and "SUMMARY-ONE" not in s2.messages[0].text
        assert [m.text for m in s2.messages[1:]] == ["r5", "after"]
        assert s2.compaction == CompactionInfo(2, 3, "SUMMARY-TWO")
        assert (await store.session_info(sid)).message_count == 3

        # The full history stays readable, and time travel sees the context as it was.
        texts = [e.event.text async for e in store.read(sid) if isinstance(e.event, Message)]
        assert texts[:12] == [m.text for m in before.messages] and texts[12] == "after"
        assert (await store.load(sid, at_version=v1 - 1)).messages == before.messages
        assert (await store.load(sid, at_version=v1)).messages == s1.messages
        assert (await store.load(sid, at_version=v2)).messages == s2.messages


async def test_compaction_of_everything_leaves_only_the_summary() -> None:
    async with sessiondb.open_store(":memory:") as store:
        sid = await store.create_session()
        await store.append(sid, Message.user("a"), Message.assistant("b"))
        with pytest.raises(sessiondb.InvalidInputError, match="has 2 live message"):
            await store.record_compaction(sid, summary="more than there is", removed_message_count=99)
        await store.record_compaction(sid, summary="all of it", removed_message_count=2)
        session = await store.load(sid)
        assert len(session.messages) == 1 and _is_summary(session.messages[0], "all of it")
        assert session.compaction == CompactionInfo(1, 2, "all of it")
        assert (await store.session_info(sid)).message_count == 1
        # Compacting an empty-but-summarised context again keeps exactly one summary.
        await store.record_compaction(sid, summary="again", removed_message_count=0)
        session = await store.load(sid)
        assert len(session.messages) == 1 and _is_summary(session.messages[0], "again")
        assert session.compaction is not None and session.compaction.count == 2


async def test_metadata_only_compaction_and_count_override() -> None:
    async with sessiondb.open_store(":memory:") as store:
        sid = await store.create_session()
        await store.append(sid, Message.user("a"), Message.user("b"))
        await store.append(sid, Compacted("imported", 5, rewrite_context=False, count=7))
        session = await store.load(sid)
        assert [m.text for m in session.messages] == ["a", "b"]
        assert session.compaction == CompactionInfo(7, 5, "imported")
        await store.record_compaction(sid, summary="next", removed_message_count=1)
        session = await store.load(sid)
        assert session.compaction == CompactionInfo(8, 1, "next")
        assert [m.text for m in session.messages[1:]] == ["b"]
