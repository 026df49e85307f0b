"""I/O errors: the n-th write, fdatasync, fsync, rename, open or directory fsync fails with EIO or ENOSPC.

For every n, once and forever: the store reports StoreBrokenError (DiskFullError
naming the path for ENOSPC), fails every waiting append, never retries the
failed write or sync, loses nothing acknowledged, and reopens cleanly once the
fault is gone.
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

import sessiondb
from sessiondb import DiskFullError, Message, StoreBrokenError
from sessiondb.testing import Fault, FaultyFileSystem
from sessiondb.testing._crashwork import Ledger, Workload, check_store

pytestmark = [pytest.mark.anyio, pytest.mark.crash]

CODES = {"EIO": errno.EIO, "ENOSPC": errno.ENOSPC}
# Operations a store makes while writing (truncate and unlink happen only in recovery: tested below).
WRITE_PATH_OPERATIONS = ["write", "fdatasync", "fsync", "rename", "open", "fsync_directory", "makedirs"]


def _check_error(error: BaseException, code: int, path: Path) -> None:
    assert isinstance(error, StoreBrokenError), repr(error)
    if code == errno.ENOSPC:
        assert isinstance(error, DiskFullError), repr(error)
        assert str(path) in str(error)  # a full disk is reported with the path


async def fault_trial(path: Path, fault: Fault, *, seed: int = 0, steps: int = 5) -> tuple[bool, FaultyFileSystem]:
    """Run the workload with ``fault``; check the report, no retry, and a clean reopen. True if it fired."""
    fs = FaultyFileSystem(path, [fault], seed=seed)
    store = sessiondb.open_store(path, file_system=fs, segment_bytes=2048)
    workload: Workload | None = None
    try:
        await store.start()
    except sessiondb.SessionDBError as exc:
        assert fault.fired, repr(exc)
        _check_error(exc, fault.code, path)
    else:
        workload = Workload(store, seed, tasks=4)
        await workload.run(steps=steps)
        if fault.fired:
            assert workload.errors, "a failed write or sync must fail the appends waiting on it"
            for error in workload.errors:
                _check_error(error, fault.code, path)
            assert store.broken
            with pytest.raises(StoreBrokenError):
                await store.append("any-session", Message.user("after the failure"))
        else:
            assert workload.errors == []
        await store.aclose()
    if fault.fired:
        # Never retried: after the first failure the store made no further write or sync.
        first_failure = fs.failures[0][3]
        later = [op for op, _ in fs.log[first_failure + 1 :] if op in ("write", "fdatasync", "fsync", "rename")]
        assert later == [], (fault, later)
    # The fault is gone: the store reopens and holds everything acknowledged.
    problems = await check_store(path, workload.ledger if workload else Ledger())
    assert problems == [], (fault, problems)
    return bool(fault.fired), fs


@pytest.mark.parametrize("forever", [False, True], ids=["once", "forever"])
@pytest.mark.parametrize("code", list(CODES), ids=list(CODES))
@pytest.mark.parametrize("operation", WRITE_PATH_OPERATIONS)
async def test_nth_operation_fails(tmp_path: Path, operation: str, code: str, forever: bool) -> None:
    fired = 0
    n = 0
    while True:
        n += 1
        happened, _ = await fault_trial(
            tmp_path / f"{n}", Fault(operation, n, CODES[code], forever, partial=True), seed=n
        )
        if not happened:
            break  # the workload never reached the n-th call: every call was tried
        fired += 1
        if n >= 40:  # the rest of a long run repeats the same steady state (the slow run goes on)
            break
    assert fired >= 1


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(1, 4))
@pytest.mark.parametrize("operation", ["write", "fdatasync", "open", "rename", "fsync_directory"])
async def test_nth_operation_fails_long(tmp_path: Path, operation: str, seed: int) -> None:
    n = 0
    while True:
        n += 1
        happened, _ = await fault_trial(
            tmp_path / f"{n}", Fault(operation, n, errno.EIO, False, partial=True), seed=seed * 1000 + n, steps=12
        )
        if not happened:
            break


async def _torn_store(path: Path) -> None:
    async with sessiondb.open_store(path) as store:
        sid = await store.create_session(session_id="s")
        for i in range(5):
            await store.append(sid, Message.user(f"s|{i + 2}"))
    segment = path / "0000000001.seg"
    with open(segment, "ab") as handle:
        handle.write(b'{"batch":1,"bytes":500,"crc":1,"first":7}\n{"s":"s"')  # a torn tail
    (path / "0000000002.seg.tmp").write_bytes(b"a temp file a crash left")


@pytest.mark.parametrize("operation", ["truncate", "unlink", "fsync_directory", "read", "open"])
@pytest.mark.parametrize("code", list(CODES), ids=list(CODES))
async def test_fault_during_recovery(tmp_path: Path, operation: str, code: str) -> None:
    """A failure while recovering (cutting a torn tail, removing a temp file) fails the open, then it recovers."""
    path = tmp_path / "store"
    await _torn_store(path)
    fs = FaultyFileSystem(path, [Fault(operation, 1, CODES[code], forever=True)])
    with pytest.raises(StoreBrokenError) as caught:
        await sessiondb.open_store(path, file_system=fs).start()
    _check_error(caught.value, CODES[code], path)
    async with sessiondb.open_store(path) as store:  # the fault is gone
        assert (await store.session_info("s")).version == 6
        assert await store.append("s", Message.user("s|7")) == 7


async def test_enospc_message_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "store"
    fs = FaultyFileSystem(path, [Fault("write", 3, errno.ENOSPC)])
    async with sessiondb.open_store(path, file_system=fs) as store:
        sid = await store.create_session()
        with pytest.raises(DiskFullError) as caught:
            await store.append(sid, Message.user("x"))
        assert str(path) in str(caught.value) and "full" in str(caught.value)
        # Every later refusal keeps the class: "free space" is still the answer, not just "reopen".
        with pytest.raises(DiskFullError, match="full"):
            await store.append(sid, Message.user("y"))
        with pytest.raises(DiskFullError, match="full"):
            await store.create_session()
    assert fs.count("fdatasync") == 1  # the create_session batch; the failed write is never synced


@pytest.mark.parametrize("operation", ["open_read", "read"])
async def test_read_errors_reach_the_reader_and_break_nothing(tmp_path: Path, operation: str) -> None:
    """A failed read is the reader's error (the I/O error itself); the store keeps writing and loses nothing."""
    path = tmp_path / "store"
    async with sessiondb.open_store(path) as store:
        sid = await store.create_session(session_id="s")
        await store.append(sid, Message.user("s|2"))
    fs = FaultyFileSystem(path)
    async with sessiondb.open_store(path, file_system=fs) as store:
        fault = Fault(operation, fs.count(operation) + 1, errno.EIO)  # the next one, after recovery
        fs.faults.append(fault)
        try:
            await store.load("s")
            await store.read_all(after=0)
        except OSError:
            assert fault.fired
        else:
            assert not fault.fired, "a failed read must reach the reader"
        assert not store.broken
        assert await store.append("s", Message.user("s|3")) == 3
        assert len((await store.load("s")).messages) == 2
