"""A store that fell behind another store's retention (two stores on one directory, one process).

Store B reads the log once, then idles while store A rolls through many segments and
its retention removes them, B's newest known one among them. B rebuilds its index as
open does; these tests check what depends on that index: cached projection states, a
read-only store (which holds no lock while it scans), and the one case where the
rebuild cannot be done (the files are damaged), which must refuse with a clear
``StoreBrokenError``; and two faults of the same kind found beside it (a read below the
versions a scan-rebuilt stream holds, a resync that took segments rolled during its
listing for removed). Real processes: ``tests/multiprocess/test_fell_behind.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

import sessiondb
from sessiondb import CompactionSettings, Message, Projection, RecordedEvent
from sessiondb._backends._fs import FileSystem
from sessiondb._backends.local import LocalBackend

pytestmark = pytest.mark.anyio

SEGMENT_BYTES = 2048


def _settings(keep_segments: int | None) -> CompactionSettings:
    return CompactionSettings(background=False, min_tail_events=5, min_tail_bytes=10**9, keep_segments=keep_segments)


def _count(state: dict[str, int], recorded: RecordedEvent) -> dict[str, int]:
    return {"events": state["events"] + 1, "last": recorded.version}


def _counts() -> Projection[dict[str, int]]:
    return Projection("counts", initial=lambda _sid: {"events": 0, "last": 0}, fold=_count, state_type=dict[str, int])


async def _turns(store: sessiondb.Store, session_id: str, count: int) -> None:
    for turn in range(count):
        await store.append(session_id, Message.user(f"turn {turn} " + "z" * 80))


async def _fall_behind(a: sessiondb.Store, b: sessiondb.Store, path: Path) -> None:
    """B has read the log; A rolls past B's newest segment and retention removes it."""
    newest_known = path / f"{b.statistics()['segments_sealed'] + 1:010d}.seg"
    await _turns(a, "s0", 60)
    compacted = await a.compact()
    assert compacted["segments_deleted"] > 0 and not newest_known.exists(), compacted


async def test_cached_projection_states_stay_right_across_a_rebuild(tmp_path: Path) -> None:
    path = tmp_path / "s"
    async with sessiondb.open_store(path, segment_bytes=SEGMENT_BYTES, compaction=_settings(0)) as a:
        a.register_projection(_counts())
        await a.create_session(session_id="s0")
        await a.create_session(session_id="quiet")
        async with sessiondb.open_store(path, segment_bytes=SEGMENT_BYTES, compaction=_settings(None)) as b:
            b.register_projection(_counts())
            assert await b.project("s0", "counts") == {"events": 1, "last": 1}  # cached at version 1
            assert await b.project("quiet", "counts") == {"events": 1, "last": 1}
            await _fall_behind(a, b, path)

            assert await b.project("s0", "counts") == {"events": 61, "last": 61} == await a.project("s0", "counts")
            assert b.statistics()["index_rebuilds"] == 1
            # Still at the version it was cached at: served from the cache, which holds the same events.
            assert await b.project("quiet", "counts") == {"events": 1, "last": 1}
            assert await b.append("quiet", Message.user("after the rebuild")) == 2  # folded into the cache
            assert await b.project("quiet", "counts") == {"events": 2, "last": 2} == await a.project("quiet", "counts")


async def test_a_read_only_store_that_fell_behind_rebuilds_without_a_lock(tmp_path: Path) -> None:
    path = tmp_path / "s"
    async with sessiondb.open_store(path, segment_bytes=SEGMENT_BYTES, compaction=_settings(0)) as a:
        await a.create_session(session_id="s0", scope="team")
        async with sessiondb.open_store(path, read_only=True) as b:
            assert (await b.load("s0")).version == 1
            await _fall_behind(a, b, path)

            assert await b.load("s0") == await a.load("s0")
            assert b.statistics()["index_rebuilds"] == 1
            assert await b.list_sessions(scope="team") == await a.list_sessions(scope="team")
            first = b.statistics()["first_available_position"]
            assert first == a.statistics()["first_available_position"] > 2
            assert await b.read_all(after=first - 1) == await a.read_all(after=first - 1)
            with pytest.raises(sessiondb.HistoryUnavailableError):
                await b.read_all(after=0)  # what retention removed stays removed, and says so
            await a.append("s0", Message.user("after the rebuild"))
            assert (await b.session_info("s0")).version == 62  # and it follows the log again


async def test_a_store_whose_rebuild_meets_damage_refuses_with_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "s"
    a = sessiondb.open_store(path, segment_bytes=SEGMENT_BYTES, compaction=_settings(0))
    b = sessiondb.open_store(path, segment_bytes=SEGMENT_BYTES, compaction=_settings(None))
    await a.start()
    await b.start()
    try:
        await a.create_session(session_id="s0")
        await b.load("s0")
        await _fall_behind(a, b, path)
        await _turns(a, "s0", 20)  # rolls at least once more: a sealed segment follows retention's cut
        await a.aclose()
        # Damage a sealed segment where no checkpoint covers it: the rebuild's scan finds it, as an open would.
        os.unlink(path / "CHECKPOINT")
        segments = sorted(name for name in os.listdir(path) if name.endswith(".seg"))
        assert len(segments) >= 2, segments
        damaged = segments[0]
        data = bytearray((path / damaged).read_bytes())
        data[data.index(b"turn ")] ^= 0x20
        (path / damaged).write_bytes(bytes(data))

        with pytest.raises(sessiondb.StoreBrokenError, match="rebuilding its index from the store's files failed"):
            await b.session_info("s0")
        with pytest.raises(sessiondb.StoreBrokenError, match=damaged):  # never served from the stale view
            await b.load("s0")
        with pytest.raises(sessiondb.StoreBrokenError, match="close the store and open it again once"):
            await b.append("s0", Message.user("from the store that cannot rebuild"))
        assert b.statistics()["index_rebuilds"] == 0
    finally:
        await b.aclose()
        await a.aclose()
    with pytest.raises(sessiondb.CorruptionError, match=damaged):  # reopening reports the same fault
        async with sessiondb.open_store(path):
            pass


@pytest.mark.parametrize("checkpoint", [True, False], ids=["from-checkpoint", "from-scan"])
async def test_readers_that_need_removed_history_get_history_unavailable_after_a_rebuild(
    tmp_path: Path, checkpoint: bool
) -> None:
    """B resumes a read and subscribers from the versions it had seen: what is stored comes exactly once and
    in order, and what retention removed is a ``HistoryUnavailableError``, never a silent skip."""
    path = tmp_path / "s"
    async with sessiondb.open_store(path, segment_bytes=SEGMENT_BYTES, compaction=_settings(0)) as a:
        await a.create_session(session_id="s0")
        await a.create_session(session_id="quiet")
        async with sessiondb.open_store(path, segment_bytes=SEGMENT_BYTES, compaction=_settings(None)) as b:
            assert (await b.load("quiet")).version == 1
            await _fall_behind(a, b, path)
            if not checkpoint:
                os.unlink(path / "CHECKPOINT")  # the rebuild scans: streams start at the first version left
            for n in range(3):  # after retention: stored, and readable by B
                await a.append("quiet", Message.user(f"quiet {n}"))

            with anyio.fail_after(60):  # a bound on a hang, not a timed assertion
                async with b.subscribe("s0", after=1) as behind:
                    with pytest.raises(sessiondb.HistoryUnavailableError, match="from version 2"):
                        await anext(behind)
                async with b.subscribe("quiet", after=1) as quiet:
                    assert [(await anext(quiet)).version for _ in range(3)] == [2, 3, 4]
                    assert await b.append("quiet", Message.user("from B")) == 5
                    assert (await anext(quiet)).version == 5
            assert b.statistics()["index_rebuilds"] == 1
            with pytest.raises(sessiondb.HistoryUnavailableError, match="from version 2"):
                [event async for event in b.read("s0", after=1)]


async def test_a_store_opened_by_a_scan_after_retention_does_not_skip_removed_versions(tmp_path: Path) -> None:
    """The same on open: without a checkpoint, a session whose start retention removed is rebuilt from its
    snapshot and the versions left; a read from below them must say they are gone, not start above them."""
    path = tmp_path / "s"
    async with sessiondb.open_store(path, segment_bytes=SEGMENT_BYTES, compaction=_settings(0)) as a:
        await a.create_session(session_id="s0")
        await _turns(a, "s0", 60)
        assert (await a.compact())["segments_deleted"] > 0
    os.unlink(path / "CHECKPOINT")
    async with sessiondb.open_store(path, segment_bytes=SEGMENT_BYTES) as opened:
        with pytest.raises(sessiondb.HistoryUnavailableError, match="from version 2"):
            [event async for event in opened.read("s0", after=1)]
        assert (await opened.load("s0")).version == 61


async def test_a_load_whose_snapshot_read_raced_a_rebuild_retries_from_the_rebuilt_view(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """B's load reads its snapshot map (which knows no snapshot yet), then, before it reads the log, A rolls
    past B's newest segment and retention removes the history: B's log read rebuilds the index and finds the
    history gone. The rebuilt view knows the snapshot that covers it, so the load must try again from it,
    although relearning the directory then finds nothing newer and the session did not change."""
    path = tmp_path / "s"
    async with sessiondb.open_store(path, segment_bytes=SEGMENT_BYTES, compaction=_settings(0)) as a:
        await a.create_session(session_id="s0")
        await a.create_session(session_id="quiet")
        await a.append("quiet", Message.user("quiet and covered by a snapshot soon"))
        async with sessiondb.open_store(path, segment_bytes=SEGMENT_BYTES, compaction=_settings(None)) as b:
            assert (await b.session_info("quiet")).version == 2
            real_read = b.backend.read_snapshot
            raced: list[bool] = []

            async def read_after_a_compacts(session_id: str, max_version: int) -> tuple[int, bytes] | None:
                if not raced:
                    raced.append(True)
                    await _fall_behind(a, b, path)
                return await real_read(session_id, max_version)

            monkeypatch.setattr(b.backend, "read_snapshot", read_after_a_compacts)
            assert await b.load("quiet") == await a.load("quiet")
            assert raced and b.statistics()["index_rebuilds"] == 1


class _RollsDuringListing(FileSystem):
    """Lists the directory as it was, then lets the store learn segments another process rolled meanwhile.

    The interleaving of a resync (a worker thread: the listing, then snapshot headers read) with the
    event loop's catch-up, made deterministic: the catch-up runs between the listing and the check.
    """

    backend: LocalBackend | None = None

    def listdir(self, path: str) -> list[str]:
        names = super().listdir(path)
        backend, self.backend = self.backend, None
        if backend is not None:
            known = {os.path.basename(segment.path) for segment in backend.segments.segments}
            names = [name for name in names if not name.endswith(".seg") or name in known]
            backend._follower.catch_up(locked=False)
        return names


async def test_a_resync_never_takes_segments_rolled_during_its_listing_for_removed(tmp_path: Path) -> None:
    path = tmp_path / "s"
    file_system = _RollsDuringListing()
    async with (
        sessiondb.open_store(path, segment_bytes=SEGMENT_BYTES, compaction=_settings(None)) as a,
        sessiondb.open_store(path, segment_bytes=SEGMENT_BYTES, file_system=file_system) as b,
    ):
        await a.create_session(session_id="s0")
        assert (await b.session_info("s0")).version == 1
        sealed = b.statistics()["segments_sealed"]
        await _turns(a, "s0", 40)  # several rolls that B has not seen
        assert isinstance(b.backend, LocalBackend)
        file_system.backend = b.backend
        await b.backend.resync()
        assert b.statistics()["segments_sealed"] >= sealed + 2
        assert b.statistics()["first_available_position"] == 1  # nothing was removed
        assert [event.version async for event in b.read("s0")] == list(range(1, 42))
