"""A crash or an I/O failure at every step of a compaction pass loses no acknowledged event.

Uses the fault-injecting file system (``sessiondb.testing.FaultyFileSystem``):
the power is cut at the k-th file operation of a pass (k = 1, 2, 3 ... until a
pass completes), the real files are rewritten to what a power loss leaves, and
the store is reopened with the ordinary file system and checked. Then the same
with the n-th operation of each kind failing once with EIO while the store runs on.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import pytest

import sessiondb
from sessiondb import CompactionSettings, Message, ToolUse
from sessiondb.testing import FaultyFileSystem
from sessiondb.testing._faults import Fault

pytestmark = [pytest.mark.anyio, pytest.mark.crash]

SEGMENT_BYTES = 2048
EAGER = CompactionSettings(background=False, min_tail_events=3, min_tail_bytes=10**9, keep_segments=1)


async def _build(path: Path) -> dict[str, sessiondb.Session]:
    """A store with several sealed segments, a fork, a deleted session, a conversation compaction."""
    async with sessiondb.open_store(path, segment_bytes=SEGMENT_BYTES, compaction=EAGER) as store:
        for i in range(3):
            await store.create_session(session_id=f"s{i}", model="m")
        for turn in range(12):
            for i in range(3):
                await store.append(f"s{i}", Message.user(f"s{i} turn {turn} " + "z" * 40))
        await store.append(
            "s1",
            Message("assistant", [ToolUse("c1", "bash", "ls")]),
            Message.tool_result("c1", "bash", "a.py b.py"),
        )
        await store.compact()  # an earlier pass: snapshots and a checkpoint exist already
        child = await store.fork("s0", branch_name="b")
        await store.append(child, Message.user("child says hi"))
        await store.compact_conversation("s1", keep_last=2)
        await store.create_session(session_id="gone")
        await store.append("gone", Message.user("to be deleted " + "q" * 200))
        await store.delete_session("gone")
        for turn in range(10):
            for i in range(3):
                await store.append(f"s{i}", Message.user(f"s{i} later {turn} " + "y" * 40))
        return await _states(store)


async def _states(store: sessiondb.Store) -> dict[str, sessiondb.Session]:
    return {info.session_id: await store.load(info.session_id) for info in await store.list_sessions()}


async def _check(path: Path, expected: dict[str, sessiondb.Session]) -> None:
    async with sessiondb.open_store(path, segment_bytes=SEGMENT_BYTES, compaction=EAGER) as store:
        assert await _states(store) == expected
        version = await store.append("s0", Message.user("appends go on"))
        assert version == expected["s0"].version + 1
        await store.compact()  # and a later pass completes
        assert (await store.load("s0")).version == version


@pytest.mark.parametrize("mode", ["drop", "tear", "keep"])
async def test_power_loss_at_every_step_of_a_pass(tmp_path: Path, mode: str) -> None:
    source = tmp_path / "source"
    expected = await _build(source)
    completed = False
    trials = 0
    for k in range(1, 400):
        work = tmp_path / f"{mode}-{k}"
        shutil.copytree(source, work)
        fs = FaultyFileSystem(work, seed=k)
        store = sessiondb.open_store(work, file_system=fs, segment_bytes=SEGMENT_BYTES, compaction=EAGER)
        await store.start()
        fs.power_cut_at = fs.mutations + k
        try:
            await store.compact()
            completed = fs.powered
        except (OSError, sessiondb.SessionDBError):
            assert not fs.powered
        await store.aclose()  # its close-time checkpoint fails quietly when the power is gone
        fs.crash(mode)
        await _check(work, expected)
        shutil.rmtree(work)
        trials += 1
        if completed:
            break
    assert completed, "the pass never completed: the sweep did not cover it"
    assert trials > 10  # the pass has many steps (snapshots, checkpoint, deletions): each was a crash point


@pytest.mark.parametrize("operation", ["open", "write", "fsync", "rename", "unlink", "fsync_directory"])
async def test_failing_operation_during_a_pass(tmp_path: Path, operation: str) -> None:
    source = tmp_path / "source"
    expected = await _build(source)
    fired_any = False
    for nth in range(1, 60):
        work = tmp_path / f"{operation}-{nth}"
        shutil.copytree(source, work)
        fs = FaultyFileSystem(work)
        async with sessiondb.open_store(work, file_system=fs, segment_bytes=SEGMENT_BYTES, compaction=EAGER) as store:
            fault = Fault(operation, fs.count(operation) + nth, errno.EIO)
            fs.faults.append(fault)
            try:
                await store.compact()
            except OSError as exc:
                assert exc.errno == errno.EIO
            # The failed pass broke nothing: reads are right, appends work, the next pass completes.
            assert await _states(store) == expected
            if fault.fired:
                fired_any = True
                await store.compact()
                assert await _states(store) == expected
        await _check(work, expected)
        shutil.rmtree(work)
        if not fault.fired:
            break
    assert fired_any, f"no {operation} happened during a pass"
