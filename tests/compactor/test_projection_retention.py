"""Retention never drops the history a registered projection's state still needs.

Store A registers a snapshotted projection; store B, opened on the same directory
without it, compacts with retention. A's ``project`` must still work afterwards.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import msgspec
import pytest

import sessiondb
from sessiondb import CompactionSettings, Message, Projection

from ._tally import TALLY

pytestmark = pytest.mark.anyio


def _settings(**overrides: object) -> CompactionSettings:
    options: dict[str, object] = {"background": False, "min_tail_events": 5, "min_tail_bytes": 10**9}
    options.update(overrides)
    return CompactionSettings(**options)  # type: ignore[arg-type]


def _segments(path: Path) -> list[str]:
    return sorted(name for name in os.listdir(path) if name.endswith(".seg"))


async def _fill(store: sessiondb.Store, sid: str, turns: int, start: int = 0) -> list[str]:
    texts = []
    for turn in range(start, start + turns):
        text = f"{sid} turn {turn} " + "z" * 60
        await store.append(sid, Message.user(text))
        texts.append(text)
    return texts


async def test_a_store_without_the_projection_keeps_the_history_it_needs(tmp_path: Path) -> None:
    path = tmp_path / "s"
    async with sessiondb.open_store(path, segment_bytes=2048, compaction=_settings()) as a:
        a.register_projection(TALLY)
        await a.create_session(session_id="t")
        texts = await _fill(a, "t", 60)
        # B shares the directory (another process in production: uvicorn worker, the CLI, a script).
        async with sessiondb.open_store(path, segment_bytes=2048, compaction=_settings(keep_segments=0)) as b:
            await b.compact(purge=True)
        assert (await a.project("t", "tally")).texts == texts
    async with sessiondb.open_store(path, compaction=_settings()) as a:
        a.register_projection(TALLY)
        assert (await a.project("t", "tally")).texts == texts
        assert (await a.load("t")).version == 61


def _snapshot_holds(path: Path) -> list[list[str] | None]:
    """The ``projections`` field of every snapshot file's header, in file-name order."""
    found = []
    for name in sorted(os.listdir(path)):
        if name.startswith("snapshot-") and name.endswith(".snap"):
            header = (path / name).read_bytes().split(b"\n", 1)[0]
            found.append(msgspec.json.decode(header).get("projections"))
    return found


async def test_registering_records_the_projection_durably_once(tmp_path: Path) -> None:
    path = tmp_path / "s"
    async with sessiondb.open_store(path, compaction=_settings()) as store:
        assert store.recorded_projections() == frozenset()
        store.register_projection(TALLY)
        store.register_projection(Projection("untyped", lambda sid: 0, lambda n, e: n + 1))
        records = [name for name in os.listdir(path) if name.startswith("projection-")]
        assert len(records) == 1  # only a snapshotted projection (with a state_type) is recorded
        assert msgspec.json.decode((path / records[0]).read_bytes()) == {"sessiondb": "projection", "name": "tally"}
    # Registered before the store opened: recorded when it opens; a second registration writes nothing.
    store = sessiondb.open_store(path, compaction=_settings())
    store.register_projection(TALLY)
    async with store:
        assert store.recorded_projections() == frozenset({"tally"})
        assert [name for name in os.listdir(path) if name.startswith("projection-")] == records


async def test_a_projection_registered_late_is_rebuilt_from_the_log_before_retention(tmp_path: Path) -> None:
    path = tmp_path / "s"
    async with sessiondb.open_store(path, segment_bytes=2048, compaction=_settings(keep_segments=None)) as b:
        await b.create_session(session_id="t")
        texts = await _fill(b, "t", 40)
        assert (await b.compact())["snapshots_written"] == 1  # no projection anywhere: a plain snapshot
    assert _snapshot_holds(path) == [[]]
    async with sessiondb.open_store(path, segment_bytes=2048, compaction=_settings(keep_segments=0)) as a:
        a.register_projection(TALLY)
        texts += await _fill(a, "t", 20, start=40)
        done = await a.compact(purge=True)
        assert done["segments_deleted"] > 0
        # The new snapshot holds the state, folded from the whole log (the older one had none to start from).
        assert ["tally"] in _snapshot_holds(path)
        assert (await a.project("t", "tally")).texts == texts
    async with sessiondb.open_store(path, compaction=_settings()) as a:
        a.register_projection(TALLY)
        assert (await a.project("t", "tally")).texts == texts


async def test_retention_relies_on_an_older_snapshot_that_holds_every_projection(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "s"
    async with sessiondb.open_store(path, segment_bytes=2048, compaction=_settings(keep_segments=None)) as a:
        a.register_projection(TALLY)
        await a.create_session(session_id="t")
        texts = await _fill(a, "t", 40)
        assert (await a.compact())["snapshots_written"] == 1
    complete_version = 41
    b_settings = _settings(keep_segments=0, state_ratio=0)  # B snapshots its tail whatever the state's size
    async with sessiondb.open_store(path, segment_bytes=2048, compaction=b_settings) as b:
        texts += await _fill(b, "t", 40, start=40)
        with caplog.at_level(logging.WARNING, logger="sessiondb"):
            first = await b.compact(purge=True)
            second = await b.compact(purge=True)
        assert first["projections_not_registered"] == second["projections_not_registered"] == ["tally"]
        assert first["snapshots_written"] == 1
        warnings = [r.getMessage() for r in caplog.records if "'tally'" in r.getMessage()]
        assert len(warnings) == 1 and "register" in warnings[0].lower() and "forget" in warnings[0]
        # The segments under A's snapshot went; those after it (B's snapshot lacks the state) stayed.
        assert first["segments_deleted"] > 0 and second["segments_deleted"] == 0
        with pytest.raises(sessiondb.HistoryUnavailableError):
            await b.load("t", at_version=complete_version - 1)
        assert (await b.load("t", at_version=complete_version + 1)).version == complete_version + 1
    assert sorted(_snapshot_holds(path), key=len) == [[], ["tally"]]
    async with sessiondb.open_store(path, compaction=_settings()) as a:
        a.register_projection(TALLY)
        # The newest snapshot lacks the state: project() starts from the older one and the log after it.
        assert (await a.project("t", "tally")).texts == texts


async def test_forgetting_a_projection_lets_retention_remove_its_history(tmp_path: Path) -> None:
    path = tmp_path / "s"
    async with sessiondb.open_store(path, segment_bytes=2048, compaction=_settings()) as a:
        a.register_projection(TALLY)
        await a.create_session(session_id="t")
        await _fill(a, "t", 60)
    async with sessiondb.open_store(path, segment_bytes=2048, compaction=_settings(keep_segments=0)) as b:
        assert (await b.compact(purge=True))["segments_deleted"] == 0
        assert await b.forget_projection("tally") is True
        assert await b.forget_projection("tally") is False
        assert b.recorded_projections() == frozenset()
        done = await b.compact(purge=True)
        assert done["segments_deleted"] > 0 and "projections_not_registered" not in done
    async with sessiondb.open_store(path, compaction=_settings()) as a:
        a.register_projection(TALLY)  # records it again, but the history its state needed is gone
        assert a.recorded_projections() == frozenset({"tally"})
        with pytest.raises(sessiondb.HistoryUnavailableError):
            await a.project("t", "tally")


def _strip_holds(path: Path) -> int:
    """Rewrite every snapshot file's header without ``projections``, as sessiondb wrote them before records."""
    count = 0
    for name in os.listdir(path):
        if name.startswith("snapshot-") and name.endswith(".snap"):
            header, payload = (path / name).read_bytes().split(b"\n", 1)
            fields = msgspec.json.decode(header)
            del fields["projections"]
            (path / name).write_bytes(msgspec.json.encode(fields) + b"\n" + payload)
            count += 1
    return count


@pytest.mark.parametrize("held", [True, False])
async def test_a_snapshot_from_before_records_counts_by_what_its_payload_holds(tmp_path: Path, held: bool) -> None:
    path = tmp_path / "s"
    async with sessiondb.open_store(path, segment_bytes=2048, compaction=_settings(keep_segments=None)) as a:
        if held:
            a.register_projection(TALLY)
        await a.create_session(session_id="t")
        texts = await _fill(a, "t", 60)
        assert (await a.compact())["snapshots_written"] == 1
    assert _strip_holds(path) == 1
    async with sessiondb.open_store(path, segment_bytes=2048, compaction=_settings(keep_segments=0)) as a:
        a.register_projection(TALLY)  # recorded now (when held, it already was)
    async with sessiondb.open_store(path, segment_bytes=2048, compaction=_settings(keep_segments=0)) as b:
        done = await b.compact()
        assert done["projections_not_registered"] == ["tally"]
        # The old snapshot counts when its payload holds the state, and only then.
        assert (done["segments_deleted"] > 0) is held
    async with sessiondb.open_store(path, compaction=_settings()) as a:
        a.register_projection(TALLY)
        assert (await a.project("t", "tally")).texts == texts
