"""A first search after retention removed the oldest events indexes what is readable, and returns."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from starlette.testclient import TestClient

import sessiondb
from sessiondb import Message
from sessiondb._backends.local import LocalBackend

pytestmark = pytest.mark.anyio

FILLER = "x" * 50


async def _readable_positions(store: sessiondb.Store, session_id: str) -> list[int]:
    """The positions of the session's messages that its log can still read."""
    backend = store.backend
    after = backend.first_available_position() - 1 if isinstance(backend, LocalBackend) else 0
    events = await backend.read_all(after, 100_000)
    return [e.position for e in events if e.session_id == session_id and isinstance(e.event, Message)]


async def _fill(store: sessiondb.Store, count: int) -> None:
    await store.create_session(session_id="r")
    for i in range(count):
        await store.append("r", Message.user(f"old message number {i} {FILLER}"))


async def _search_positions(target: str, query: str) -> tuple[list[int], dict[str, object]]:
    async with sessiondb.open_store(target) as store:
        with anyio.fail_after(20):  # it spun forever before: a hang is the failure
            page = await store.search(query, limit=1000)
        return sorted(hit.position for hit in page.hits), store.statistics()


async def test_a_first_search_after_retention_removed_segments_returns(tmp_path: Path) -> None:
    target = str(tmp_path / "store")
    async with sessiondb.open_store(target, segment_bytes=4096) as store:
        await _fill(store, 200)
        await store.compact()
        assert isinstance(store.backend, LocalBackend)
        first = store.backend.first_available_position()
        assert first > 1, "retention removed no segment: the case under test did not happen"
        readable = await _readable_positions(store, "r")
        last = store.backend.last_position
    found, statistics = await _search_positions(target, "old")
    assert found == readable and readable
    assert statistics["search_position"] == last


async def test_a_first_search_after_a_purge_finds_what_came_after_it(tmp_path: Path) -> None:
    target = str(tmp_path / "store")
    async with sessiondb.open_store(target, segment_bytes=4096) as store:
        await _fill(store, 3)
        await store.compact(purge=True)
        assert isinstance(store.backend, LocalBackend)
        assert store.backend.first_available_position() > 1
    found, statistics = await _search_positions(target, "old")
    assert found == []  # nothing readable: and the search returned
    async with sessiondb.open_store(target) as store:
        await store.append("r", Message.user(f"old message after the purge {FILLER}"))
        last = store.backend.last_position
    found, statistics = await _search_positions(target, "old")
    assert found == [last]
    assert statistics["search_position"] == last


@pytest.mark.postgres
async def test_a_first_search_after_postgres_compaction_removed_a_deleted_session(pg_url: str) -> None:
    async with sessiondb.open_store(pg_url) as store:
        await store.create_session(session_id="gone")
        for i in range(5):
            await store.append("gone", Message.user(f"old gone message {i}"))
        await store.create_session(session_id="kept")
        for i in range(5):
            await store.append("kept", Message.user(f"old kept message {i}"))
        await store.delete_session("gone")
        await store.compact(purge=True)
        readable = await _readable_positions(store, "kept")
        assert not await _readable_positions(store, "gone"), "compaction kept the deleted session's rows"
    found, _ = await _search_positions(pg_url, "old")
    assert found == readable and len(readable) == 5


@pytest.mark.timeout(60)  # a search that spins is the failure
def test_the_viewer_searches_a_store_retention_cut(tmp_path: Path) -> None:
    from sessiondb.web import create_app

    target = str(tmp_path / "store")

    async def fill() -> None:
        async with sessiondb.open_store(target, segment_bytes=4096) as store:
            await _fill(store, 200)
            await store.compact()

    anyio.run(fill)
    with TestClient(create_app(target), base_url="http://127.0.0.1") as client:
        response = client.get("/", params={"q": "old"})
        assert response.status_code == 200
        assert "message number" in response.text  # hits listed (a spinning index never answered)
