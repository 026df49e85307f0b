"""Two processes on one directory: the second gets StoreLockedError at once; a SIGKILLed owner frees the lock."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

import sessiondb
from sessiondb import Message, StoreLockedError

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


async def test_second_process_is_refused_then_opens_after_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "store"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "READY\n"
        with anyio.fail_after(10):  # "at once": a blocking lock would hang here instead
            with pytest.raises(StoreLockedError) as caught:
                await sessiondb.open_store(path).start()
        assert str(holder.pid) in str(caught.value) and str(path) in str(caught.value)
        # A read-only open is allowed beside the writer and sees what it committed.
        async with sessiondb.open_store(path, read_only=True) as reader:
            assert (await reader.session_info("held")).version == 2
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    assert holder.returncode == -signal.SIGKILL
    # The kernel released the flock with the process: this process owns the store now.
    async with sessiondb.open_store(path) as store:
        assert await store.append("held", Message.user("from the second process")) == 3


async def test_second_open_in_the_same_process_is_refused(tmp_path: Path) -> None:
    async with sessiondb.open_store(tmp_path / "store"):
        with pytest.raises(StoreLockedError):
            await sessiondb.open_store(tmp_path / "store").start()
    async with sessiondb.open_store(tmp_path / "store") as store:  # released on close
        await store.create_session()
