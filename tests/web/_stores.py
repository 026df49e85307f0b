"""Stores the viewer tests look at: written through the real public API and the real integrations."""

from __future__ import annotations

import asyncio
from pathlib import Path

import sessiondb
from sessiondb import Message, Text, Thinking, ToolUse, Usage

# Hostile text in every place a store holds text: the pages must show it, never run it.
HOSTILE = "<script>alert('x')</script> \"quoted\" 'single' </textarea><img src=x onerror=alert(1)> & ☃ 𝄞 \u202eevil"
CHAT = "chat"
FORK = "chat-fork"
COMPACTED = "compacted"
SCOPE = "proj <a href=x>"
# New titles refuse bidirectional controls (docs/labels.md); the rest of the hostile text is allowed.
TITLE = "Repository tour " + HOSTILE.replace("\u202e", "")
OPENAI = "openai-user-42"
CLAUDE_KEY = {"project_key": "-home-me-proj", "session_id": "5f1c0a2e-claude"}


async def write_chat(store: sessiondb.Store) -> None:
    """A conversation (thinking, a tool call and its result, usage), a fork of it and a compacted session."""
    await store.create_session(model="model-<b>1</b>", workspace_root="/w", session_id=CHAT, scope=SCOPE)
    await store.append(CHAT, Message.user("What is in the repository? " + HOSTILE))
    await store.append(
        CHAT,
        Message.assistant(
            [
                Thinking("I should list the files first."),
                Text("Let me look."),
                ToolUse("call-1", "list_files", '{"path": "."}'),
            ],
            usage=Usage(120, 30, 0, 50),
        ),
    )
    await store.append(CHAT, Message.tool_result("call-1", "list_files", "README.md\nsrc/\n" + HOSTILE))
    await store.append(CHAT, Message.assistant("Two entries: README.md and src/.", usage=Usage(200, 12)))
    await store.append(CHAT, Message.user("Thanks."))  # v6
    await store.set_title(CHAT, "First title")  # v7
    await store.set_title(CHAT, TITLE)  # v8
    await store.add_tags(CHAT, "demo", "tools")  # v9
    await store.remove_tags(CHAT, "tools")  # v10
    await store.set_pinned(CHAT, True)  # v11
    await store.fork(CHAT, at_version=5, session_id=FORK, branch_name="try-<other>")
    await store.append(FORK, Message.user("A different question on the fork."))
    await store.create_session(model="m", session_id=COMPACTED)
    for n in range(1, 7):
        await store.append(COMPACTED, Message.user(f"question {n}"))
        await store.append(COMPACTED, Message.assistant(f"answer {n}", usage=Usage(10 * n, n)))
    await store.record_compaction(COMPACTED, summary="They asked four questions. " + HOSTILE, removed_message_count=8)
    await store.append(COMPACTED, Message.user("question 7"))


async def write_openai(store: sessiondb.Store) -> None:
    """Items as the OpenAI Agents SDK's Runner stores them (Responses API input items)."""
    from sessiondb.integrations.openai_agents import SessionDBSession

    session = SessionDBSession(OPENAI, store)
    await session.add_items([{"role": "user", "content": "Weather in Paris?"}])
    await session.add_items(
        [
            {
                "type": "reasoning",
                "id": "rs_1",
                "summary": [{"type": "summary_text", "text": "Call the weather tool."}],
            },
            {
                "type": "function_call",
                "id": "fc_1",
                "call_id": "call_w1",
                "name": "get_weather",
                "arguments": '{"city": "Paris"}',
                "status": "completed",
            },
            {"type": "function_call_output", "call_id": "call_w1", "output": "18C and sunny"},
            {
                "type": "message",
                "id": "msg_1",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": "It is 18C and sunny in Paris.", "annotations": []}],
            },
        ]
    )


def claude_entries() -> list[dict[str, object]]:
    """A Claude Code transcript: a prompt, thinking and a tool call, the tool result, an answer, a system note."""
    base = {"sessionId": CLAUDE_KEY["session_id"], "cwd": "/home/me/proj", "version": "2.0.0"}
    return [
        {**base, "type": "user", "uuid": "u1", "parentUuid": None, "message": {"role": "user", "content": "List it"}},
        {
            **base,
            "type": "assistant",
            "uuid": "a1",
            "parentUuid": "u1",
            "message": {
                "id": "msg_a1",
                "role": "assistant",
                "model": "claude-x",
                "content": [
                    {"type": "thinking", "thinking": "Use Bash to list.", "signature": "sig"},
                    {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls -a"}},
                ],
                "usage": {"input_tokens": 40, "output_tokens": 9},
            },
        },
        {
            **base,
            "type": "user",
            "uuid": "u2",
            "parentUuid": "a1",
            "message": {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "CLAUDE.md\nmain.py"}],
            },
        },
        {
            **base,
            "type": "assistant",
            "uuid": "a2",
            "parentUuid": "u2",
            "message": {
                "id": "msg_a2",
                "role": "assistant",
                "content": [{"type": "text", "text": "Two files: CLAUDE.md and main.py."}],
                "usage": {"input_tokens": 60, "output_tokens": 11},
            },
        },
        {**base, "type": "system", "uuid": "s1", "subtype": "informational", "content": "Hook ran fine"},
    ]


async def write_claude(store: sessiondb.Store) -> str:
    from sessiondb.integrations.claude_agent_sdk import SessionDBSessionStore

    sdk_store = SessionDBSessionStore(store)
    await sdk_store.append(CLAUDE_KEY, claude_entries())  # type: ignore[arg-type]
    session_id = await sdk_store.session_id_for(CLAUDE_KEY)  # type: ignore[arg-type]
    assert session_id is not None
    return session_id


async def write_all(target: str | Path) -> str:
    """Every kind of session above into one store; returns the Claude session's id."""
    async with sessiondb.open_store(target) as store:
        await write_chat(store)
        await write_openai(store)
        return await write_claude(store)


def build(target: str | Path) -> str:
    return asyncio.run(write_all(target))
