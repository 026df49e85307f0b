"""The CLI as a user means it: options anywhere, --version, Ctrl-C, and repair listing every dropped event."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import sessiondb
from sessiondb import Message
from sessiondb._backends.local import repair_store

from ._helpers import build_sample_store, environment, run_in_process, run_subprocess


def test_options_between_positionals(tmp_path: Path) -> None:
    # Issue 11: `export s chat --at 4 out.jsonl` failed with "unrecognized arguments".
    path = tmp_path / "store"
    build_sample_store(path)
    before = run_in_process("export", str(path), "chat", "--at", "4", str(tmp_path / "a.jsonl"))
    assert before.code == 0, before.err
    after = run_in_process("export", str(path), "chat", str(tmp_path / "b.jsonl"), "--at", "4")
    assert after.code == 0, after.err
    assert (tmp_path / "a.jsonl").read_text().count("\n") == (tmp_path / "b.jsonl").read_text().count("\n")
    shown = run_in_process("show", "--json", str(path), "--at", "2", "chat")
    assert shown.code == 0 and json.loads(shown.out)["version"] == 2


def test_version() -> None:
    result = run_subprocess("--version")
    assert result.code == 0 and result.out.strip() == f"sessiondb {sessiondb.__version__}"


def test_two_quick_ctrl_c_on_tail_exit_quietly(tmp_path: Path) -> None:
    # Issue 11: two Ctrl-C in quick succession printed "Exception ignored ... Invalid file descriptor".
    path = tmp_path / "store"
    build_sample_store(path)
    for gap in (0.0, 0.002, 0.02):
        child = subprocess.Popen(
            [sys.executable, "-m", "sessiondb", "tail", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment(),
        )
        assert child.stdout is not None
        child.stdout.readline()  # following: the recent events are printed
        child.send_signal(signal.SIGINT)
        time.sleep(gap)
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=60)
        assert child.returncode == 130, (gap, child.returncode, err)
        assert "Exception ignored" not in err and "Traceback" not in err, err


def test_repair_lists_the_damaged_batch_itself(tmp_path: Path) -> None:
    # Issue 11: repair said "v7-57 dropped" when v6 (in the damaged batch) was lost too.
    path = tmp_path / "store"

    async def build() -> None:
        async with sessiondb.open_store(path) as store:
            await store.create_session(session_id="a")
            await store.create_session(session_id="b")
            for n in range(2, 21):
                await store.append("a", Message.user(f"a-message-{n:03d}"))  # one batch per append
                await store.append("b", Message.user(f"b-message-{n:03d}"))

    asyncio.run(build())
    segment = path / "0000000001.seg"
    data = bytearray(segment.read_bytes())
    middle = data.index(b"a-message-006")
    data[middle : middle + 9] = b"XXXXXXXXX"  # v6 of "a": a checksum failure, valid frames follow
    segment.write_bytes(bytes(data))
    repaired = run_in_process("repair", str(path), "--json")
    assert repaired.code == 0, repaired.err
    dropped = json.loads(repaired.out)["dropped"]
    versions: dict[str, list[int]] = {}
    for entry in dropped:
        for session, listed in entry["versions"].items():
            versions.setdefault(session, []).extend(listed)
    assert sorted(versions["a"]) == list(range(6, 21))
    assert sorted(versions["b"]) == list(range(6, 21))
    assert sum(entry["events"] for entry in dropped) == 30
    text = run_in_process("verify", str(path))
    assert text.code == 0


@pytest.mark.anyio
async def test_repair_refused_by_this_process_says_so(tmp_path: Path) -> None:
    # Issue 11 said "open in another process (pid N)" where N was the caller's own pid. Since
    # issue 13 a second open in one process is a second writer (tests/unit/test_lifecycle.py);
    # what still needs the directory alone is repair, and its refusal names the real holder.
    path = tmp_path / "s"
    async with sessiondb.open_store(path), sessiondb.open_store(path):
        with pytest.raises(sessiondb.StoreLockedError) as refused:
            repair_store(path)
        message = str(refused.value)
        assert f"in this process (pid {os.getpid()}: 2 open_store() not closed yet" in message, message
        assert "another process" not in message
    assert not repair_store(path).changed  # released on close


def test_repair_refused_by_another_process_says_so(tmp_path: Path) -> None:
    path = tmp_path / "s"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(path)], stdout=subprocess.PIPE, text=True, env=environment()
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "READY\n"
        with pytest.raises(sessiondb.StoreLockedError, match="open for writing in another process") as refused:
            repair_store(path)
        assert "this process" not in str(refused.value)
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


_HOLDER = """
import asyncio, sys
import sessiondb

async def main(path):
    async with sessiondb.open_store(path):
        print("READY", flush=True)
        await asyncio.sleep(3600)

asyncio.run(main(sys.argv[1]))
"""
