"""verify and repair of the storage compactor's files: snapshot files, the index checkpoint, leftover temp files.

Real stores built with eager storage compaction, real damage on disk. A damaged
snapshot or checkpoint is harmless while the log still holds its history (open
ignores it; verify says ``snapshot_ignored``/``checkpoint_ignored``; repair moves
it aside), but a damaged snapshot whose segments retention removed was the only
copy of that history (``history_lost``: not ok; repair leaves it in place).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import zlib
from pathlib import Path
from typing import Any

import anyio
import pytest

import sessiondb
from sessiondb import HistoryUnavailableError, Message
from sessiondb._backends._fs import FileSystem
from sessiondb._backends.local import Problem, VerifyReport, repair_store, verify_store
from sessiondb._backends.local._checkpoint import CHECKPOINT_NAME
from sessiondb._backends.local._snapshot_files import snapshot_file_name
from sessiondb.cli import main as cli_main
from sessiondb.testing._crashwork import eager_compaction

pytestmark = pytest.mark.anyio

SESSIONS = ("s0", "s1", "s2")


async def _build(path: Path, *, keep_all: bool) -> None:
    """Three sessions, 40 turns, a compaction pass every 5 turns, 1 KiB segments.

    ``keep_all``: the eager settings without retention (every segment kept, so every
    snapshot's history is still in the log); otherwise retention removes the oldest
    segments and the snapshots are the only copy of the sessions' early versions.
    """
    options = eager_compaction()
    if keep_all:
        options["compaction"] = dataclasses.replace(options["compaction"], keep_segments=None)
    async with sessiondb.open_store(path, segment_bytes=1024, **options) as store:
        for sid in SESSIONS:
            await store.create_session(session_id=sid)
        for turn in range(40):
            for sid in SESSIONS:
                await store.append(sid, Message.user(f"{sid} turn {turn} " + "z" * 60))
            if turn % 5 == 4:
                await store.compact()


async def _loads(path: Path) -> dict[str, Any]:
    """Every session's ``load()``, or the type of the error it raises."""
    out: dict[str, Any] = {}
    async with sessiondb.open_store(path) as store:
        for info in await store.list_sessions():
            try:
                out[info.session_id] = await store.load(info.session_id)
            except HistoryUnavailableError as exc:
                out[info.session_id] = type(exc)
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict[str, Any]]]:
    """Both stores, built once, with what every session loads as (copied per test, never changed)."""
    import asyncio

    root = tmp_path_factory.mktemp("verify-snapshots")
    out = {}
    for name, keep_all in (("full", True), ("pruned", False)):
        path = root / name
        asyncio.run(_build(path, keep_all=keep_all))
        out[name] = (path, asyncio.run(_loads(path)))
    return out


def _copy(built: dict[str, tuple[Path, dict[str, Any]]], name: str, tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    source, loads = built[name]
    path = tmp_path / name
    shutil.copytree(source, path)
    return path, loads


def _snapshots(path: Path, session_id: str) -> list[Path]:
    """The session's snapshot files, oldest first (names sort by version)."""
    prefix = snapshot_file_name(session_id, 0).rpartition("-")[0] + "-"
    return sorted(p for p in path.iterdir() if p.name.startswith(prefix) and p.name.endswith(".snap"))


def _header_end(blob: bytes) -> int:
    return blob.index(b"\n") + 1


def _damage(target: Path, how: str) -> int:
    """Damage a snapshot file; return the byte offset verify must name."""
    blob = target.read_bytes()
    start = _header_end(blob)
    if how == "flip":
        data = bytearray(blob)
        data[start + (len(blob) - start) // 2] ^= 0x10
        target.write_bytes(bytes(data))
        return start
    if how == "truncate":
        target.write_bytes(blob[: start + 10])
        return start + 10
    if how == "garbage":
        target.write_bytes(b"\x00\xffnot a snapshot" * 300)  # no newline: no header at all
        return 0
    if how == "wrong_crc":
        header = json.loads(blob[: start - 1])
        header["crc"] = (header["crc"] + 1) % 2**32
        line = json.dumps(header).encode() + b"\n"
        target.write_bytes(line + blob[start:])
        return len(line)
    if how == "undecodable":  # header and checksum right, payload not a snapshot: the engine's decoder refuses it
        header = json.loads(blob[: start - 1])
        payload = b'{"format": 1, "version": "not a number"}'
        header["bytes"], header["crc"] = len(payload), zlib.crc32(payload)
        line = json.dumps(header).encode() + b"\n"
        target.write_bytes(line + payload)
        return len(line)
    raise AssertionError(how)


def _only(report: VerifyReport) -> Problem:
    assert len(report.problems) == 1, report.format()
    return report.problems[0]


async def _cli(*argv: str) -> tuple[int, str, str]:
    """The ``sessiondb`` command line, in process (in a thread: it runs its own event loop)."""
    out, err = io.StringIO(), io.StringIO()
    code = await anyio.to_thread.run_sync(lambda: cli_main(list(argv), stdout=out, stderr=err))
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("how", ["flip", "truncate", "garbage", "wrong_crc", "undecodable"])
async def test_damaged_snapshot_with_history_in_the_log_is_harmless_and_moved_aside(
    built: dict[str, tuple[Path, dict[str, Any]]], tmp_path: Path, how: str
) -> None:
    path, expected = _copy(built, "full", tmp_path)
    target = _snapshots(path, "s0")[-1]  # the newest: the one load() starts from
    offset = _damage(target, how)

    report = verify_store(path)
    problem = _only(report)
    assert (problem.path, problem.offset, problem.kind, problem.session) == (
        str(target),
        offset,
        "snapshot_ignored",
        "s0",
    )
    assert problem.lost is None and "still in the log" in problem.detail
    assert report.ok and report.checkpoint == "ok"
    assert f"snapshot_ignored in {target}" in report.format() and report.format().splitlines()[-1].startswith("OK")
    assert await _loads(path) == expected  # open ignores it and replays the log

    damaged = target.read_bytes()
    repaired = repair_store(path)
    assert repaired.changed and repaired.dropped == [] and repaired.left == []
    assert repaired.saved_to is not None
    saved = Path(repaired.saved_to)
    # The snapshot and the checkpoint that lists it are moved aside, never destroyed.
    assert sorted(Path(m.path).name for m in repaired.moved) == sorted([target.name, CHECKPOINT_NAME])
    assert not target.exists() and (saved / target.name).read_bytes() == damaged
    assert not (path / CHECKPOINT_NAME).exists() and (saved / CHECKPOINT_NAME).exists()
    assert f"moved {target} aside" in repaired.format()
    after = verify_store(path)
    assert after.ok and after.problems == [], after.format()
    assert await _loads(path) == expected
    assert verify_store(path).problems == [] and not repair_store(path).changed


async def test_damaged_older_snapshot_is_harmless(
    built: dict[str, tuple[Path, dict[str, Any]]], tmp_path: Path
) -> None:
    path, expected = _copy(built, "full", tmp_path)
    snapshots = _snapshots(path, "s1")
    assert len(snapshots) >= 2  # older ones are kept for time travel while their log is
    target = snapshots[0]
    offset = _damage(target, "flip")
    problem = _only(verify_store(path))
    assert (problem.path, problem.offset, problem.kind, problem.session) == (
        str(target),
        offset,
        "snapshot_ignored",
        "s1",
    )
    assert await _loads(path) == expected
    assert repair_store(path).changed
    assert verify_store(path).problems == []
    assert await _loads(path) == expected


@pytest.mark.parametrize("how", ["flip", "truncate", "header"])
async def test_damaged_checkpoint_is_harmless_and_moved_aside(
    built: dict[str, tuple[Path, dict[str, Any]]], tmp_path: Path, how: str
) -> None:
    path, expected = _copy(built, "pruned", tmp_path)  # open from the log even with its start removed
    untouched = tmp_path / "untouched"
    target = path / CHECKPOINT_NAME
    blob = target.read_bytes()
    start = _header_end(blob)
    if how == "flip":
        data = bytearray(blob)
        data[start + 40] ^= 0x01
        target.write_bytes(bytes(data))
        offset = start
    elif how == "truncate":
        target.write_bytes(blob[: start + 7])
        offset = start
    else:
        target.write_bytes(b"garbage" * 100)
        offset = 0

    report = verify_store(path)
    problem = _only(report)
    assert (problem.path, problem.offset, problem.kind) == (str(target), offset, "checkpoint_ignored")
    assert report.ok and report.checkpoint == "ignored"
    shutil.copytree(path, untouched)
    assert await _loads(untouched) == expected  # a full scan, snapshots adopted for the removed starts

    repaired = repair_store(path)
    assert [Path(m.path).name for m in repaired.moved] == [CHECKPOINT_NAME] and repaired.dropped == []
    assert repaired.saved_to is not None and (Path(repaired.saved_to) / CHECKPOINT_NAME).read_bytes() != blob
    assert not target.exists()
    assert verify_store(path).problems == []
    assert await _loads(path) == expected


async def test_checkpoint_that_no_longer_matches_the_log_is_reported(
    built: dict[str, tuple[Path, dict[str, Any]]], tmp_path: Path
) -> None:
    path, _ = _copy(built, "full", tmp_path)
    sealed = sorted(path.glob("*.seg"))[0]
    with open(sealed, "ab") as handle:  # a sealed segment that grew: open cannot trust the checkpoint's index
        handle.write(b"\n")
    report = verify_store(path)
    kinds = {(Path(p.path).name, p.kind) for p in report.problems}
    assert (CHECKPOINT_NAME, "checkpoint_ignored") in kinds, report.format()
    assert "does not match the log" in next(p.detail for p in report.problems if p.kind == "checkpoint_ignored")


async def test_leftover_temp_files_are_reported_and_removed_on_open(
    built: dict[str, tuple[Path, dict[str, Any]]], tmp_path: Path
) -> None:
    path, expected = _copy(built, "pruned", tmp_path)
    snapshot_tmp = path / (snapshot_file_name("s0", 999) + ".tmp")
    checkpoint_tmp = path / (CHECKPOINT_NAME + ".tmp")
    snapshot_tmp.write_bytes(b'{"sessiondb": "snapshot", "form')  # a write cut short
    checkpoint_tmp.write_bytes(b"")
    report = verify_store(path)
    assert sorted(report.temp_files) == sorted([snapshot_tmp.name, checkpoint_tmp.name])
    assert report.problems == [] and report.ok
    text = report.format()
    assert f"leftover temp file {snapshot_tmp.name} (an interrupted snapshot write" in text
    assert f"leftover temp file {checkpoint_tmp.name} (an interrupted checkpoint write" in text
    assert await _loads(path) == expected
    assert not snapshot_tmp.exists() and not checkpoint_tmp.exists()
    assert verify_store(path).temp_files == []


@pytest.mark.parametrize("how", ["flip", "garbage"])
async def test_damaged_snapshot_of_removed_history_is_history_lost_and_left_in_place(
    built: dict[str, tuple[Path, dict[str, Any]]], tmp_path: Path, how: str
) -> None:
    path, expected = _copy(built, "pruned", tmp_path)
    assert not (path / "0000000001.seg").exists()  # retention really removed the sessions' start
    assert all(not isinstance(v, type) for v in expected.values())
    target = _snapshots(path, "s0")[-1]
    version = int(target.name.rpartition("-")[2].split(".")[0])
    offset = _damage(target, how)

    report = verify_store(path)
    problem = _only(report)
    assert (problem.path, problem.offset, problem.kind, problem.session) == (str(target), offset, "history_lost", "s0")
    assert problem.lost == [1, version]
    assert f"only copy of versions 1-{version}" in problem.detail
    assert not report.ok and report.first_fatal == problem and report.first_damage is None
    assert report.format().splitlines()[-1].startswith("HISTORY LOST")

    # The store still opens; the other sessions are untouched; s0's history is really gone.
    loads = await _loads(path)
    assert loads["s0"] is HistoryUnavailableError
    assert {sid: loads[sid] for sid in ("s1", "s2")} == {sid: expected[sid] for sid in ("s1", "s2")}

    code, out, err = await _cli("verify", str(path))
    assert code == 1 and f"history_lost in {target}" in out
    assert "lost history: history_lost in" in err and err.count("\n") == 1
    code, out, _ = await _cli("verify", str(path), "--json")
    data = json.loads(out)
    assert code == 1 and data["ok"] is False
    assert [(p["path"], p["kind"], p["session"], p["lost"]) for p in data["problems"]] == [
        (str(target), "history_lost", "s0", [1, version])
    ]

    # Repair must not delete nor hide the only copy: it stays where it is, reported.
    damaged = target.read_bytes()
    repaired = repair_store(path)
    assert not repaired.changed and repaired.saved_to is None
    assert repaired.left == [problem] and target.read_bytes() == damaged
    assert (path / CHECKPOINT_NAME).exists()
    assert f"left in place {target}" in repaired.format()
    assert await _loads(path) == loads  # opens as before


async def test_missing_snapshot_listed_by_the_checkpoint(
    built: dict[str, tuple[Path, dict[str, Any]]], tmp_path: Path
) -> None:
    path, expected = _copy(built, "full", tmp_path)
    target = _snapshots(path, "s2")[-1]
    target.unlink()
    problem = _only(verify_store(path))
    assert (problem.path, problem.kind, problem.session) == (str(target), "snapshot_ignored", "s2")
    assert "missing" in problem.detail
    repaired = repair_store(path)
    assert [Path(m.path).name for m in repaired.moved] == [CHECKPOINT_NAME]
    assert verify_store(path).problems == []
    assert await _loads(path) == expected


async def test_cli_renders_harmless_snapshot_problems_one_line_each(
    built: dict[str, tuple[Path, dict[str, Any]]], tmp_path: Path
) -> None:
    path, _ = _copy(built, "full", tmp_path)
    first, second = _snapshots(path, "s0")[-1], _snapshots(path, "s1")[-1]
    _damage(first, "flip")
    _damage(second, "garbage")
    code, out, err = await _cli("verify", str(path))
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert [line.strip().split(" in ")[0] for line in lines[1:3]] == ["snapshot_ignored", "snapshot_ignored"]
    assert {first.name, second.name} <= {
        Path(line.split(" in ", 1)[1].split(" at byte")[0]).name for line in lines[1:3]
    }
    assert lines[-1].startswith("OK")
    code, out, _ = await _cli("repair", str(path), "--json")
    data = json.loads(out)
    assert code == 0 and data["changed"] is True
    assert sorted(Path(m["path"]).name for m in data["moved"]) == sorted([first.name, second.name, CHECKPOINT_NAME])


class _Recording(FileSystem):
    """The real file system, remembering every rename, unlink and directory fsync."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, ...]] = []

    def rename(self, source: str, target: str) -> None:
        super().rename(source, target)
        self.calls.append(("rename", source, target))

    def unlink(self, path: str) -> None:
        super().unlink(path)
        self.calls.append(("unlink", path))

    def fsync_directory(self, path: str) -> None:
        super().fsync_directory(path)
        self.calls.append(("fsync_directory", path))


async def test_repair_syncs_both_directories_after_every_move(
    built: dict[str, tuple[Path, dict[str, Any]]], tmp_path: Path
) -> None:
    path, expected = _copy(built, "full", tmp_path)
    _damage(_snapshots(path, "s0")[-1], "flip")
    _damage(_snapshots(path, "s1")[-1], "truncate")
    fs = _Recording()
    repaired = repair_store(path, file_system=fs)
    assert len(repaired.moved) == 3  # two snapshots and the checkpoint that lists them
    renames = [i for i, call in enumerate(fs.calls) if call[0] in ("rename", "unlink")]
    assert len(renames) == 3 and all(fs.calls[i][0] == "rename" for i in renames)
    for i in renames:
        _, source, target = fs.calls[i]
        synced = {call[1] for call in fs.calls[i + 1 : i + 3] if call[0] == "fsync_directory"}
        assert synced == {os.path.dirname(source), os.path.dirname(target)}, fs.calls
    assert await _loads(path) == expected
