"""The bounded cache of segment read descriptors: a descriptor in use is never closed under its user.

Reads run on the event loop and in worker threads, and the log catch-up keeps the
active segment's descriptor across an ``fstat`` and several ``pread`` calls; eviction
(the cache is full), retention (the segment was deleted) and close must all wait
for the last user. Real files and descriptors throughout.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import sessiondb
from sessiondb import CompactionSettings, LocalBackend, Message
from sessiondb._backends._fs import FileSystem
from sessiondb._backends.local._fdcache import ReadDescriptors
from sessiondb._backends.local._segments import Segment

pytestmark = pytest.mark.anyio


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def _segments(tmp_path: Path, count: int) -> list[Segment]:
    segments = []
    for number in range(1, count + 1):
        path = tmp_path / f"{number:010d}.seg"
        path.write_bytes(f"segment {number}\n".encode())
        segments.append(Segment(number, str(path), number, path.stat().st_size))
    return segments


def test_least_recently_used_is_closed_first_and_the_limit_holds(tmp_path: Path) -> None:
    fs = FileSystem()
    cache = ReadDescriptors(fs, limit=2)
    one, two, three = _segments(tmp_path, 3)
    fds = {}
    for segment in (one, two, one, three):  # "one" used again: "two" is now the oldest
        fds[segment.number] = fd = cache.pin(segment)
        cache.unpin(fd)
    assert len(cache) == 2
    assert one.read_fd is not None and three.read_fd is not None and two.read_fd is None
    assert not _is_open(fds[2]) or fds[2] in (one.read_fd, three.read_fd)  # closed (its number may be reused)
    assert fs.pread(one.read_fd, 9, 0) == b"segment 1"
    cache.close_all()
    assert len(cache) == 0 and not _is_open(fds[1]) and not _is_open(fds[3])


def test_a_pinned_descriptor_survives_eviction_retention_and_close(tmp_path: Path) -> None:
    fs = FileSystem()
    cache = ReadDescriptors(fs, limit=1)
    one, two = _segments(tmp_path, 2)
    held = cache.pin(one)  # a read (or a catch-up) in flight on segment 1
    other = cache.pin(two)  # the cache is full: segment 1 is evicted while in use
    assert one.read_fd is None and len(cache) == 1
    assert fs.pread(held, 9, 0) == b"segment 1"  # still open for its user
    cache.unpin(held)
    assert not _is_open(held) or held == other  # closed at the last unpin
    cache.unpin(other)

    again = cache.pin(two)
    cache.discard(two)  # retention deleted segment 2 while a read used it
    assert fs.pread(again, 9, 0) == b"segment 2"
    cache.unpin(again)
    assert not _is_open(again)

    last = cache.pin(one)
    cache.close_all()  # closing with a read in a worker thread still going
    assert fs.pread(last, 9, 0) == b"segment 1"
    cache.unpin(last)
    assert not _is_open(last)


def test_two_users_of_one_descriptor_close_it_once(tmp_path: Path) -> None:
    fs = FileSystem()
    cache = ReadDescriptors(fs, limit=1)
    one, two = _segments(tmp_path, 2)
    first = cache.pin(one)
    second = cache.pin(one)
    assert first == second
    cache.unpin(cache.pin(two))  # evicts segment 1 while two users hold it
    cache.unpin(first)
    assert fs.pread(second, 9, 0) == b"segment 1"
    cache.unpin(second)
    assert not _is_open(second) or second == two.read_fd


async def test_evicted_history_another_writer_removed_is_read_through_its_snapshots(tmp_path: Path) -> None:
    # With few descriptors the reader's early segments are evicted, so it must open them
    # again after another writer's retention unlinked them: ENOENT becomes
    # HistoryUnavailableError, and load learns the other writer's snapshots and retries.
    eager = CompactionSettings(background=False, min_tail_events=1, keep_segments=1)
    quiet = CompactionSettings(background=False)
    reader_backend = LocalBackend(tmp_path, segment_bytes=1024, max_read_fds=2)
    async with (
        sessiondb.open_store(reader_backend, compaction=quiet) as reader,
        sessiondb.open_store(tmp_path, segment_bytes=1024, compaction=eager) as writer,
    ):
        await writer.create_session(session_id="s")
        for i in range(40):
            await writer.append("s", Message.user(f"{i}" * 60))
        before = await reader.load("s")
        assert len(reader_backend.segments.read_fds) <= 2
        segments = sorted(name for name in os.listdir(tmp_path) if name.endswith(".seg"))
        await writer.compact()
        assert segments[0] not in os.listdir(tmp_path)  # history the reader indexed is gone
        after = await reader.load("s")
        assert after == before == await writer.load("s")
        assert not reader.broken
        assert len(reader_backend.segments.read_fds) <= 2
