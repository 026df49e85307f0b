"""The timeline as a pure function of recorded events: compactions, tool pairing, turns, paging, custom events."""

from __future__ import annotations

import pytest

pytest.importorskip("jinja2")

from sessiondb import Compacted, Custom, Message, RecordedEvent, SessionStarted, ToolUse, Usage
from sessiondb._events import Event
from sessiondb.web._model import ToolCall
from sessiondb.web._timeline import MAX_REMOVED_SHOWN, build_timeline


def recorded(events: list[Event], session_id: str = "s") -> list[RecordedEvent]:
    return [RecordedEvent(session_id, n, n, 1_000 * n, event) for n, event in enumerate(events, 1)]


def top(events: list[Event], **kwargs: int | None) -> list[tuple[str, int]]:
    timeline = build_timeline("s", recorded(events), version=len(events), **kwargs)  # type: ignore[arg-type]
    return [(entry.kind, entry.version) for turn in timeline.turns for entry in turn.entries]


def test_two_compactions_each_hold_what_they_removed() -> None:
    events: list[Event] = [
        SessionStarted(1, "m"),
        Message.user("a"),  # v2
        Message.assistant("b"),  # v3
        Message.user("c"),  # v4
        Compacted("first", 2),  # v5 removes a, b
        Message.assistant("d"),  # v6
        Compacted("second", 2),  # v7 removes (after the first summary) c, d
        Message.user("e"),  # v8
    ]
    timeline = build_timeline("s", recorded(events), version=8)
    entries = [entry for turn in timeline.turns for entry in turn.entries]
    assert [(e.kind, e.version) for e in entries] == [
        ("started", 1),
        ("compaction", 5),
        ("compaction", 7),
        ("message", 8),
    ]
    first, second = entries[1], entries[2]
    assert [r.version for r in first.removed] == [2, 3] and first.removed_versions == (2, 3)
    assert [r.version for r in second.removed] == [4, 6] and second.removed_versions == (4, 6)
    assert timeline.compactions == 2 and timeline.message_count == 5


def test_a_compaction_removing_more_than_the_page_shows_links_the_rest() -> None:
    count = MAX_REMOVED_SHOWN + 5
    events: list[Event] = [Message.user(f"m{n}") for n in range(count)] + [Compacted("all", count)]
    (turn,) = build_timeline("s", recorded(events), version=count + 1).turns
    (compaction,) = turn.entries
    assert len(compaction.removed) == MAX_REMOVED_SHOWN and compaction.removed_versions == (1, count)


def test_tool_results_join_their_calls_and_unmatched_ones_stand_alone() -> None:
    events: list[Event] = [
        Message.user("go"),
        Message.assistant([ToolUse("1", "a", "{}"), ToolUse("2", "b", "not json")], usage=Usage(5, 1)),
        Message.tool_result("1", "a", "out-a"),
        Message.tool_result("2", "b", "out-b", is_error=True),
        Message.tool_result("9", "z", "orphan"),
    ]
    timeline = build_timeline("s", recorded(events), version=5)
    entries = timeline.turns[0].entries
    assert [e.version for e in entries] == [1, 2, 5]  # the two paired tool messages folded into their calls
    calls = [value for kind, value in entries[1].parts if kind == "call"]
    assert all(isinstance(call, ToolCall) for call in calls)
    first, second = calls
    assert isinstance(first, ToolCall) and isinstance(second, ToolCall)
    assert first.result is not None and first.result.output == "out-a" and first.result_version == 3
    assert second.result is not None and second.result.is_error and second.input == "not json"
    assert [kind for kind, _ in entries[2].parts] == ["result"]
    assert timeline.turns[0].usage == Usage(5, 1)


def test_turns_start_at_user_messages_and_sum_usage() -> None:
    events: list[Event] = [
        Message.user("q1"),
        Message.assistant("a1", usage=Usage(10, 2)),
        Message.assistant("a1b", usage=Usage(1, 1)),
        Message.user("q2"),
        Message.assistant("a2", usage=Usage(3, 3)),
    ]
    timeline = build_timeline("s", recorded(events), version=5)
    assert [(t.number, len(t.entries), t.usage) for t in timeline.turns] == [(1, 3, Usage(11, 3)), (2, 2, Usage(3, 3))]
    assert timeline.usage == Usage(14, 6)


@pytest.mark.parametrize(("page", "expected"), [(None, 3), (1, 1), (2, 2), (3, 3), (50, 3)])
def test_paging_by_top_level_entry(page: int | None, expected: int) -> None:
    events: list[Event] = [Message.user(f"m{n}") for n in range(25)]
    timeline = build_timeline("s", recorded(events), version=25, page=page, page_size=10)
    assert (timeline.page, timeline.pages, timeline.total_entries) == (expected, 3, 25)
    shown = [entry.version for turn in timeline.turns for entry in turn.entries]
    assert shown == list(range((expected - 1) * 10 + 1, min(expected * 10, 25) + 1))


def test_custom_events_of_the_integrations_and_of_users() -> None:
    events: list[Event] = [
        Custom(
            "openai_agents.items", {"items": [{"role": "developer", "content": "be brief"}, {"type": "x_y", "z": 1}]}
        ),
        Custom("openai_agents.pop"),
        Custom("openai_agents.clear"),
        Custom("claude_agent_sdk.entry", {"type": "summary", "summary": "Fixing the build", "leafUuid": "u"}),
        Custom("claude_agent_sdk.entry", {"type": "assistant", "message": {"role": "assistant", "content": []}}),
        Custom("claude_agent_sdk.summary", {"n": 1}),
        Custom("my.app", {"k": [1, 2]}),
    ]
    entries = [entry for turn in build_timeline("s", recorded(events), version=7).turns for entry in turn.entries]
    described = [(e.kind, e.role or e.text) for e in entries]
    assert described == [
        ("message", "system"),
        ("notice", "x_y"),
        ("notice", "the last item was removed (pop_item)"),
        ("notice", "the session was cleared (clear_session)"),
        ("notice", "summary"),
        ("notice", "my.app"),
    ]
    assert entries[0].parts == [("text", "be brief")] and entries[0].source == "openai_agents"
    assert '"k": [' in entries[-1].detail


def test_a_forks_inherited_events_are_marked() -> None:
    events = [
        *recorded([Message.user("parent says")], "parent"),
        RecordedEvent("s", 2, 9, 2_000, Message.user("child")),
    ]
    entries = [entry for turn in build_timeline("s", events, version=2).turns for entry in turn.entries]
    assert [(e.session_id, e.inherited) for e in entries] == [("parent", True), ("s", False)]
    assert [part for e in entries for part in e.parts] == [("text", "parent says"), ("text", "child")]
