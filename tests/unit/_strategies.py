"""Hypothesis strategies for every block and event type, biased toward awkward text."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from sessiondb import (
    Compacted,
    Custom,
    Fork,
    Inherited,
    Message,
    PromptRecorded,
    SessionDeleted,
    SessionStarted,
    Text,
    Thinking,
    ToolResult,
    ToolUse,
    Usage,
)

# Characters that break naive JSONL handling: line separators str.splitlines() splits on,
# NUL and other C0 controls, DEL, a BOM, astral-plane emoji (surrogate pairs in UTF-16).
AWKWARD = [
    "",
    "\x00",
    "a\x00b",
    "\u2028",
    "x\u2028y\u2029z\x85",
    "\r\n\r",
    "\n",
    "\t\x0b\x0c\x1b\x1f\x7f",
    "\ufeff",
    "\U0001f600\U0001f9d1\u200d\U0001f4bb",
    "\\u0000 not an escape",
    '"}\n{"batch":1,"bytes":5,"crc":0,"first":1}\n',
    "\U0010ffff",
]
# Every code point except lone surrogates (which UTF-8 cannot carry; that refusal is tested elsewhere).
any_char = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=("Cs",))
big_text = st.builds(lambda chunk, n: chunk * n, st.sampled_from(AWKWARD[1:]), st.integers(10_000, 60_000))
text = st.one_of(st.sampled_from(AWKWARD), st.text(any_char, max_size=60), big_text)
small_int = st.integers(0, 2**31)
big_count = st.integers(0, 2**63 - 1)

usage = st.builds(Usage, small_int, small_int, small_int, small_int)
text_block = st.builds(Text, text)
thinking_block = st.builds(Thinking, text, st.none() | text)
tool_use_block = st.builds(ToolUse, text, text, text)
tool_result_block = st.builds(ToolResult, text, text, text, st.booleans())
block = st.one_of(text_block, thinking_block, tool_use_block, tool_result_block)
role = st.sampled_from(["system", "user", "assistant", "tool"])

message = st.builds(Message, role, st.lists(block, max_size=4), st.none() | usage)
prompt = st.builds(PromptRecorded, text, big_count)
compacted = st.builds(Compacted, text, big_count, st.booleans(), st.none() | st.integers(0, 2**32 - 1))

json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    text,
)
json_value: st.SearchStrategy[Any] = st.recursive(
    json_scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(any_char, max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
custom = st.builds(Custom, text, json_value)

# What append() accepts.
user_event = st.one_of(message, message, prompt, compacted, custom)
# What a store takes after any history: a compaction that rewrites the live context may remove no more messages
# than are live (checked at append), so here it removes none; a metadata-only one (importers') any count.
storable_compacted = st.one_of(
    st.builds(Compacted, text, st.just(0), st.just(True), st.none() | st.integers(0, 2**32 - 1)),
    st.builds(Compacted, text, big_count, st.just(False), st.none() | st.integers(0, 2**32 - 1)),
)
storable_event = st.one_of(message, message, prompt, storable_compacted, custom)

fork = st.builds(Fork, text, st.none() | text, big_count)
inherited = st.builds(Inherited, big_count, usage, st.booleans())
session_started = st.builds(
    SessionStarted, big_count, st.none() | text, st.none() | text, st.none() | fork, st.none() | inherited
)
# Every event type, including the two only the store writes.
any_event = st.one_of(user_event, session_started, st.just(SessionDeleted()))
