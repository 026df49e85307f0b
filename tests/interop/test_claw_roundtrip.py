"""Property tests: the dialect writer against a naive transliteration of upstream's, and
import -> export -> import round trips of generated claw-code sessions."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import anyio
import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sessiondb
from sessiondb._interop import _dialect

from . import _reference

SPECIAL = [
    "\u2028",
    "\u2029",
    "\x85",
    "\x00",
    "\x01",
    "\x1f",
    "\x7f",
    "\x9f",
    "\n",
    "\r",
    "\t",
    "\b",
    "\f",
    '"',
    "\\",
    "/",
    "😀",
    "👩",
    "\u200d",
    "é",
    "\ufeff",
    "\U0010ffff",
    " ",
]
chars = st.one_of(st.sampled_from(SPECIAL), st.characters(exclude_categories=("Cs",)))
texts = st.text(chars, max_size=40)
# Huge tool outputs: a few characters repeated up to ~1.5 MB.
huge = st.builds(lambda piece, n: piece * n, st.text(chars, min_size=1, max_size=3), st.integers(100_000, 500_000))
u32 = st.integers(0, 2**32 - 1)
i64 = st.integers(0, 2**63 - 1)


def block() -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(
        st.builds(lambda t: {"type": "text", "text": t}, texts),
        st.builds(lambda t: {"type": "thinking", "thinking": t}, texts),
        st.builds(lambda t, s: {"type": "thinking", "thinking": t, "signature": s}, texts, texts),
        st.builds(lambda i, n, x: {"type": "tool_use", "id": i, "name": n, "input": x}, texts, texts, texts),
        st.builds(
            lambda i, n, o, e: {"type": "tool_result", "tool_use_id": i, "tool_name": n, "output": o, "is_error": e},
            texts,
            texts,
            texts,
            st.booleans(),
        ),
    )


usage = st.builds(
    lambda a, b, c, d: {
        "input_tokens": a,
        "output_tokens": b,
        "cache_creation_input_tokens": c,
        "cache_read_input_tokens": d,
    },
    u32,
    u32,
    u32,
    u32,
)
message = st.builds(
    lambda role, blocks, u: {"role": role, "blocks": blocks, **({"usage": u} if u is not None else {})},
    st.sampled_from(["system", "user", "assistant", "tool"]),
    st.lists(block(), max_size=4),
    st.none() | usage,
)
huge_result = st.builds(
    lambda o: {
        "role": "tool",
        "blocks": [{"type": "tool_result", "tool_use_id": "t", "tool_name": "bash", "output": o, "is_error": False}],
    },
    huge,
)


@st.composite
def sessions(
    draw: st.DrawFn,
) -> tuple[dict[str, Any], dict[str, Any] | None, list[dict[str, Any]], list[dict[str, Any]]]:
    created = draw(i64)
    # Metadata the store keeps in PostgreSQL text columns holds no NUL (refused on every backend).
    metadata_texts = texts.map(lambda text: text.replace("\x00", ""))
    meta: dict[str, Any] = {
        "version": 1,
        "session_id": "session-" + draw(st.from_regex(r"[0-9]{1,13}-[0-9]{1,4}", fullmatch=True)),
        "created_at_ms": created,
        "updated_at_ms": draw(i64),
    }
    if draw(st.booleans()):
        fork: dict[str, Any] = {"parent_session_id": draw(texts)}
        branch = draw(st.none() | metadata_texts)
        if branch is not None:
            fork["branch_name"] = branch
        meta["fork"] = fork
    for key in ("workspace_root", "model"):
        value = draw(st.none() | metadata_texts)
        if value is not None:
            meta[key] = value
    compaction = draw(
        st.none() | st.builds(lambda c, r, s: {"count": c, "removed_message_count": r, "summary": s}, u32, i64, texts)
    )
    prompts = draw(st.lists(st.builds(lambda t, x: {"timestamp_ms": t, "text": x}, i64, texts), max_size=4))
    messages = draw(st.lists(message, max_size=8))
    if draw(st.integers(0, 9)) == 0:
        messages.insert(draw(st.integers(0, len(messages))), draw(huge_result))
    return meta, compaction, prompts, messages


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | texts,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
        max_leaves=12,
    )
)
def test_writer_matches_upstream_render(value: Any) -> None:
    rendered = _dialect.render(value)
    assert rendered == _reference.render(value)
    assert "\n" not in rendered  # one record is one line
    assert _dialect.parse(rendered) == value


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(sessions())
def test_import_export_import_round_trip(case: tuple[Any, Any, Any, Any]) -> None:
    meta, compaction, prompts, messages = case
    canonical = _reference.snapshot(meta, compaction, prompts, messages)
    anyio.run(_round_trip, meta, compaction, prompts, messages, canonical, canonical)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(sessions())
def test_legacy_object_import_exports_the_same_jsonl(case: tuple[Any, Any, Any, Any]) -> None:
    meta, compaction, prompts, messages = case
    legacy = _reference.legacy_object(meta, compaction, prompts, messages)
    canonical = _reference.snapshot(meta, compaction, prompts, messages)
    anyio.run(_round_trip, meta, compaction, prompts, messages, legacy, canonical)


async def _round_trip(
    meta: Any, compaction: Any, prompts: Any, messages: Any, source_bytes: bytes, canonical: bytes
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        source = directory / "in.jsonl"
        source.write_bytes(source_bytes)
        async with sessiondb.open_store(":memory:") as store:
            await sessiondb.import_claw_files(store, source)
            sid = meta["session_id"]
            first = await store.load(sid)
            _check_projection(first, meta, compaction, prompts, messages)
            exported = await sessiondb.export_claw_session(store, sid, directory / "out.jsonl")
            assert exported.read_bytes() == canonical  # byte for byte what upstream writes
        async with sessiondb.open_store(":memory:") as again:
            await sessiondb.import_claw_files(again, exported)
            second = await again.load(sid)
            for field in (
                "messages",
                "compaction",
                "prompt_history",
                "fork",
                "model",
                "workspace_root",
                "created_at_ms",
                "updated_at_ms",
                "usage",
            ):
                assert getattr(second, field) == getattr(first, field), field


def _check_projection(session: sessiondb.Session, meta: Any, compaction: Any, prompts: Any, messages: Any) -> None:
    assert session.session_id == meta["session_id"]
    assert (session.created_at_ms, session.updated_at_ms) == (meta["created_at_ms"], meta["updated_at_ms"])
    assert session.model == meta.get("model")
    assert session.workspace_root == meta.get("workspace_root")
    fork = meta.get("fork")
    assert (None if session.fork is None else (session.fork.parent_session_id, session.fork.branch_name)) == (
        None if fork is None else (fork["parent_session_id"], fork.get("branch_name"))
    )
    assert (None if session.compaction is None else msgspec.to_builtins(session.compaction)) == compaction
    assert [{"timestamp_ms": p.timestamp_ms, "text": p.text} for p in session.prompt_history] == prompts
    assert [_message_dict(m) for m in session.messages] == messages


def _message_dict(message: sessiondb.Message) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(message)
    out.pop("type")
    if out.get("usage") is None:
        out.pop("usage", None)
    for block in out["blocks"]:
        if block["type"] == "thinking" and block.get("signature") is None:
            block.pop("signature", None)
    return out
