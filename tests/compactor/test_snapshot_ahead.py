"""A log cut short on purpose (repair) can leave snapshots of versions it no longer holds.

Open must forget them: once later appends reach those versions again, a stale
snapshot would stand in for the new events.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import sessiondb
from sessiondb import CompactionSettings, Message
from sessiondb._backends.local import repair_store, verify_store
from sessiondb._backends.local._format import scan_segment

pytestmark = pytest.mark.anyio

SETTINGS = CompactionSettings(background=False, min_tail_events=5, min_tail_bytes=10**9, keep_segments=None)


def _texts(session: sessiondb.Session) -> list[str]:
    return [message.text for message in session.messages]


async def test_snapshots_beyond_a_repaired_log_are_not_trusted(tmp_path: Path) -> None:
    path = tmp_path / "s"
    async with sessiondb.open_store(path, compaction=SETTINGS) as store:
        await store.create_session(session_id="a")
        for n in range(40):
            await store.append("a", Message.user(f"old {n}"))
        await store.compact()  # a snapshot at version 41
        assert store.backend.snapshot_versions()["a"][0] == 41
    # Damage the frame of "old 20" (its checksum no longer holds; valid frames follow): repair cuts there.
    segment = next(p for p in path.iterdir() if p.suffix == ".seg")
    data = bytearray(segment.read_bytes())
    at = bytes(data).index(b'"old 20"')
    frame = next(f for f in scan_segment(bytes(data)).frames if f.payload_offset <= at < f.end)
    data[at + 2] ^= 0x01
    segment.write_bytes(bytes(data))
    report = repair_store(path)
    # Every dropped event, the damaged batch's own ("old 20", v22) included: v22-41.
    assert report.changed and report.dropped_events == 20, report.format()
    assert report.dropped[0].versions == {"a": list(range(22, 42))}
    assert segment.stat().st_size == frame.offset
    assert "snapshot of session 'a' version 41 is ahead of the log" in report.format()  # moved aside
    after = verify_store(path)
    assert after.ok and after.problems == [], after.format()

    async with sessiondb.open_store(path, compaction=SETTINGS) as store:
        assert "snapshots_ahead_of_log" not in store.backend.recovery  # repair moved it aside
        assert _texts(await store.load("a")) == [f"old {n}" for n in range(20)]
        for n in range(30):  # past version 41 again, with other content
            await store.append("a", Message.user(f"new {n}"))
        expected = [f"old {n}" for n in range(20)] + [f"new {n}" for n in range(30)]
        assert _texts(await store.load("a")) == expected
        await store.compact()
        assert _texts(await store.load("a")) == expected
    async with sessiondb.open_store(path, compaction=SETTINGS) as store:
        assert _texts(await store.load("a")) == expected


async def test_an_older_copy_of_the_log_restored_beside_newer_snapshots(tmp_path: Path) -> None:
    """The other way to get there: the segments restored from a backup older than the snapshots."""
    path = tmp_path / "s"
    async with sessiondb.open_store(path, compaction=SETTINGS) as store:
        await store.create_session(session_id="a")
        for n in range(10):
            await store.append("a", Message.user(f"old {n}"))
    segment = next(p for p in path.iterdir() if p.suffix == ".seg")
    backup = segment.read_bytes()
    async with sessiondb.open_store(path, compaction=SETTINGS) as store:
        for n in range(10, 30):
            await store.append("a", Message.user(f"old {n}"))
        await store.compact()
    segment.write_bytes(backup)
    (path / "CHECKPOINT").unlink()
    problems = verify_store(path).problems
    assert [(p.kind, p.session) for p in problems] == [("snapshot_ignored", "a")], problems
    async with sessiondb.open_store(path, compaction=SETTINGS) as store:
        assert store.backend.recovery["snapshots_ahead_of_log"] == ["a"]
        for n in range(25):
            await store.append("a", Message.user(f"new {n}"))
        expected = [f"old {n}" for n in range(10)] + [f"new {n}" for n in range(25)]
        assert _texts(await store.load("a")) == expected
