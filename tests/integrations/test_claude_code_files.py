"""Claude Code's own transcript files: a tree imported (CLI and API), bad lines named, export byte for byte."""

from __future__ import annotations

import io
import json
import stat
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest

import sessiondb
from sessiondb import ImportFormatError, InvalidInputError
from sessiondb.cli import main
from sessiondb.integrations.claude_agent_sdk import SessionDBSessionStore
from sessiondb.integrations.claude_code_files import export_claude_code_transcript, import_claude_code_files

from . import _transcripts

pytestmark = pytest.mark.anyio
PROJECT = "-home-me-app"


def _tree(root: Path) -> tuple[str, Path, Path, list[str]]:
    """A projects tree: one session (some lines in forms a re-serialization would change) and a subagent."""
    session_id = str(uuid.uuid4())
    main_lines = [
        json.dumps(line, separators=(",", ":"), ensure_ascii=False)
        for line in _transcripts.conversation(session_id, "/home/me/app").lines
    ]
    # Written by other hands than JSON.stringify: spacing, escaped non-ASCII, a float's exponent, a CR.
    main_lines.append('{"type": "summary", "summary": "caf\\u00e9 \\u2028", "leafUuid": "x"}')
    main_lines.append('{"type":"x","uuid":"' + str(uuid.uuid4()) + '","v":1.5e-07,"w":10.0}')
    main_lines.append('{"type":"x","uuid":"' + str(uuid.uuid4()) + '"}\r')
    project = root / "projects" / PROJECT
    (project / session_id / "subagents").mkdir(parents=True)
    main_file = project / f"{session_id}.jsonl"
    main_file.write_bytes("".join(line + "\n" for line in main_lines).encode())
    agent = _transcripts.subagent(session_id, "/home/me/app", "abc")
    agent_file = project / session_id / "subagents" / "agent-abc.jsonl"
    agent_file.write_text("".join(json.dumps(line) + "\n" for line in agent.lines))
    return session_id, main_file, agent_file, main_lines


async def test_a_tree_imports_and_exports_byte_for_byte(tmp_path: Path) -> None:
    session_id, main_file, agent_file, lines = _tree(tmp_path / "claude")
    async with sessiondb.open_store(tmp_path / "store") as store:
        report = await import_claude_code_files(store, tmp_path / "claude")
        assert sorted(item.entries for item in report.imported) == [2, len(lines)]
        adapter = SessionDBSessionStore(store)
        key: Any = {"project_key": PROJECT, "session_id": session_id}
        loaded = await adapter.load(key)
        assert loaded == [json.loads(line) for line in lines]
        assert await adapter.list_subkeys(key) == ["subagents/agent-abc"]
        (summary,) = await adapter.list_session_summaries(PROJECT)
        assert summary["data"]["custom_title"] == "Listing files"
        sid = await adapter.session_id_for(key)
        assert sid is not None and len((await store.load(sid)).messages) == 6
        await export_claude_code_transcript(store, key, tmp_path / "out.jsonl")
        assert (tmp_path / "out.jsonl").read_bytes() == main_file.read_bytes()
        assert stat.S_IMODE((tmp_path / "out.jsonl").stat().st_mode) == 0o600  # a transcript is private
        await export_claude_code_transcript(store, {**key, "subpath": "subagents/agent-abc"}, tmp_path / "a.jsonl")
        assert (tmp_path / "a.jsonl").read_bytes() == agent_file.read_bytes()
        # Importing again: the transcripts are there already.
        with pytest.raises(InvalidInputError, match="already holds the transcript"):
            await import_claude_code_files(store, main_file)
        again = await import_claude_code_files(store, tmp_path / "claude", skip_existing=True)
        assert again.imported == [] and len(again.skipped_files) == 2


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (b"{not json\n", "Expecting property name"),
        (b'["a list"]\n', "not a JSON object"),
        (b'{"uuid": "u"}\n', "no str 'type'"),
        (b'{"type": "x", "v": NaN}\n', "no JSON form"),
        (b'{"type": "x", "s": "\xff"}\n', "not UTF-8"),
        (b'{"type": "x", "cut', "torn last line"),
    ],
)
async def test_a_bad_line_is_named_and_nothing_of_the_file_is_written(tmp_path: Path, bad: bytes, reason: str) -> None:
    session_id, main_file, _agent, lines = _tree(tmp_path / "claude")
    main_file.write_bytes(main_file.read_bytes() + bad)
    line_number = len(lines) + 1
    async with sessiondb.open_store(tmp_path / "store") as store:
        with pytest.raises(ImportFormatError, match=reason) as raised:
            await import_claude_code_files(store, main_file)
        assert f"{main_file}:{line_number}" in str(raised.value)
        assert await store.list_sessions() == []
        report = await import_claude_code_files(store, main_file, skip_bad_lines=True)
        assert [(path, line) for path, line, _ in report.skipped_lines] == [(str(main_file), line_number)]
        key: Any = {"project_key": PROJECT, "session_id": session_id}
        assert await SessionDBSessionStore(store).load(key) == [json.loads(line) for line in lines]


async def test_sessiondb_import_detects_the_claude_code_dialect(tmp_path: Path) -> None:
    session_id, _main, _agent, lines = _tree(tmp_path / "claude")
    out, err = io.StringIO(), io.StringIO()
    argv = ["import", str(tmp_path / "store"), str(tmp_path / "claude" / "projects"), "--json"]
    code = await anyio.to_thread.run_sync(lambda: main(argv, stdout=out, stderr=err))
    assert code == 0, err.getvalue()
    result = json.loads(out.getvalue())
    assert result["dialect"] == "claude-code" and len(result["imported"]) == 2
    async with sessiondb.open_store(tmp_path / "store") as store:
        key: Any = {"project_key": PROJECT, "session_id": session_id}
        assert await SessionDBSessionStore(store).load(key) == [json.loads(line) for line in lines]
