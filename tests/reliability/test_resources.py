"""Resources stay bounded whatever the history: read descriptors, and refusals by the system."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import sessiondb
from sessiondb import LocalBackend, Message

pytestmark = pytest.mark.anyio

# Issue 11: 60 one-segment appends under a soft RLIMIT_NOFILE of 48 made every later load
# raise a raw OSError (EMFILE): one read descriptor per segment ever read stayed open.
_CHILD = textwrap.dedent(
    """
    import asyncio, resource, sys
    import sessiondb
    from sessiondb import Message, ResourceExhaustedError

    async def main(path):
        resource.setrlimit(resource.RLIMIT_NOFILE, (48, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
        async with sessiondb.open_store(path, segment_bytes=1024) as store:
            sids = [await store.create_session(session_id=f"s{i}") for i in range(3)]
            for n in range(60):
                await store.append(sids[n % 3], Message.user(str(n % 10) * 1000))
            for _ in range(3):
                for sid in sids:
                    assert len((await store.load(sid)).messages) == 20
                    assert len([e async for e in store.read(sid)]) == 21
                assert len(await store.read_all()) == 63
        async with sessiondb.open_store(path, segment_bytes=1024) as store:
            # With (almost) no descriptors left, the refusal is a SessionDBError, never a raw OSError.
            hold = []
            try:
                while True:
                    hold.append(open(path + "/LOCK"))
            except OSError:
                pass
            try:
                await store.load("s2")
            except ResourceExhaustedError as exc:
                print("refused:", exc)
            finally:
                for f in hold:
                    f.close()
            assert len((await store.load("s2")).messages) == 20
            # Holding every descriptor but the cache's, reads give the cache's back and still work.
            try:
                while True:
                    hold.append(open(path + "/LOCK"))
            except OSError:
                pass
            try:
                assert len((await store.load("s1")).messages) == 20
            finally:
                for f in hold:
                    f.close()
        print("ok")

    asyncio.run(main(sys.argv[1]))
    """
)


def test_reads_stay_within_a_small_descriptor_limit(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(tmp_path / "store")], capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "ok"
    assert "refused: the system refused" in done.stdout
    assert "Traceback" not in done.stderr


async def test_read_descriptors_are_bounded(tmp_path: Path) -> None:
    async with sessiondb.open_store(tmp_path / "s", segment_bytes=1024) as store:
        sid = await store.create_session()
        for _ in range(80):
            await store.append(sid, Message.user("x" * 1000))
        before = len(os.listdir("/proc/self/fd"))
        await store.load(sid)
        assert len(await store.read_all(limit=1000)) == 81
        backend = store.backend
        assert isinstance(backend, LocalBackend)
        assert len(backend.segments.read_fds) <= 32
        assert len(os.listdir("/proc/self/fd")) <= before + 32
