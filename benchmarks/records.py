"""The records every system writes: a deterministic, seeded mix of agent-conversation messages.

One script of records is generated from a seed and shared by every system, so all of
them store the same contents. A record is neutral data; each system adapter converts
the script to its own native objects once, before the clock starts.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field

_TEXT = (
    "the build fails because lockfile pins an old resolver version so we update it and rerun tests "
    "function returns none when input list is empty check caller handles that case before merging "
    "error traceback shows import cycle between modules config loader and plugin registry at startup"
)
WORDS = _TEXT.split()


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    input: str  # JSON text, as models send it


@dataclass(frozen=True)
class Record:
    """One message: a user turn, an assistant step, or a tool result."""

    role: str  # "user" | "assistant" | "tool"
    text: str = ""
    thinking: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    input_tokens: int = 0
    output_tokens: int = 0
    tool_use_id: str = ""
    tool_name: str = ""
    output: str = ""
    is_error: bool = False
    extra: dict[str, str] = field(default_factory=dict)


def _words(rng: random.Random, size: int) -> str:
    out: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(WORDS)
        out.append(word)
        length += len(word) + 1
    return " ".join(out)[:size]


def _tool_output(rng: random.Random) -> str:
    # Heavy-tailed like real tool output: mostly a few hundred bytes (ls, a short
    # grep), sometimes a file or a test log of tens of KiB. Log-normal, clipped.
    size = int(min(48 * 1024, max(200, math.exp(rng.gauss(math.log(900), 1.3)))))
    lines = []
    length = 0
    while length < size:
        line = f"{rng.randrange(10_000):>5}: " + _words(rng, rng.randrange(20, 110))
        lines.append(line)
        length += len(line) + 1
    return "\n".join(lines)[:size]


TOOLS = ("bash", "read_file", "grep", "edit_file", "run_tests")


def conversation_script(seed: int, count: int) -> list[Record]:
    """``count`` records forming agent turns: user, then assistant/tool steps, then an answer."""
    rng = random.Random(seed)
    records: list[Record] = []
    call = 0
    while len(records) < count:
        records.append(Record("user", text=_words(rng, rng.randrange(40, 400))))
        for _step in range(rng.randrange(1, 5)):
            calls = []
            for _ in range(1 if rng.random() < 0.85 else 2):
                call += 1
                name = rng.choice(TOOLS)
                arguments = json.dumps({"cmd": _words(rng, rng.randrange(10, 200)), "timeout": rng.randrange(1, 60)})
                calls.append(ToolCall(f"toolu_{seed}_{call}", name, arguments))
            records.append(
                Record(
                    "assistant",
                    text=_words(rng, rng.randrange(0, 300)),
                    thinking=_words(rng, rng.randrange(100, 1500)),
                    tool_calls=tuple(calls),
                    input_tokens=rng.randrange(1_000, 60_000),
                    output_tokens=rng.randrange(50, 2_000),
                )
            )
            for tool_call in calls:
                records.append(
                    Record(
                        "tool",
                        tool_use_id=tool_call.id,
                        tool_name=tool_call.name,
                        output=_tool_output(rng),
                        is_error=rng.random() < 0.05,
                    )
                )
        records.append(
            Record(
                "assistant",
                text=_words(rng, rng.randrange(100, 1200)),
                thinking=_words(rng, rng.randrange(100, 800)),
                input_tokens=rng.randrange(1_000, 60_000),
                output_tokens=rng.randrange(50, 2_000),
            )
        )
    return records[:count]


def small_script(seed: int, count: int) -> list[Record]:
    """Short records (~200 bytes encoded), the size the project's reference figures were measured with."""
    rng = random.Random(seed)
    records: list[Record] = []
    while len(records) < count:
        if len(records) % 2 == 0:
            records.append(Record("user", text=_words(rng, rng.randrange(60, 110))))
        else:
            records.append(
                Record(
                    "assistant",
                    text=_words(rng, rng.randrange(40, 90)),
                    input_tokens=rng.randrange(1_000, 60_000),
                    output_tokens=rng.randrange(50, 2_000),
                )
            )
    return records


MIXES = {"agent": conversation_script, "small": small_script}


def payload_bytes(record: Record) -> int:
    """The content size of a record (text, thinking, tool input and output), for the report."""
    return (
        len(record.text)
        + len(record.thinking)
        + sum(len(c.input) + len(c.name) + len(c.id) for c in record.tool_calls)
        + len(record.output)
    )
