"""Running the CLI for real: in-process through ``main(argv)`` and as ``python -m sessiondb``."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import sessiondb
from sessiondb import Compacted, Message, Text, Thinking, ToolUse, Usage
from sessiondb.cli import main

SRC = str(Path(sessiondb.__file__).resolve().parent.parent)


@dataclass
class Result:
    code: int
    out: str
    err: str


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def run_in_process(*argv: str, stderr: io.StringIO | None = None) -> Result:
    out = io.StringIO()
    err = stderr if stderr is not None else io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return Result(code, out.getvalue(), err.getvalue())


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("NO_COLOR", None)
    return env


def run_subprocess(*argv: str, timeout: float = 60) -> Result:
    done = subprocess.run(
        [sys.executable, "-m", "sessiondb", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment(),
    )
    return Result(done.returncode, done.stdout, done.stderr)


def build_sample_store(path: Path) -> None:
    """A small store: a conversation with thinking, a tool call and result, a compaction and a fork."""

    async def build() -> None:
        async with sessiondb.open_store(path) as store:
            sid = await store.create_session(session_id="chat", model="claude-test", workspace_root="/repo")
            await store.append(sid, Message.user("List the files"))
            await store.append(
                sid,
                Message.assistant(
                    [Thinking("secret reasoning " * 5), Text("Looking."), ToolUse("call-1", "bash", '{"cmd":"ls"}')],
                    usage=Usage(100, 20),
                ),
            )
            await store.append(sid, Message.tool_result("call-1", "bash", "\n".join(f"f{i}" for i in range(40))))
            await store.append(sid, Message.assistant("40 files.", usage=Usage(150, 5)))
            await store.fork(sid, branch_name="try-2", at_version=3, session_id="chat-fork")
            other = await store.create_session(session_id="other", model="m2")
            await store.append(other, Message.user("first"), Message.user("second"))
            await store.append(other, Compacted("they said two things", 1))
            await store.record_prompt(other, "typed prompt")

    asyncio.run(build())
