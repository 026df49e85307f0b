"""Long sessions and many segments: paged reads, forks deep in history, read_all across segment boundaries."""

from __future__ import annotations

from pathlib import Path

import pytest

import sessiondb
from sessiondb import Message, RecordedEvent

pytestmark = pytest.mark.anyio


async def _read_everything(store: sessiondb.Store, page: int) -> list[RecordedEvent]:
    out: list[RecordedEvent] = []
    while chunk := await store.read_all(after=out[-1].position if out else 0, limit=page):
        out += chunk
    return out


async def test_a_session_longer_than_a_read_page(tmp_path: Path) -> None:
    total = 25_000
    async with sessiondb.open_store(tmp_path / "s") as store:
        sid = await store.create_session()
        for start in range(0, total, 500):
            await store.append(sid, *(Message.user(str(i)) for i in range(start, start + 500)))
        child = await store.fork(sid, at_version=15_001, branch_name="deep")
        for start in (0, 6_000):
            await store.append(child, *(Message.user(f"c{i}") for i in range(start, start + 6_000)))
    async with sessiondb.open_store(tmp_path / "s") as store:
        texts = [e.event.text async for e in store.read(sid, after=1)]  # type: ignore[union-attr]
        assert texts == [str(i) for i in range(total)]
        stitched = [(e.session_id, e.version) async for e in store.read(child)]
        assert stitched == [(sid, v) for v in range(1, 15_002)] + [(child, v) for v in range(15_002, 27_003)]
        window = [e.version async for e in store.read(child, after=14_990, up_to=15_010)]
        assert window == list(range(14_991, 15_011))
        loaded = await store.load(child)
        assert len(loaded.messages) == 15_000 + 12_000
        assert loaded.messages[14_999].text == "14999" and loaded.messages[15_000].text == "c0"
        assert (await store.load(child, at_version=10_000)).messages == (
            await store.load(sid, at_version=10_000)
        ).messages
        info = await store.session_info(child)
        assert info.message_count == 27_000 and info.version == 27_002


async def test_many_small_segments(tmp_path: Path) -> None:
    async with sessiondb.open_store(tmp_path / "s", segment_bytes=2_048) as store:
        sids = [await store.create_session() for _ in range(5)]
        for round_ in range(60):
            for n, sid in enumerate(sids):
                await store.append(sid, Message.user(f"{n}:{round_}" + "x" * (round_ % 7) * 40))
        forked = await store.fork(sids[2], at_version=30)
        await store.append(forked, Message.user("branch"))
        assert store.statistics()["segments"] > 20
        before = await _read_everything(store, page=7)
    segments = sorted(p.name for p in (tmp_path / "s").glob("*.seg"))
    assert len(segments) > 20
    async with sessiondb.open_store(tmp_path / "s", segment_bytes=2_048) as store:
        for page in (1, 7, 10_000):
            everything = await _read_everything(store, page)
            assert everything == before
        assert [e.position for e in before] == list(range(1, len(before) + 1))
        for n, sid in enumerate(sids):
            texts = [e.event.text async for e in store.read(sid, after=1)]  # type: ignore[union-attr]
            assert [t.split("x")[0] for t in texts] == [f"{n}:{r}" for r in range(60)]
        loaded = await store.load(forked)
        assert [m.text.split("x")[0] for m in loaded.messages] == [*(f"2:{r}" for r in range(29)), "branch"]
        assert await store.append(sids[0], Message.user("after reopen")) == 62
