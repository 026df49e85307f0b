"""Hand-written golden claw-code files: what import must load, and export's exact bytes."""

from __future__ import annotations

from pathlib import Path

import pytest

import sessiondb
from sessiondb import (
    Compacted,
    CompactionInfo,
    Message,
    PromptEntry,
    Text,
    Thinking,
    ToolResult,
    ToolUse,
    Usage,
)

GOLDEN = Path(__file__).parent / "golden"
pytestmark = pytest.mark.anyio

PREAMBLE = (
    "This session is being continued from a previous conversation that ran out of context. "
    "The summary below covers the earlier portion of the conversation.\n\n"
)


async def test_canonical_file_loads_like_upstream_and_exports_byte_identical(
    store: sessiondb.Store, tmp_path: Path
) -> None:
    report = await sessiondb.import_claw_files(store, GOLDEN / "canonical.jsonl")
    assert [s.session_id for s in report.imported] == ["session-1775777421902-1"]
    session = await store.load("session-1775777421902-1")
    assert session.session_id == "session-1775777421902-1"
    assert session.created_at_ms == 1775777421902
    assert session.updated_at_ms == 1775777430000
    assert session.model == "claude-opus-4"
    assert session.workspace_root == "/home/dév/project"
    assert session.fork is not None
    assert (session.fork.parent_session_id, session.fork.branch_name) == ("session-1775777000000-0", "investigation")
    assert session.compaction == CompactionInfo(2, 4, "<summary>Fixed the build ☃; tests pass</summary>")
    assert session.prompt_history == [
        PromptEntry(1775777422000, "fix the build"),
        PromptEntry(1775777425000, "now run the tests 🚀"),
    ]
    assert session.messages == [
        Message.system(
            PREAMBLE + "<summary>Fixed the build ☃; tests pass</summary>\n\nRecent messages are preserved verbatim."
        ),
        Message.user('line one\u2028line two\u2029end \x01\x1f\x7f\x85 tab\there "quoted" back\\slash \b\f\r'),
        Message(
            "assistant",
            [
                Thinking("Let me look at the files 🤔", "sig-Abc123=="),
                Thinking("no signature here"),
                Text("Running ls."),
                ToolUse("toolu_01", "bash", '{"command":"ls -la"}'),
            ],
            Usage(10, 4, 1, 2),
        ),
        Message.tool_result("toolu_01", "bash", "total 0\n😀 émoji.txt"),
        Message("tool", [ToolResult("toolu_02", "bash", "permission denied", True)]),
        Message("assistant", [Text("done ✅")], Usage(4294967295, 0, 0, 0)),
    ]
    path = await sessiondb.export_claw_session(store, "session-1775777421902-1", tmp_path)
    assert path == tmp_path / "session-1775777421902-1.jsonl"
    assert path.read_bytes() == (GOLDEN / "canonical.jsonl").read_bytes()


async def test_messy_file_last_meta_and_compaction_win_and_export_is_canonical(
    store: sessiondb.Store, tmp_path: Path
) -> None:
    report = await sessiondb.import_claw_files(store, GOLDEN / "messy.jsonl")
    assert any("messy.jsonl:5" in note for note in report.notes)  # the incomplete prompt_history
    session = await store.load("session-1775777500000-7")
    assert (session.created_at_ms, session.updated_at_ms) == (1775777500000, 1775777509999)
    assert session.model is None  # the last session_meta has none: upstream replaces every field
    assert session.workspace_root == "/w"
    assert session.compaction == CompactionInfo(2, 3, "new summary")
    assert session.prompt_history == [PromptEntry(1775777500100, "first prompt")]
    assert session.messages == [Message.user("a/b é"), Message.assistant("hi"), Message("assistant", [])]
    path = await sessiondb.export_claw_session(store, "session-1775777500000-7", tmp_path / "out.jsonl")
    assert path.read_bytes() == (GOLDEN / "messy.expected.jsonl").read_bytes()


async def test_legacy_json_object(store: sessiondb.Store, tmp_path: Path) -> None:
    await sessiondb.import_claw_files(store, GOLDEN / "session-1775000000000-3.json")
    session = await store.load("session-1775000000000-3")
    assert session.created_at_ms == 1775000000000  # from the id, as upstream parses it
    assert session.updated_at_ms == 1775000000000  # defaults to created_at_ms
    assert session.fork is not None and session.fork.branch_name == "  spaced  "  # loaded as written
    assert session.prompt_history == [PromptEntry(1775000000500, "hello")]
    assert session.messages[1].usage == Usage(1, 2, 3, 4)
    path = await sessiondb.export_claw_session(store, "session-1775000000000-3", tmp_path)
    assert path.read_bytes() == (GOLDEN / "legacy.expected.jsonl").read_bytes()


async def test_tree_imports_newest_copy_only_and_reports_the_rest(store: sessiondb.Store) -> None:
    report = await sessiondb.import_claw_files(store, GOLDEN / "tree")
    assert sorted(s.session_id for s in report.imported) == ["session-1775800000000-0", "session-1775900000000-5"]
    live = await store.load("session-1775800000000-0")
    assert live.messages == [Message.user("newest")]
    assert live.updated_at_ms == 1775800000300
    # No live file: the newest rotated copy stands for the session.
    rotated_only = await store.load("session-1775900000000-5")
    assert rotated_only.messages == [Message.user("rot two")]
    superseded = sorted(Path(old).name for old, _ in report.superseded)
    assert superseded == [
        "session-1775800000000-0.rot-1775800000100.jsonl",  # garbage: never read
        "session-1775800000000-0.rot-1775800000200.jsonl",
        "session-1775900000000-5.rot-1775900000100.jsonl",
    ]
    assert [Path(p).name for p in report.ignored_files] == ["session-1775800000000-0.jsonl.tmp-1775800000250-4"]
    assert "older copie" in str(report)


async def test_export_after_native_compaction_holds_live_context_and_compaction_record(
    store: sessiondb.Store, tmp_path: Path
) -> None:
    # A session with pinned timestamps: created by import, continued natively.
    source = tmp_path / "src.jsonl"
    source.write_bytes(
        b'{"created_at_ms":1000,"session_id":"session-1000-0","type":"session_meta","updated_at_ms":1000,"version":1}\n'
    )
    await sessiondb.import_claw_files(store, source)
    for text in ("one", "two", "three", "four", "five", "six"):
        await store.append("session-1000-0", Message.user(text), timestamp_ms=2000)
    await store.append("session-1000-0", Compacted("<summary>s</summary>", 4), timestamp_ms=3000)
    path = await sessiondb.export_claw_session(store, "session-1000-0", tmp_path / "out.jsonl")
    expected = (
        b'{"created_at_ms":1000,"session_id":"session-1000-0","type":"session_meta","updated_at_ms":3000,"version":1}\n'
        b'{"count":1,"removed_message_count":4,"summary":"<summary>s</summary>","type":"compaction"}\n'
        b'{"message":{"blocks":[{"text":"This session is being continued from a previous conversation that ran out'
        b" of context. The summary below covers the earlier portion of the conversation.\\n\\n<summary>s</summary>"
        b'\\n\\nRecent messages are preserved verbatim.","type":"text"}],"role":"system"},"type":"message"}\n'
        b'{"message":{"blocks":[{"text":"five","type":"text"}],"role":"user"},"type":"message"}\n'
        b'{"message":{"blocks":[{"text":"six","type":"text"}],"role":"user"},"type":"message"}\n'
    )
    assert path.read_bytes() == expected
    # The full history is still in the store; the export at an earlier version shows it.
    before = await sessiondb.export_claw_session(store, "session-1000-0", tmp_path / "before.jsonl", at_version=7)
    assert before.read_bytes().count(b'"type":"message"') == 6


async def test_u2028_survives_and_lines_split_on_newline_only(store: sessiondb.Store, tmp_path: Path) -> None:
    await sessiondb.import_claw_files(store, GOLDEN / "canonical.jsonl")
    path = await sessiondb.export_claw_session(store, "session-1775777421902-1", tmp_path)
    text = path.read_text("utf-8")
    assert "\u2028" in text and "\u2029" in text and "\x85" not in text  # U+0085 is a control: escaped
    assert len(text.split("\n")) - 1 == 10
    assert len(text.splitlines()) > 10  # why str.splitlines must never read these files


async def test_export_is_atomic_and_replaces_the_file(store: sessiondb.Store, tmp_path: Path) -> None:
    await sessiondb.import_claw_files(store, GOLDEN / "canonical.jsonl")
    target = tmp_path / "deep" / "er" / "s.jsonl"
    await sessiondb.export_claw_session(store, "session-1775777421902-1", target)
    target.write_bytes(b"old contents\n")
    await sessiondb.export_claw_session(store, "session-1775777421902-1", target)
    assert target.read_bytes() == (GOLDEN / "canonical.jsonl").read_bytes()
    assert sorted(p.name for p in target.parent.iterdir()) == ["s.jsonl"]  # no temp file left behind


def test_usage_upstream_cannot_read_is_refused_before_it_is_stored() -> None:
    """Upstream reads u32 token counts; a message whose usage does not fit is refused when built."""
    with pytest.raises(sessiondb.InvalidInputError, match="input_tokens"):
        Message.assistant("x", usage=Usage(2**32, 0, 0, 0))


async def test_exported_sessions_import_into_another_store(store: sessiondb.Store, tmp_path: Path) -> None:
    await sessiondb.import_claw_files(store, GOLDEN / "canonical.jsonl", GOLDEN / "session-1775000000000-3.json")
    paths = await sessiondb.export_claw_sessions(store, tmp_path / "out")
    assert len(paths) == 2
    async with sessiondb.open_store(tmp_path / "other") as other:
        await sessiondb.import_claw_files(other, tmp_path / "out")
        for sid in ("session-1775777421902-1", "session-1775000000000-3"):
            assert _same(await other.load(sid), await store.load(sid))


def _same(a: sessiondb.Session, b: sessiondb.Session) -> bool:
    fields = ("messages", "compaction", "prompt_history", "created_at_ms", "updated_at_ms", "model", "workspace_root")
    return all(getattr(a, f) == getattr(b, f) for f in fields) and a.fork == b.fork


def test_workspace_fingerprint_is_upstreams_fnv1a_64() -> None:
    from sessiondb._interop._claw_store import workspace_fingerprint

    # Published FNV-1a 64-bit test vectors.
    assert workspace_fingerprint("") == "cbf29ce484222325"
    assert workspace_fingerprint("a") == "af63dc4c8601ec8c"
    assert workspace_fingerprint("foobar") == "85944171f73967e8"


async def test_export_into_a_workspace_where_claw_code_finds_it(store: sessiondb.Store, tmp_path: Path) -> None:
    from sessiondb._interop._claw_store import workspace_fingerprint

    await sessiondb.import_claw_files(store, GOLDEN / "canonical.jsonl")
    directory = sessiondb.claw_sessions_directory(tmp_path)
    assert directory == tmp_path.resolve() / ".claw" / "sessions" / workspace_fingerprint(str(tmp_path.resolve()))
    path = await sessiondb.export_claw_session(
        store, "session-1775777421902-1", directory / "session-1775777421902-1.jsonl"
    )
    assert path.read_bytes() == (GOLDEN / "canonical.jsonl").read_bytes()
    async with sessiondb.open_store(tmp_path / "other") as other:
        report = await sessiondb.import_claw_files(other, tmp_path / ".claw" / "sessions")
        assert [s.session_id for s in report.imported] == ["session-1775777421902-1"]


async def test_summary_counts_stay_right_after_a_native_compaction_of_an_imported_session(
    store: sessiondb.Store, tmp_path: Path
) -> None:
    await sessiondb.import_claw_files(store, GOLDEN / "canonical.jsonl")
    sid = "session-1775777421902-1"
    info = await store.session_info(sid)
    assert (info.message_count, info.compacted) == (6, True)
    assert info.usage == Usage(4294967305, 4, 1, 2)
    await store.append(sid, Compacted("again", 2))
    info = await store.session_info(sid)
    session = await store.load(sid)
    assert info.message_count == len(session.messages) == 4  # summary + the 3 kept after removing 2
    assert session.compaction == CompactionInfo(3, 2, "again")
    await store.aclose()
    async with sessiondb.open_store(tmp_path / "store") as reopened:  # the summary rebuilt by recovery
        assert (await reopened.session_info(sid)).message_count == 4
