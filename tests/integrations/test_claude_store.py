"""SessionDBSessionStore beyond the SDK's suite: bad input, retries, concurrency, generations, reopening."""

from __future__ import annotations

import asyncio
import contextlib
import math
from pathlib import Path
from typing import Any

import pytest
from claude_agent_sdk import fold_session_summary

import sessiondb
from sessiondb import EventTooLargeError, InvalidInputError
from sessiondb.integrations.claude_agent_sdk import SessionDBSessionStore

from .conftest import StoreFactory

pytestmark = pytest.mark.anyio

KEY: Any = {"project_key": "proj", "session_id": "sess"}


def entry(n: int, **extra: Any) -> dict[str, Any]:
    return {"type": "user", "uuid": f"u-{n}", "timestamp": "2026-01-01T00:00:00.000Z", "n": n, **extra}


BAD_KEYS = [
    ({"project_key": "", "session_id": "s"}, "project_key must not be empty"),
    ({"project_key": "p", "session_id": ""}, "session_id must not be empty"),
    ({"project_key": "p", "session_id": "a/b"}, "must not contain '/'"),
    ({"project_key": "..", "session_id": "s"}, "nor be '.' or '..'"),
    ({"project_key": "p\\q", "session_id": "s"}, "must not contain '/'"),
    ({"project_key": "p", "session_id": "s\n"}, "control, line-break"),
    ({"project_key": "p\x00", "session_id": "s"}, "control, line-break"),
    ({"project_key": 7, "session_id": "s"}, "project_key must be a str"),
    ({"session_id": "s"}, "project_key must be a str"),
    ({"project_key": "p", "session_id": "s", "subpath": ""}, "omit subpath for the main transcript"),
    ({"project_key": "p", "session_id": "s", "subpath": "../x"}, "'..' segment"),
    ({"project_key": "p", "session_id": "s", "subpath": "subagents/../../x"}, "'..' segment"),
    ({"project_key": "p", "session_id": "s", "subpath": "/etc/passwd"}, "must be relative"),
    ({"project_key": "p", "session_id": "s", "subpath": "a\\b"}, "must be relative"),
    ({"project_key": "p", "session_id": "s" * 300}, "session_id takes 300 bytes .*room for 213: use a shorter key"),
    (
        {"project_key": "p", "session_id": "s", "subpath": "a/" + "é" * 110},
        "session_id and subpath take 225 bytes .*room for 212",  # é is 2 bytes, / is %2F
    ),
]


@pytest.mark.parametrize(("key", "complaint"), BAD_KEYS)
async def test_bad_keys_are_refused_naming_the_key(key: Any, complaint: str) -> None:
    async with sessiondb.open_store(":memory:") as store:
        adapter = SessionDBSessionStore(store)
        for call in (adapter.append(key, [entry(1)]), adapter.load(key), adapter.delete(key)):
            with pytest.raises(InvalidInputError, match=complaint) as raised:
                await call
            assert "key (" in str(raised.value)
        assert await store.list_sessions() == []


BAD_ENTRIES = [
    ([1], "is a int, not a JSON object"),
    (["{}"], "is a str, not a JSON object"),
    ([None], "is a NoneType, not a JSON object"),
    ([{"uuid": "x"}], "has no str 'type'"),
    ([{"type": 3}], "has no str 'type'"),
    ([{"type": "x", "uuid": 5}], "'uuid' that is not a non-empty str"),
    ([{"type": "x", "uuid": "a\x00b"}], "'uuid' that is not a non-empty str"),
    ([{"type": "x", "v": math.nan}], "has no JSON form"),
    ([{"type": "x", "v": [math.inf]}], "has no JSON form"),
    ([{"type": "x", "v": (1, 2)}], "a tuple would read back"),
    ([{"type": "x", "v": {1, 2}}], "a set would read back"),
    ([{"type": "x", "v": {1: "a"}}], "the key 1 is not a str"),
    ([{"type": "x", "v": "\ud800"}], "lone surrogate"),
    ([{"type": "x", "v": b"bytes"}], "a bytes would read back"),
]


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(("bad", "complaint"), [*BAD_ENTRIES, ([{"type": "x", "v": _nested(5000)}], "nests deeper")])
async def test_bad_entries_refuse_the_whole_batch(
    open_fresh_store: StoreFactory, bad: list[Any], complaint: str
) -> None:
    adapter = SessionDBSessionStore(await open_fresh_store())
    with pytest.raises(InvalidInputError, match=complaint) as raised:
        await adapter.append(KEY, [entry(1), *bad])
    assert "project_key='proj'" in str(raised.value) and "session_id='sess'" in str(raised.value)
    assert await adapter.load(KEY) is None  # the good entry before the bad one was not written either
    await adapter.append(KEY, [entry(2)])
    with pytest.raises(InvalidInputError):
        await adapter.append(KEY, [entry(3), *bad])
    assert await adapter.load(KEY) == [entry(2)]
    assert [s["data"] for s in await adapter.list_session_summaries("proj")] == [
        fold_session_summary(None, KEY, [entry(2)])["data"]  # type: ignore[list-item]
    ]


async def test_anything_json_gives_back_equal_is_accepted() -> None:
    # Up to the store's documented nesting limit (an entry sits two levels down in its event).
    odd = entry(1, big=2**70, negative=-(2**80), deep=_nested(60), text="😀 \u2028 \x00", floats=[0.1, -0.0, 1e308])
    async with sessiondb.open_store(":memory:") as store:
        adapter = SessionDBSessionStore(store)
        await adapter.append(KEY, [odd])
        assert await adapter.load(KEY) == [odd]
        # Deeper than the limit: refused naming the key and where, nothing written.
        with pytest.raises(InvalidInputError, match=r"project_key='proj'.*nests containers deeper"):
            await adapter.append(KEY, [entry(2, deep=_nested(200))])
        assert await adapter.load(KEY) == [odd]


async def test_entries_must_be_a_list() -> None:
    async with sessiondb.open_store(":memory:") as store:
        with pytest.raises(InvalidInputError, match="entries must be a list"):
            await SessionDBSessionStore(store).append(KEY, ({"type": "x"},))  # type: ignore[arg-type]


async def test_an_entry_over_max_event_bytes_fails_the_batch_naming_the_key() -> None:
    async with sessiondb.open_store(":memory:", max_event_bytes=4096) as store:
        adapter = SessionDBSessionStore(store)
        await adapter.append(KEY, [entry(1)])
        with pytest.raises(EventTooLargeError, match="project_key='proj'"):
            await adapter.append(KEY, [entry(2), entry(3, text="x" * 10_000), entry(4)])
        assert await adapter.load(KEY) == [entry(1)]
        await adapter.append(KEY, [entry(5)])
        assert await adapter.load(KEY) == [entry(1), entry(5)]


async def test_a_retried_batch_is_stored_once(open_fresh_store: StoreFactory) -> None:
    adapter = SessionDBSessionStore(await open_fresh_store())
    first = [entry(1), entry(2)]
    await adapter.append(KEY, first)
    await adapter.append(KEY, first)  # the SDK's retry after a lost acknowledgement
    await adapter.append(KEY, [entry(3)])
    await adapter.append(KEY, [entry(3)])
    # A fresh adapter (another process) knows nothing cached: the store recognises the ids.
    other = SessionDBSessionStore(adapter.store)
    await other.append(KEY, first)
    assert await adapter.load(KEY) == [entry(1), entry(2), entry(3)]
    summaries = await adapter.list_session_summaries("proj")
    assert summaries[0]["data"] == fold_session_summary(None, KEY, [entry(1), entry(2), entry(3)])["data"]  # type: ignore[list-item]


async def test_uuids_are_upsert_keys_and_entries_without_one_are_not_deduplicated(
    open_fresh_store: StoreFactory,
) -> None:
    adapter = SessionDBSessionStore(await open_fresh_store())
    await adapter.append(KEY, [entry(1), entry(2)])
    # A later batch that repeats a stored entry: only the new ones are added.
    await adapter.append(KEY, [entry(2), entry(3)])
    # A uuid twice in one batch: stored once.
    await adapter.append(KEY, [entry(4), entry(4)])
    title = {"type": "custom-title", "customTitle": "t", "sessionId": "sess"}
    await adapter.append(KEY, [title])
    await adapter.append(KEY, [title])
    assert await adapter.load(KEY) == [entry(1), entry(2), entry(3), entry(4), title, title]


async def test_concurrent_appends_to_one_key_keep_each_call_together_and_in_order(
    open_fresh_store: StoreFactory,
) -> None:
    store = await open_fresh_store()
    adapters = [SessionDBSessionStore(store) for _ in range(2)]  # two adapters: conflicts, not just the lock
    writers, batches, size = 8, 6, 3

    async def writer(w: int) -> None:
        for b in range(batches):
            batch = [entry(0, uuid=f"w{w}-b{b}-{i}", w=w, b=b, i=i) for i in range(size)]
            await adapters[w % 2].append(KEY, batch)

    await asyncio.gather(*(writer(w) for w in range(writers)))
    loaded = await adapters[0].load(KEY)
    assert loaded is not None and len(loaded) == writers * batches * size
    calls = [loaded[i : i + size] for i in range(0, len(loaded), size)]
    for call in calls:
        assert [e["i"] for e in call] == list(range(size))
        assert len({(e["w"], e["b"]) for e in call}) == 1
    for w in range(writers):
        assert [call[0]["b"] for call in calls if call[0]["w"] == w] == list(range(batches))
    # The summary is the fold of every entry in stored order: no fold was lost to a race.
    (summary,) = await adapters[1].list_session_summaries("proj")
    assert summary["data"] == fold_session_summary(None, KEY, loaded)["data"]  # type: ignore[arg-type]


async def test_a_deleted_key_written_again_starts_empty(open_fresh_store: StoreFactory) -> None:
    adapter = SessionDBSessionStore(await open_fresh_store())
    sub = {**KEY, "subpath": "subagents/agent-1"}
    await adapter.append(KEY, [entry(1)])
    await adapter.append(sub, [entry(2)])
    await adapter.delete(KEY)
    assert await adapter.load(sub) is None
    await adapter.append(KEY, [entry(1)])  # the same uuid again: a new transcript, not a retry
    await adapter.append(sub, [entry(3)])
    assert await adapter.load(KEY) == [entry(1)]
    assert await adapter.load(sub) == [entry(3)]
    assert [s["session_id"] for s in await adapter.list_sessions("proj")] == ["sess"]
    assert await adapter.list_subkeys(KEY) == ["subagents/agent-1"]
    await adapter.delete(KEY)
    await adapter.append(KEY, [entry(4)])
    assert await adapter.load(KEY) == [entry(4)]
    assert [s["data"] for s in await adapter.list_session_summaries("proj")] == [
        fold_session_summary(None, KEY, [entry(4)])["data"]  # type: ignore[list-item]
    ]


async def test_keys_with_escaped_characters_stay_apart() -> None:
    async with sessiondb.open_store(":memory:") as store:
        adapter = SessionDBSessionStore(store)
        keys: list[Any] = [
            {"project_key": "a~b", "session_id": "c"},
            {"project_key": "a", "session_id": "b~c"},
            {"project_key": "a%7Eb", "session_id": "c"},
            {"project_key": "a", "session_id": "b", "subpath": "c"},
            {"project_key": "a", "session_id": "b", "subpath": "c~~2"},
            {"project_key": "a", "session_id": "b~~2"},
            {"project_key": "ä 😀", "session_id": "b", "subpath": "x/y/z"},
        ]
        for n, key in enumerate(keys):
            await adapter.append(key, [entry(n)])
        for n, key in enumerate(keys):
            assert await adapter.load(key) == [entry(n)]
        assert await adapter.list_sessions("a~b") == [{"session_id": "c", "mtime": pytest.approx(0, abs=2**63)}]
        assert sorted(s["session_id"] for s in await adapter.list_sessions("a")) == ["b~c", "b~~2"]
        assert await adapter.list_subkeys({"project_key": "a", "session_id": "b"}) == ["c", "c~~2"]
        assert await adapter.list_subkeys({"project_key": "ä 😀", "session_id": "b"}) == ["x/y/z"]


async def test_loaded_entries_are_copies() -> None:
    async with sessiondb.open_store(":memory:") as store:
        adapter = SessionDBSessionStore(store)
        appended = entry(1, nested={"list": [1, 2]})
        await adapter.append(KEY, [appended])
        appended["nested"]["list"].append(3)
        loaded = await adapter.load(KEY)
        assert loaded == [entry(1, nested={"list": [1, 2]})]
        loaded[0]["nested"]["list"].clear()  # type: ignore[typeddict-item]
        assert await adapter.load(KEY) == [entry(1, nested={"list": [1, 2]})]


async def test_a_reopened_directory_store_goes_on_where_it_stopped(tmp_path: Path) -> None:
    first = [entry(1, message={"role": "user", "content": "hello there"}), entry(2, customTitle="one")]
    async with sessiondb.open_store(tmp_path / "s") as store:
        await SessionDBSessionStore(store).append(KEY, first)
    async with sessiondb.open_store(tmp_path / "s") as store:
        adapter = SessionDBSessionStore(store)
        await adapter.append(KEY, first)  # a retry across a restart
        await adapter.append(KEY, [entry(3, customTitle="two")])
        assert await adapter.load(KEY) == [*first, entry(3, customTitle="two")]
        (summary,) = await adapter.list_session_summaries("proj")
        (listed,) = await adapter.list_sessions("proj")
        assert summary["mtime"] == listed["mtime"] == (await store.list_sessions())[0].updated_at_ms
        assert summary["data"] == fold_session_summary(None, KEY, [*first, entry(3, customTitle="two")])["data"]  # type: ignore[list-item]
        assert summary["data"]["custom_title"] == "two"


async def test_transcripts_survive_retention(tmp_path: Path) -> None:
    # Small segments and retention of none of them: old history is deleted once snapshots cover it.
    settings = sessiondb.CompactionSettings(
        background=False, min_tail_events=1, min_tail_bytes=1, keep_segments=0, keep_seconds=None
    )
    sub = {**KEY, "subpath": "subagents/agent-1"}
    async with sessiondb.open_store(tmp_path / "s", segment_bytes=4096, compaction=settings) as store:
        adapter = SessionDBSessionStore(store)
        written = [entry(n, message={"role": "user", "content": f"prompt {n} " * 20}) for n in range(40)]
        for start in range(0, 40, 4):
            await adapter.append(KEY, written[start : start + 4])
        await adapter.append(sub, [entry(100)])
        for _ in range(3):
            await adapter.append({"project_key": "proj", "session_id": "other"}, [entry(200 + _)])
            await store.compact()
        sid = await adapter.session_id_for(KEY)
        assert sid is not None
        with pytest.raises(sessiondb.HistoryUnavailableError):
            [event async for event in store.read(sid)]  # the log no longer has the start
    async with sessiondb.open_store(tmp_path / "s", segment_bytes=4096, compaction=settings) as store:
        adapter = SessionDBSessionStore(store)  # a fresh adapter: nothing cached
        assert await adapter.load(KEY) == written
        assert await adapter.load(sub) == [entry(100)]
        summaries = {s["session_id"]: s for s in await adapter.list_session_summaries("proj")}
        assert summaries["sess"]["data"] == fold_session_summary(None, KEY, written)["data"]  # type: ignore[arg-type]
        await adapter.append(KEY, [*written[-2:], entry(41, customTitle="t")])  # a retry and a new entry
        assert await adapter.load(KEY) == [*written, entry(41, customTitle="t")]
        summaries = {s["session_id"]: s for s in await adapter.list_session_summaries("proj")}
        assert summaries["sess"]["data"]["custom_title"] == "t"
        assert len((await store.load(sid)).messages) == 40


@pytest.mark.parametrize("steps", [0, 1, 2, 3, 5, 8])
async def test_a_cancelled_append_lands_whole_or_not_at_all(steps: int) -> None:
    async with sessiondb.open_store(":memory:") as store:
        adapter = SessionDBSessionStore(store)
        await adapter.append(KEY, [entry(0)])
        first = [entry(1), entry(2)]
        task = asyncio.ensure_future(adapter.append(KEY, first))
        for _ in range(steps):
            await asyncio.sleep(0)  # let the append get that far, then cancel it
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await adapter.append(KEY, [entry(3)])
        loaded = await adapter.load(KEY)
        assert loaded in ([entry(0), entry(3)], [entry(0), *first, entry(3)])
        (summary,) = await adapter.list_session_summaries("proj")
        assert summary["data"] == fold_session_summary(None, KEY, loaded)["data"]  # type: ignore[arg-type]


async def test_sessions_carry_the_project_as_their_scope(open_fresh_store: StoreFactory) -> None:
    store = await open_fresh_store()
    adapter = SessionDBSessionStore(store)
    long_key = "-home-" + "deep-" * 60  # past the id limit (hashed in ids), within the scope limit
    huge_key = "-x" * 300  # past the 512-byte scope limit: the scope is the hash form too
    await adapter.append(KEY, [entry(1)])
    await adapter.append({**KEY, "subpath": "subagents/agent-1"}, [entry(2)])
    await adapter.append({"project_key": long_key, "session_id": "s"}, [entry(3)])
    await adapter.append({"project_key": huge_key, "session_id": "s"}, [entry(4)])
    await adapter.append({"project_key": "other", "session_id": "s"}, [entry(5)])
    # An application's own session in the same scope is not a transcript of the project.
    await store.create_session(scope="proj")
    assert {i.session_id for i in await store.list_sessions(scope="proj")} >= {
        await adapter.session_id_for(KEY),
        await adapter.session_id_for({**KEY, "subpath": "subagents/agent-1"}),
    }
    assert [i.scope for i in await store.list_sessions(scope=long_key)] == [long_key]
    huge_id = await adapter.session_id_for({"project_key": huge_key, "session_id": "s"})
    assert huge_id is not None
    huge_scope = (await store.session_info(huge_id)).scope
    assert huge_scope is not None and huge_scope.startswith("%h") and len(huge_scope) == 42
    assert [e["session_id"] for e in await adapter.list_sessions("proj")] == ["sess"]
    assert await adapter.list_subkeys(KEY) == ["subagents/agent-1"]
    assert [e["session_id"] for e in await adapter.list_sessions(long_key)] == ["s"]
    assert [e["session_id"] for e in await adapter.list_sessions(huge_key)] == ["s"]
    assert [e["session_id"] for e in await adapter.list_session_summaries("other")] == ["s"]
    # More sessions than one page of the scope index: every one is listed.
    many = [{"project_key": "big", "session_id": f"s{n}"} for n in range(1_005)]
    await asyncio.gather(*(adapter.append(key, [entry(10_000 + n)]) for n, key in enumerate(many)))
    assert len(await adapter.list_sessions("big")) == 1_005
    await adapter.delete(KEY)
    assert await adapter.list_sessions("proj") == []


async def test_listing_a_project_no_key_can_have_is_empty_and_a_non_str_is_named() -> None:
    """list_sessions("") reported a phantom key (project_key='', session_id='x') and "nothing was written"."""
    async with sessiondb.open_store(":memory:") as store:
        adapter = SessionDBSessionStore(store)
        await adapter.append(KEY, [entry(1)])
        # As the SDK's InMemorySessionStore: a project key no key can have lists nothing.
        assert await adapter.list_sessions("") == [] == await adapter.list_session_summaries("")
        for call in (adapter.list_sessions, adapter.list_session_summaries):
            with pytest.raises(InvalidInputError, match=r"\.list_\w+: project_key must be a str, got int") as raised:
                await call(5)  # type: ignore[arg-type]
            assert "session_id" not in str(raised.value) and "written" not in str(raised.value)
        with pytest.raises(InvalidInputError, match=r"\.load: key \(project_key='', session_id='s'\)") as raised:
            await adapter.load({"project_key": "", "session_id": "s"})
        assert "written" not in str(raised.value)


async def test_every_call_on_a_store_not_started_or_closed_raises_the_stores_error(tmp_path: Path) -> None:
    """The adapter finds a key's session through the Store, so it refuses as the Store does (never None or [])."""
    store = sessiondb.open_store(tmp_path / "store")
    adapter = SessionDBSessionStore(store)
    key: Any = {"project_key": "p", "session_id": "s"}
    entry = {"type": "user", "uuid": "u1", "message": {"role": "user", "content": "hi"}}
    for error in (sessiondb.StoreNotStartedError, sessiondb.StoreClosedError):
        with pytest.raises(error):
            await adapter.load(key)
        with pytest.raises(error):
            await adapter.session_id_for(key)
        with pytest.raises(error):
            await adapter.append(key, [entry])
        with pytest.raises(error):
            await adapter.append(key, [])
        with pytest.raises(error):
            await adapter.list_sessions("p")
        with pytest.raises(error):
            await adapter.delete(key)
        if error is sessiondb.StoreNotStartedError:
            async with store:
                await adapter.append(key, [entry])
                assert await adapter.load(key) is not None
