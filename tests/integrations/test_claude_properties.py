"""Generated entries round-trip deep-equal; appends from several processes keep each call together."""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest
from claude_agent_sdk import fold_session_summary
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sessiondb
from sessiondb.integrations.claude_agent_sdk import SessionDBSessionStore

KEY: Any = {"project_key": "proj", "session_id": "sess"}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
# Block-shaped content, so the projection into messages meets odd and partial shapes too.
blocks = st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "thinking", "tool_use", "tool_result", "image", "x"])},
    optional={
        "text": json_values,
        "thinking": json_values,
        "signature": json_values,
        "id": json_values,
        "name": json_values,
        "input": json_values,
        "tool_use_id": json_values,
        "content": json_values,
        "is_error": json_values,
    },
)
usage = st.dictionaries(
    st.sampled_from(["input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"]),
    st.integers(-5, 2**40) | json_values,
)
messages = st.fixed_dictionaries(
    {},
    optional={
        "role": json_values,
        "content": st.text() | st.lists(blocks, max_size=4) | json_values,
        "id": st.sampled_from(["msg_1", "msg_2"]) | json_values,
        "usage": usage | json_values,
        "model": json_values,
    },
)
entries = st.fixed_dictionaries(
    {"type": st.sampled_from(["user", "assistant", "system", "summary", "tag", "x"])},
    optional={
        "uuid": st.uuids().map(str),
        "message": messages | json_values,
        "timestamp": st.sampled_from(["2026-01-01T00:00:00.000Z", "bad"]) | json_values,
        "customTitle": json_values,
        "cwd": json_values,
        "extra": json_values,
        "isSidechain": json_values,
    },
)


def _unique_uuids(batches: list[list[dict[str, Any]]]) -> list[list[dict[str, Any]]]:
    seen: set[str] = set()
    out = []
    for batch in batches:
        kept = []
        for item in batch:
            uuid = item.get("uuid")
            if uuid is None or uuid not in seen:
                kept.append(item)
                if uuid is not None:
                    seen.add(uuid)
        out.append(kept)
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(entries, max_size=5), min_size=1, max_size=4))
def test_generated_entries_round_trip_deep_equal(generated: list[list[dict[str, Any]]]) -> None:
    batches = _unique_uuids(generated)

    async def run() -> None:
        async with sessiondb.open_store(":memory:") as store:
            adapter = SessionDBSessionStore(store)
            for batch in batches:
                await adapter.append(KEY, batch)  # type: ignore[arg-type]
                await adapter.append(KEY, batch)  # type: ignore[arg-type]  # a retry is stored once…
            # …a batch is recognised by its uuids (the whole batch landed, uuid-less entries with it);
            # a batch without any uuid is appended again: the protocol does not deduplicate those.
            expected = [
                item for batch in batches for item in (batch if any("uuid" in i for i in batch) else batch + batch)
            ]
            loaded = await adapter.load(KEY)
            if not any(batches):
                assert loaded is None
                return
            assert loaded == expected
            (summary,) = await adapter.list_session_summaries("proj")
            assert summary["data"] == fold_session_summary(None, KEY, expected)["data"]  # type: ignore[arg-type]
            # The projection of the same entries is a valid Session (every derived event decoded back).
            await store.load(next(iter(await store.list_sessions())).session_id)

    anyio.run(run)


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["directory", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_appends_from_several_processes_keep_each_call_together(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    schema = f"sdbtest_{uuid.uuid4().hex[:12]}"
    dsn = request.getfixturevalue("pg_dsn") if kind == "postgres" else None
    # PostgreSQL: a fresh schema; the directory: several writer processes on one store directory.
    target = f"{dsn}?schema={schema}" if dsn is not None else str(tmp_path / "store")
    try:
        await _several_processes(target)
    finally:
        if dsn is not None:
            import asyncpg

            conn = await asyncpg.connect(dsn)
            try:
                await conn.execute(f"drop schema if exists {schema} cascade")
            finally:
                await conn.close()


async def _several_processes(target: str) -> None:
    workers, tasks, batches, size = 3, 3, 4, 3
    script = Path(__file__).with_name("_claude_worker.py")
    processes = [
        await asyncio.create_subprocess_exec(sys.executable, str(script), target, *map(str, (w, tasks, batches, size)))
        for w in range(workers)
    ]
    codes = await asyncio.wait_for(asyncio.gather(*(p.wait() for p in processes)), timeout=120)
    assert codes == [0] * workers
    async with sessiondb.open_store(target) as store:
        adapter = SessionDBSessionStore(store)
        key: Any = {"project_key": "proj", "session_id": "shared"}
        loaded = await adapter.load(key)
        assert loaded is not None and len(loaded) == workers * tasks * batches * size
        calls = [loaded[i : i + size] for i in range(0, len(loaded), size)]
        for call in calls:
            assert [e["i"] for e in call] == list(range(size))
            assert len({(e["p"], e["t"], e["b"]) for e in call}) == 1
        for w in range(workers):
            for t in range(tasks):
                assert [c[0]["b"] for c in calls if (c[0]["p"], c[0]["t"]) == (w, t)] == list(range(batches))
        (summary,) = await adapter.list_session_summaries("proj")
        assert summary["data"] == fold_session_summary(None, key, loaded)["data"]
