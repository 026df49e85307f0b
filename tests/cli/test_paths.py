"""The CLI's path arguments as the user means them: ``~``, ``DIR/``, bulk export failures."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import sessiondb

from ._helpers import build_sample_store, run_in_process, run_subprocess


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    path = tmp_path / "store"
    build_sample_store(path)
    return path


def test_export_to_a_new_directory_with_trailing_separator(sample: Path, tmp_path: Path) -> None:
    newdir = tmp_path / "newdir"
    result = run_subprocess("export", str(sample), "chat", f"{newdir}/")
    assert result.code == 0, result.err
    assert newdir.is_dir()
    assert (newdir / "chat.jsonl").is_file()


def test_tilde_in_store_and_file_arguments(sample: Path, home: Path) -> None:
    (home / "store").symlink_to(sample)  # quoted '~' reaches the program unexpanded
    result = run_in_process("export", "~/store", "chat", "~/out/")
    assert result.code == 0, result.err
    assert (home / "out" / "chat.jsonl").is_file()
    assert run_in_process("ls", "~/store").code == 0
    assert run_in_process("verify", "~/store").code == 0
    result = run_in_process("export", "~/store", "--all", "~/all")
    assert result.code == 0, result.err
    assert sorted(p.name for p in (home / "all").iterdir()) == ["chat-fork.jsonl", "chat.jsonl", "other.jsonl"]
    result = run_in_process("import", "~/imported", "~/all")
    assert result.code == 0, result.err
    assert (home / "imported").is_dir()
    assert not (Path.cwd() / "~").exists()


def test_export_all_carries_on_and_lists_every_failure(sample: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "chat.jsonl").mkdir(parents=True)  # these two cannot be written
    (out / "other.jsonl").mkdir()
    result = run_subprocess("export", str(sample), "--all", str(out))
    assert result.code == 1
    assert "Traceback" not in result.err
    assert "2 of 3 session(s) were not exported" in result.err
    assert "  chat: " in result.err and "  other: " in result.err
    assert (out / "chat-fork.jsonl").is_file()


def test_export_of_a_long_utf8_id_works(tmp_path: Path) -> None:
    session_id = "é" * 112  # 224 bytes, the longest valid id

    async def build() -> None:
        async with sessiondb.open_store(tmp_path / "store") as store:
            await store.create_session(session_id=session_id)

    asyncio.run(build())
    result = run_in_process("export", str(tmp_path / "store"), "--all", str(tmp_path / "all"))
    assert result.code == 0, result.err
    assert (tmp_path / "all" / f"{session_id}.jsonl").is_file()


def test_a_store_argument_that_is_a_file(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_text("x")
    for argv in (["ls", str(plain)], ["import", str(plain), str(tmp_path)], ["compact", str(plain)]):
        result = run_in_process(*argv)
        assert result.code == 1
        assert "is a file, not a store directory" in result.err
