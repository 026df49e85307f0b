"""End to end: the SDK's bundled Claude Code program, with sessiondb attached, against a scripted Messages API.

Nothing leaves the machine: the program reads its API base address from its
environment (``ANTHROPIC_BASE_URL``) and talks to a server on 127.0.0.1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from claude_agent_sdk import AssistantMessage, ClaudeAgentOptions, ResultMessage, TextBlock, query

import sessiondb
from sessiondb import Text
from sessiondb.integrations.claude_agent_sdk import SessionDBSessionStore

from ._messages_api import ScriptedMessagesAPI

pytestmark = pytest.mark.anyio


def _options(adapter: SessionDBSessionStore, api: ScriptedMessagesAPI, tmp: Path, home: str, **more: Any) -> Any:
    env = {
        "ANTHROPIC_BASE_URL": api.base_url,
        "ANTHROPIC_API_KEY": "sk-test-not-a-key",
        "CLAUDE_CONFIG_DIR": str(tmp / home),  # Claude Code's own files: a fresh directory per run
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
    }
    return ClaudeAgentOptions(session_store=adapter, env=env, cwd=str(tmp / "work"), max_turns=1, **more)


async def _run(prompt: str, options: Any) -> tuple[str, list[str]]:
    session_id, texts = "", []
    async for message in query(prompt=prompt, options=options):
        if isinstance(message, AssistantMessage):
            texts += [block.text for block in message.content if isinstance(block, TextBlock)]
        elif isinstance(message, ResultMessage):
            session_id = message.session_id
    return session_id, texts


def _texts(request: dict[str, Any]) -> list[str]:
    found = []
    for message in request["messages"]:
        content = message["content"]
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        found += [b["text"] for b in blocks if b.get("type") == "text"]
    return found


@pytest.mark.timeout(600)
async def test_query_mirrors_into_sessiondb_and_resumes_from_it(tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()
    api = ScriptedMessagesAPI({"Say hello": "Hello from the scripted server.", "And again?": "Still here."})
    async with api.serve(), sessiondb.open_store(tmp_path / "store") as store:
        adapter = SessionDBSessionStore(store)
        session_id, texts = await _run("Say hello", _options(adapter, api, tmp_path, "home-1"))
        assert texts == ["Hello from the scripted server."]

        # What landed in sessiondb: the transcript, verbatim and as messages.
        (listed,) = await adapter.list_sessions(next(iter(_projects(tmp_path / "home-1"))))
        assert listed["session_id"] == session_id
        key: Any = {"project_key": next(iter(_projects(tmp_path / "home-1"))), "session_id": session_id}
        entries = await adapter.load(key)
        assert entries is not None
        on_disk = [json.loads(line) for line in _transcript(tmp_path / "home-1", session_id).read_text().splitlines()]
        assert [e.get("uuid") for e in entries if "uuid" in e] == [e.get("uuid") for e in on_disk if "uuid" in e]
        sid = await adapter.session_id_for(key)
        assert sid is not None
        session = await store.load(sid)
        assert [(m.role, m.text) for m in session.messages] == [
            ("user", "Say hello"),
            ("assistant", "Hello from the scripted server."),
        ]
        assert session.usage.input_tokens == 21 and session.usage.output_tokens > 0

        # Resume from the store alone: another, empty CLAUDE_CONFIG_DIR has no local transcript.
        resumed_id, texts = await _run("And again?", _options(adapter, api, tmp_path, "home-2", resume=session_id))
        assert texts == ["Still here."]
        last_request = next(r for r in reversed(api.requests) if "And again?" in json.dumps(r["messages"]))
        assert "Say hello" in _texts(last_request)  # the first turn came back from the store
        assert "Hello from the scripted server." in _texts(last_request)
        assert "And again?" in " ".join(_texts(last_request))
        resumed_key: Any = {**key, "session_id": resumed_id}
        resumed = await store.load(await adapter.session_id_for(resumed_key) or "")
        assert resumed.messages[-1].blocks == [Text("Still here.")]


def _projects(home: Path) -> list[str]:
    return sorted(p.name for p in (home / "projects").iterdir())


def _transcript(home: Path, session_id: str) -> Path:
    (path,) = (home / "projects").glob(f"*/{session_id}.jsonl")
    return path
