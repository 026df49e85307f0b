"""The SDK's store-backed helpers, offline, on sessiondb: the same answers as the SDK's own InMemorySessionStore.

And beyond a mirror: the same transcripts as sessiondb messages, usage, forks and compaction.
"""

from __future__ import annotations

import dataclasses
import io
import json
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest
from claude_agent_sdk import (
    InMemorySessionStore,
    delete_session_via_store,
    fork_session_via_store,
    get_session_info_from_store,
    get_session_messages_from_store,
    get_subagent_messages_from_store,
    import_session_to_store,
    list_sessions_from_store,
    list_subagents_from_store,
    project_key_for_directory,
    rename_session_via_store,
    tag_session_via_store,
)

import sessiondb
from sessiondb import Text, Thinking, ToolResult, ToolUse, Usage
from sessiondb.integrations.claude_agent_sdk import SessionDBSessionStore

from . import _transcripts
from .conftest import StoreFactory

pytestmark = pytest.mark.anyio


def _write_claude_home(home: Path, cwd: Path, session_id: str) -> tuple[_transcripts.Transcript, Any]:
    """Claude Code's own files for one session and one subagent, under CLAUDE_CONFIG_DIR=home."""
    project = home / "projects" / project_key_for_directory(str(cwd))
    main = _transcripts.conversation(session_id, str(cwd))
    agent = _transcripts.subagent(session_id, str(cwd), "a1b2c3")
    (project / session_id / "subagents").mkdir(parents=True)
    (project / f"{session_id}.jsonl").write_text("".join(json.dumps(line) + "\n" for line in main.lines))
    (project / session_id / "subagents" / "agent-a1b2c3.jsonl").write_text(
        "".join(json.dumps(line) + "\n" for line in agent.lines)
    )
    return main, agent


def _plain(value: Any) -> Any:
    """Helper results as plain data, store write times left out (each store has its own clock)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if k not in ("last_modified", "mtime")}
    return value


async def _scenario(store: Any, cwd: str, session_id: str) -> dict[str, Any]:
    """Every store-backed helper of the SDK, in a realistic order; what each returned."""
    seen: dict[str, Any] = {}
    await import_session_to_store(session_id, store, directory=cwd)
    if isinstance(store, SessionDBSessionStore):
        # Re-import is duplicate-safe by uuid here (the SDK's in-memory store would double the lines).
        await import_session_to_store(session_id, store, directory=cwd)
    seen["listed"] = await list_sessions_from_store(store, directory=cwd)
    seen["info"] = await get_session_info_from_store(store, session_id, directory=cwd)
    seen["messages"] = await get_session_messages_from_store(store, session_id, directory=cwd)
    seen["subagents"] = await list_subagents_from_store(store, session_id, directory=cwd)
    seen["subagent_messages"] = await get_subagent_messages_from_store(store, session_id, "a1b2c3", directory=cwd)
    await rename_session_via_store(store, session_id, "Renamed", directory=cwd)
    await tag_session_via_store(store, session_id, "keep", directory=cwd)
    seen["renamed"] = await get_session_info_from_store(store, session_id, directory=cwd)
    fork = await fork_session_via_store(store, session_id, directory=cwd, title="Branch")
    seen["fork_messages"] = [
        (m.type, m.message) for m in await get_session_messages_from_store(store, fork.session_id, directory=cwd)
    ]
    seen["after_fork"] = sorted(
        (info.summary, info.tag) for info in await list_sessions_from_store(store, directory=cwd)
    )
    await delete_session_via_store(store, session_id, directory=cwd)
    seen["after_delete"] = [info.summary for info in await list_sessions_from_store(store, directory=cwd)]
    seen["subagents_after_delete"] = await list_subagents_from_store(store, session_id, directory=cwd)
    return _plain(seen)


async def test_store_backed_helpers_agree_with_the_sdks_in_memory_store(
    open_fresh_store: StoreFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home, cwd = tmp_path / "claude-home", tmp_path / "work" / "app"
    cwd.mkdir(parents=True)
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(home))
    session_id = str(uuid.uuid4())
    _write_claude_home(home, cwd, session_id)

    ours = await _scenario(SessionDBSessionStore(await open_fresh_store()), str(cwd), session_id)
    reference = await _scenario(InMemorySessionStore(), str(cwd), session_id)
    assert ours == reference
    # And the answers are the conversation, not merely equal: spot-check them.
    assert [m["type"] for m in ours["messages"]] == ["user", "assistant", "assistant", "assistant", "user", "assistant"]
    assert ours["info"]["summary"] == "Listing files"
    assert ours["renamed"]["summary"] == "Renamed" and ours["renamed"]["tag"] == "keep"
    assert ours["subagents"] == ["a1b2c3"] and len(ours["subagent_messages"]) == 2
    assert ours["after_fork"] == [("Branch", None), ("Renamed", "keep")]
    assert ours["after_delete"] == ["Branch"] and ours["subagents_after_delete"] == []


async def test_transcripts_become_sessiondb_messages(open_fresh_store: StoreFactory) -> None:
    store = await open_fresh_store()
    adapter = SessionDBSessionStore(store)
    key: Any = {"project_key": "proj", "session_id": str(uuid.uuid4())}
    transcript = _transcripts.conversation(key["session_id"], "/work/app")
    lines = list(transcript.lines)
    # As the SDK's mirror delivers them: in batches, a response split across two of them.
    await adapter.append(key, lines[:2])
    await adapter.append(key, lines[2:])
    assert await adapter.load(key) == lines
    sid = await adapter.session_id_for(key)
    assert sid is not None
    session = await store.load(sid)
    assert session.workspace_root == "/work/app" and session.model == "claude-sonnet-4-5"
    assert [(m.role, m.blocks) for m in session.messages] == [
        ("user", [Text("List the files, please")]),
        ("assistant", [Thinking("I should run ls.", "sig-1")]),
        ("assistant", [Text("Let me look.")]),
        ("assistant", [ToolUse("toolu_1", "Bash", '{"command": "ls"}')]),
        ("tool", [ToolResult("toolu_1", "Bash", "README.md\nsrc")]),
        ("assistant", [Text("There are two: README.md and src.")]),
    ]
    # Two responses; the first written as three lines that repeat its usage: counted once.
    assert session.usage == Usage(24, 49, 200, 14)
    info = await store.session_info(sid)
    assert info.usage == session.usage and info.message_count == 6

    # sessiondb's own operations work on the transcript: a fork and a conversation compaction.
    child = await store.fork(sid, at_version=(await store.load(sid)).version)
    assert (await store.load(child)).messages == session.messages
    await store.compact_conversation(sid, keep_last=2)
    compacted = (await store.load(sid)).messages
    # The summary, then the kept messages: the cut moved back so the tool result keeps its tool use.
    assert compacted[0].role == "system" and compacted[1:] == session.messages[3:]
    # …while the adapter still reads back exactly what the SDK wrote, and goes on appending.
    assert await adapter.load(key) == lines
    more = transcript.user("Thanks")
    await adapter.append(key, [more])
    assert await adapter.load(key) == [*lines, more]
    (summary,) = await adapter.list_session_summaries("proj")
    assert summary["data"]["custom_title"] == "Listing files"
    assert (await store.load(sid)).messages[-1].blocks == [Text("Thanks")]


async def test_sessiondb_show_prints_an_sdk_transcript(tmp_path: Path) -> None:
    from sessiondb.cli import main

    key: Any = {"project_key": "proj", "session_id": str(uuid.uuid4())}
    async with sessiondb.open_store(tmp_path / "s") as store:
        adapter = SessionDBSessionStore(store)
        await adapter.append(key, _transcripts.conversation(key["session_id"], "/w").lines)
        sid = await adapter.session_id_for(key)
    assert sid is not None
    out, err = io.StringIO(), io.StringIO()
    code = await anyio.to_thread.run_sync(lambda: main(["show", str(tmp_path / "s"), sid], stdout=out, stderr=err))
    assert code == 0, err.getvalue()
    assert "There are two: README.md and src." in out.getvalue()
    assert "Bash" in out.getvalue()
