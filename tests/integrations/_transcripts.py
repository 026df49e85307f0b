"""Claude Code transcript entries written from the format's public description (no copied files).

A transcript is JSONL; each line an object with ``type``, ``uuid``, ``parentUuid``,
``sessionId``, ``timestamp``, ``cwd``… ``user`` and ``assistant`` lines carry an
Anthropic Messages API ``message``. One model response is written as one
``assistant`` line per content block, sharing ``message.id`` and its usage.
"""

from __future__ import annotations

import itertools
import uuid as uuidlib
from typing import Any

_clock = itertools.count()


def _stamp() -> str:
    n = next(_clock)
    return f"2026-03-01T10:{n // 60 % 60:02d}:{n % 60:02d}.000Z"


class Transcript:
    """Builds one session's lines, each linked to the one before through ``parentUuid``."""

    def __init__(self, session_id: str, cwd: str, *, sidechain: bool = False, agent_id: str | None = None) -> None:
        self.session_id = session_id
        self.cwd = cwd
        self.sidechain = sidechain
        self.agent_id = agent_id
        self.lines: list[dict[str, Any]] = []
        self._parent: str | None = None

    def _line(self, kind: str, **fields: Any) -> dict[str, Any]:
        line: dict[str, Any] = {
            "parentUuid": self._parent,
            "isSidechain": self.sidechain,
            "userType": "external",
            "cwd": self.cwd,
            "sessionId": self.session_id,
            "version": "2.0.0",
            "gitBranch": "main",
            "type": kind,
            "uuid": str(uuidlib.uuid4()),
            "timestamp": _stamp(),
            **fields,
        }
        if self.agent_id is not None:
            line["agentId"] = self.agent_id
        self._parent = line["uuid"]
        self.lines.append(line)
        return line

    def user(self, text: str) -> dict[str, Any]:
        return self._line("user", message={"role": "user", "content": text})

    def tool_result(self, tool_use_id: str, output: str, *, is_error: bool = False) -> dict[str, Any]:
        content = [{"type": "tool_result", "tool_use_id": tool_use_id, "content": output, "is_error": is_error}]
        return self._line("user", message={"role": "user", "content": content})

    def response(self, blocks: list[dict[str, Any]], usage: dict[str, int]) -> list[dict[str, Any]]:
        """One model response: a line per content block, all with the response's id and usage."""
        message_id = f"msg_{uuidlib.uuid4().hex[:24]}"
        return [
            self._line(
                "assistant",
                requestId=f"req_{message_id[4:]}",
                message={
                    "id": message_id,
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-sonnet-4-5",
                    "content": [block],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": dict(usage),
                },
            )
            for block in blocks
        ]

    def title(self, title: str) -> dict[str, Any]:
        line = {"type": "custom-title", "customTitle": title, "sessionId": self.session_id}
        self.lines.append(line)
        return line


USAGE = {"input_tokens": 12, "output_tokens": 40, "cache_creation_input_tokens": 100, "cache_read_input_tokens": 7}


def conversation(session_id: str, cwd: str) -> Transcript:
    """A small coding conversation: a prompt, a response that thinks, talks and calls a tool, its result, an answer."""
    t = Transcript(session_id, cwd)
    t.user("List the files, please")
    t.response(
        [
            {"type": "thinking", "thinking": "I should run ls.", "signature": "sig-1"},
            {"type": "text", "text": "Let me look."},
            {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}},
        ],
        USAGE,
    )
    t.tool_result("toolu_1", "README.md\nsrc")
    t.response([{"type": "text", "text": "There are two: README.md and src."}], {**USAGE, "output_tokens": 9})
    t.title("Listing files")
    return t


def subagent(session_id: str, cwd: str, agent_id: str) -> Transcript:
    t = Transcript(session_id, cwd, sidechain=True, agent_id=agent_id)
    t.user("Find the tests")
    t.response([{"type": "text", "text": "They are in tests/."}], USAGE)
    return t
