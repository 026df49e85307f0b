"""Rotation, retention and the index checkpoint of the local backend."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import sessiondb
from sessiondb import CompactionSettings, HistoryUnavailableError, Message
from sessiondb._backends.local._checkpoint import CHECKPOINT_NAME

pytestmark = pytest.mark.anyio


def _settings(**overrides: object) -> CompactionSettings:
    options: dict[str, object] = {"background": False, "min_tail_events": 5, "min_tail_bytes": 10**9}
    options.update(overrides)
    return CompactionSettings(**options)  # type: ignore[arg-type]


async def _fill(store: sessiondb.Store, sessions: int, turns: int) -> list[str]:
    ids = [await store.create_session(session_id=f"s{i}") for i in range(sessions)]
    for turn in range(turns):
        for sid in ids:
            await store.append(sid, Message.user(f"{sid} turn {turn} " + "z" * 50))
    return ids


async def _states(store: sessiondb.Store) -> dict[str, sessiondb.Session]:
    return {info.session_id: await store.load(info.session_id) for info in await store.list_sessions()}


def _segments(path: Path) -> list[str]:
    return sorted(name for name in os.listdir(path) if name.endswith(".seg"))


async def test_default_retention_keeps_three_sealed_segments(tmp_path: Path) -> None:
    path = tmp_path / "s"
    async with sessiondb.open_store(path, segment_bytes=2048, compaction=_settings()) as store:
        await _fill(store, 3, 40)
        before = await _states(store)
        sealed = len(_segments(path)) - 1
        assert sealed > 5
        done = await store.compact()
        assert done["segments_deleted"] == sealed - 3
        assert len(_segments(path)) == 4  # 3 sealed + the active one
        stats = store.statistics()
        assert stats["segments_deleted"] == sealed - 3 and stats["bytes_reclaimed"] > 0
        assert stats["segments_sealed"] == sealed and stats["snapshots_written"] == 3
        assert stats["last_pass_seconds"] > 0
        assert await _states(store) == before
        with pytest.raises(HistoryUnavailableError, match="retention removed"):
            await store.load("s0", at_version=2)
        with pytest.raises(HistoryUnavailableError):
            [e async for e in store.read("s0")]
        with pytest.raises(HistoryUnavailableError, match="removed by retention"):
            await store.read_all(after=0)
        # Recent history stays readable for time travel.
        info = await store.session_info("s0")
        assert (await store.load("s0", at_version=info.version - 2)).version == info.version - 2
        await store.append("s0", Message.user("after retention"))
        before = await _states(store)
    async with sessiondb.open_store(path, compaction=_settings()) as store:
        assert store.statistics()["opened_from_checkpoint"]
        assert await _states(store) == before
    os.remove(path / CHECKPOINT_NAME)
    async with sessiondb.open_store(path, compaction=_settings()) as store:
        # Rebuilt from the retained log plus the snapshots' summaries.
        assert not store.statistics()["opened_from_checkpoint"]
        assert await _states(store) == before
        assert {i.session_id: i.message_count for i in await store.list_sessions()} == {
            sid: len(s.messages) for sid, s in before.items()
        }


async def test_keep_segments_none_keeps_everything(tmp_path: Path) -> None:
    async with sessiondb.open_store(tmp_path / "s", segment_bytes=2048, compaction=_settings(keep_segments=None)) as s:
        await _fill(s, 2, 40)
        assert (await s.compact())["segments_deleted"] == 0
        assert (await s.load("s0", at_version=1)).version == 1


async def test_deleted_session_space_is_freed(tmp_path: Path) -> None:
    path = tmp_path / "s"
    async with sessiondb.open_store(path, segment_bytes=2048, compaction=_settings(keep_segments=0)) as store:
        await _fill(store, 2, 30)
        await store.compact()
        assert len(list(path.glob("snapshot-*.snap"))) == 2
        await store.delete_session("s1")
        for _ in range(30):
            await store.append("s0", Message.user("y" * 60))
        done = await store.compact()
        assert len(list(path.glob("snapshot-*.snap"))) == 1  # the deleted session's snapshot is gone
        assert done["bytes_reclaimed"] > 0
        assert len(_segments(path)) == 1
        assert [i.session_id for i in await store.list_sessions()] == ["s0"]


async def test_fork_keeps_parent_history_until_child_is_snapshotted(tmp_path: Path) -> None:
    path = tmp_path / "s"
    settings = _settings(keep_segments=0, min_tail_events=10**6)  # no threshold snapshots: retention forces them
    async with sessiondb.open_store(path, segment_bytes=2048, compaction=settings) as store:
        await _fill(store, 1, 30)
        child = await store.fork("s0", branch_name="b")
        await store.append(child, Message.user("child"))
        for _ in range(30):
            await store.append("s0", Message.user("x" * 60))
        expected = await _states(store)
        await store.compact()
        assert set(store.backend.snapshot_versions()) == {"s0", child}
        assert await _states(store) == expected
    os.remove(path / CHECKPOINT_NAME)
    async with sessiondb.open_store(path, compaction=settings) as store:
        assert await _states(store) == expected


async def test_checkpoint_open_equals_full_scan(tmp_path: Path) -> None:
    path = tmp_path / "s"
    async with sessiondb.open_store(path, segment_bytes=4096, compaction=_settings(keep_segments=None)) as store:
        await _fill(store, 5, 20)
        await store.compact()  # checkpoint mid-way
        for sid in ("s0", "s3"):
            await store.append(sid, Message.user("after the checkpoint"), event_ids=["e1"])
        expected = await _states(store)
        infos = await store.list_sessions()
        last = store.backend.last_position
    # Not closed cleanly: simulate a crash by dropping the close-time checkpoint (the pass's one stays).
    async with sessiondb.open_store(path, compaction=_settings()) as store:
        assert store.statistics()["opened_from_checkpoint"]
        assert await _states(store) == expected
        assert await store.list_sessions() == infos
        assert store.backend.last_position == last
        assert await store.append("s0", Message.user("again"), event_ids=["e1"]) == expected["s0"].version  # dedup
        assert (await store.read_all(after=0, limit=10**6))[-1].position == last


async def test_damaged_or_stale_checkpoint_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "s"
    async with sessiondb.open_store(path, segment_bytes=4096) as store:
        await _fill(store, 3, 10)
        expected = await _states(store)
    checkpoint = path / CHECKPOINT_NAME
    good = checkpoint.read_bytes()
    for damage in (b"", good[:-5], good[:-1] + bytes([good[-1] ^ 1]), b"garbage\n" + good):
        checkpoint.write_bytes(damage)
        async with sessiondb.open_store(path) as store:
            stats = store.statistics()
            assert not stats["opened_from_checkpoint"] and stats["checkpoint_ignored"]
            assert await _states(store) == expected
        checkpoint.write_bytes(good)
    # Segment bytes changed behind the checkpoint's back: its checksum catches it.
    segment = path / _segments(path)[0]
    data = bytearray(segment.read_bytes())
    data[len(data) // 2] ^= 0x04
    segment.write_bytes(bytes(data))
    checkpoint.write_bytes(good)
    with pytest.raises(sessiondb.CorruptionError):
        async with sessiondb.open_store(path):
            pass


async def test_sealed_segments_never_change(tmp_path: Path) -> None:
    path = tmp_path / "s"
    async with sessiondb.open_store(path, segment_bytes=2048, compaction=_settings(keep_segments=None)) as store:
        await _fill(store, 2, 10)
        sealed = {name: (path / name).read_bytes() for name in _segments(path)[:-1]}
        await _fill_more(store)
        await store.compact()
        assert {name: (path / name).read_bytes() for name in sealed} == sealed
        assert store.statistics()["segments_sealed"] >= len(sealed)


async def _fill_more(store: sessiondb.Store) -> None:
    for turn in range(20):
        await store.append("s0", Message.user(f"more {turn} " + "q" * 80))


async def test_background_compactor_runs_and_stops(tmp_path: Path) -> None:
    settings = CompactionSettings(interval_seconds=0.05, min_tail_events=5, min_tail_bytes=10**9)
    async with sessiondb.open_store(tmp_path / "s", compaction=settings) as store:
        sid = await store.create_session()
        for i in range(10):
            await store.append(sid, Message.user(f"m{i}"))
        for _ in range(100):
            if store.statistics()["compaction_passes"]:
                break
            await sessiondb_sleep(0.02)
        assert store.statistics()["snapshots_written"] >= 1
        assert store.statistics()["compaction_passes"] >= 1
    assert store._compactor._task is None


async def sessiondb_sleep(seconds: float) -> None:
    import anyio

    await anyio.sleep(seconds)


async def test_background_pass_failure_is_recorded_and_retried(tmp_path: Path) -> None:
    import msgspec

    failing = {"on": True}

    class State(msgspec.Struct):
        n: int = 0

    def fold(state: State, recorded: sessiondb.RecordedEvent) -> State:
        if failing["on"]:
            raise RuntimeError("projection bug")
        state.n += 1
        return state

    settings = CompactionSettings(interval_seconds=0.05, min_tail_events=5, min_tail_bytes=10**9)
    async with sessiondb.open_store(tmp_path / "s", compaction=settings) as store:
        store.register_projection(sessiondb.Projection("bad", lambda sid: State(), fold, state_type=State))
        sid = await store.create_session()
        for i in range(10):
            await store.append(sid, Message.user(f"m{i}"))
        for _ in range(100):
            if store.statistics()["compaction_errors"]:
                break
            await sessiondb_sleep(0.02)
        assert "projection bug" in store.statistics()["last_compaction_error"]
        assert (await store.append(sid, Message.user("still fine"))) == 12
        failing["on"] = False
        for _ in range(100):
            if store.statistics()["snapshots_written"]:
                break
            await sessiondb_sleep(0.02)
        assert store.statistics()["snapshots_written"] >= 1
        assert (await store.project(sid, "bad")).n == 12


async def test_a_damaged_snapshot_never_becomes_the_only_copy(tmp_path: Path) -> None:
    """Retention reads back the snapshots that replace the history it deletes.

    A snapshot damaged on disk after it was written (here: one flipped byte) is
    forgotten, the segments it would replace stay, and the next pass writes a new
    snapshot before deleting them. Without the read-back, the pass deleted the
    segments and the session's early history was lost for good.
    """
    path = tmp_path / "s"
    async with sessiondb.open_store(path, segment_bytes=1024, compaction=_settings(keep_segments=None)) as store:
        await _fill(store, 3, 30)
        await store.compact()  # snapshots written; retention off, so nothing deleted
        before = await _states(store)
    snapshots = sorted(p for p in path.iterdir() if p.suffix == ".snap")
    assert snapshots, sorted(os.listdir(path))
    victim = snapshots[0]
    data = bytearray(victim.read_bytes())
    data[-5] ^= 0x20  # in the payload, under the header's checksum
    victim.write_bytes(bytes(data))
    first_segment = _segments(path)[0]

    async with sessiondb.open_store(path, segment_bytes=1024, compaction=_settings(keep_segments=1)) as store:
        await store.compact()
        assert first_segment in _segments(path)  # the history the damaged snapshot covers is still here
        assert store.statistics()["snapshots_damaged"] >= 1
        assert await _states(store) == before
        await store.compact()  # a new snapshot first, then the segments go
        assert first_segment not in _segments(path)
        assert await _states(store) == before
    async with sessiondb.open_store(path) as store:
        assert await _states(store) == before


async def test_purge_removes_every_covered_segment_now(tmp_path: Path) -> None:
    path = tmp_path / "s"
    async with sessiondb.open_store(path, compaction=_settings()) as store:  # 64 MiB segments: one active
        await _fill(store, 2, 10)
        await store.delete_session("s1")
        assert (await store.compact())["segments_deleted"] == 0  # the defaults keep it all
        assert any(b"s1 turn" in (path / name).read_bytes() for name in _segments(path))
        before = await _states(store)
        done = await store.compact(purge=True)
        assert done["sealed"] and done["segments_deleted"] == 1
        assert not any(b"s1 turn" in (path / name).read_bytes() for name in _segments(path))
        assert await _states(store) == before
        with pytest.raises(HistoryUnavailableError):
            await store.load("s0", at_version=2)  # the price: time travel below the snapshot
        assert (await store.compact(purge=True))["sealed"] is False  # nothing appended since: nothing to seal
        await store.append("s0", Message.user("after the purge"))
        before = await _states(store)
    async with sessiondb.open_store(path, compaction=_settings()) as store:
        assert await _states(store) == before
        with pytest.raises(sessiondb.InvalidInputError, match="purge"):
            await store.compact(purge="yes")  # type: ignore[arg-type]


@pytest.mark.parametrize("target", ["directory", "memory"])
async def test_a_fork_whose_parent_was_deleted_and_purged_says_what_of_it_is_readable(
    tmp_path: Path, target: str
) -> None:
    """The error names the fork that was read, says its parent was deleted and purged, and gives the fork's
    versions that can still be read (not a "read from version N" of the deleted parent)."""
    path: str | Path = tmp_path / "s" if target == "directory" else ":memory:"
    async with sessiondb.open_store(path, compaction=_settings()) as store:
        await store.create_session(session_id="parent")
        for n in range(6):
            await store.append("parent", Message.user(f"p{n}"))
        await store.fork("parent", at_version=4, session_id="child")  # child: 1..4 shared, 5 its start
        await store.append("child", Message.user("c1"))  # 6
        await store.delete_session("parent")
        await store.compact(purge=True)  # the parent's history goes, and the child's 5..6 (its snapshot covers them)
        await store.append("child", Message.user("c2"))  # 7, after the purge
        for read in (lambda: store.read("child"), lambda: store.read("child", after=2)):
            with pytest.raises(HistoryUnavailableError) as caught:
                [e async for e in read()]
            message = str(caught.value)
            assert "session 'child'" in message and "its parent 'parent' (a fork at version 4)" in message
            assert "'parent' was deleted and a compaction purged its history" in message
            assert "versions 7..7 of 'child' are readable (read(after=6))" in message
            assert "read from version" not in message and caught.value.first_available == 7
        assert [e.version async for e in store.read("child", after=6)] == [7]
        assert [m.text for m in (await store.load("child")).messages] == ["p0", "p1", "p2", "c1", "c2"]
