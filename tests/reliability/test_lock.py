"""Two processes on one directory: both write; repair is refused at once while one has it open; SIGKILL frees it."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

import sessiondb
from sessiondb import Message, StoreLockedError
from sessiondb._backends.local import repair_store

pytestmark = pytest.mark.anyio

HOLDER = """
import asyncio, sys, sessiondb
async def main():
    async with sessiondb.open_store(sys.argv[1]) as store:
        sid = await store.create_session(session_id="held")
        await store.append(sid, sessiondb.Message.user("from the first process"))
        print("READY", flush=True)
        await asyncio.sleep(3600)
asyncio.run(main())
"""


async def test_second_process_writes_beside_then_repair_runs_after_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "store"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "READY\n"
        async with sessiondb.open_store(path) as store:
            assert await store.append("held", Message.user("from the second process")) == 3
        with anyio.fail_after(10):  # "at once": a blocking lock would hang here instead
            with pytest.raises(StoreLockedError) as caught:
                repair_store(path)
        assert str(path) in str(caught.value)
        # A read-only open is allowed beside the writer and sees what both committed.
        async with sessiondb.open_store(path, read_only=True) as reader:
            assert (await reader.session_info("held")).version == 3
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    assert holder.returncode == -signal.SIGKILL
    # The kernel released the flocks with the process: the directory is free for a repair.
    assert not repair_store(path).changed
    async with sessiondb.open_store(path) as store:
        assert await store.append("held", Message.user("after the kill")) == 4


async def test_second_open_in_the_same_process_writes_too(tmp_path: Path) -> None:
    async with sessiondb.open_store(tmp_path / "store") as first:
        sid = await first.create_session()
        async with sessiondb.open_store(tmp_path / "store") as second:
            assert await second.append(sid, Message.user("second")) == 2
        assert await first.append(sid, Message.user("first")) == 3
