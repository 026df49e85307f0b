"""A store another user owns: opening it for writing is a StorePermissionError naming the file, not "broken".

Run as root only: the opener is a real subprocess running as nobody (uid 65534).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import sessiondb
from sessiondb import Message

NOBODY = 65534
SETPRIV = shutil.which("setpriv")
pytestmark = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0 or SETPRIV is None, reason="needs root and setpriv to run as nobody"
)

_OPEN = textwrap.dedent(
    """
    import asyncio, sys, sessiondb

    async def main() -> None:
        async with sessiondb.open_store(sys.argv[1], read_only=sys.argv[2] == "ro") as store:
            print("sessions", [info.session_id for info in await store.list_sessions()])

    try:
        asyncio.run(main())
    except sessiondb.SessionDBError as exc:
        print(type(exc).__name__, isinstance(exc, PermissionError), exc)
    """
)


@pytest.fixture
def shared_store() -> Iterator[Path]:
    """A store root owns, readable by everyone (in a directory others may enter)."""
    parent = Path(tempfile.mkdtemp(prefix="sessiondb-perm-"))
    try:
        parent.chmod(0o755)
        path = parent / "store"

        async def make() -> None:
            async with sessiondb.open_store(path, file_mode=0o644, dir_mode=0o755) as store:
                await store.create_session(session_id="chat")
                await store.append("chat", Message.user("hello"))

        asyncio.run(make())
        yield path
    finally:
        shutil.rmtree(parent)


def _as_nobody(*argv: str) -> subprocess.CompletedProcess[str]:
    assert SETPRIV is not None
    return subprocess.run(
        [SETPRIV, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", sys.executable, *argv],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_opening_another_users_store_for_writing_names_the_file_and_read_only(shared_store: Path) -> None:
    result = _as_nobody("-c", _OPEN, str(shared_store), "rw")
    assert result.stdout.startswith("StorePermissionError True cannot open store "), result.stdout + result.stderr
    assert f"{shared_store / 'LOCK'} refused this user" in result.stdout
    assert "read_only=True" in result.stdout
    assert _as_nobody("-c", _OPEN, str(shared_store), "ro").stdout.strip() == "sessions ['chat']"


def test_creating_a_store_where_this_user_may_not_write(shared_store: Path) -> None:
    for new in (shared_store.parent / "new", shared_store.parent / "a" / "b" / "new"):
        result = _as_nobody("-c", _OPEN, str(new), "rw")
        assert result.stdout.startswith("StorePermissionError True cannot create store "), result.stdout + result.stderr
        # The directory that refused (the existing parent), not the store path that does not exist.
        assert f"{new}: {shared_store.parent} refused this user" in result.stdout, result.stdout


def test_exporting_into_a_directory_this_user_may_not_write_names_that_directory(shared_store: Path) -> None:
    parent = shared_store.parent
    for argv in (
        ["export", str(shared_store), "chat", f"{parent}/"],
        ["export", str(shared_store), "chat", str(parent / "chat.jsonl")],
        ["export", "--html", str(shared_store), "chat", f"{parent}/"],
        ["export", str(shared_store), "chat", f"{parent}/new/"],  # a directory it would have to create there
    ):
        result = _as_nobody("-m", "sessiondb", *argv)
        assert result.returncode == 1, result.stderr
        (line,) = result.stderr.splitlines()
        assert line.startswith(f"sessiondb: error: {parent}: Permission denied ("), line
        assert ".tmp-" not in line, line  # no internal temp file named


def test_repair_as_another_user_says_so_in_the_permission_errors_words(shared_store: Path) -> None:
    result = _as_nobody("-m", "sessiondb", "repair", str(shared_store))
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"sessiondb: error: cannot repair store {shared_store}: {shared_store / 'LOCK'} refused"), (
        line
    )
    assert "run sessiondb repair as the store's owner" in line


@pytest.mark.parametrize(
    "command",
    [["title", "chat", "x"], ["tag", "chat", "t"], ["pin", "chat"], ["compact"], ["import", "FILE"]],
)
def test_cli_writing_commands_say_so_in_one_line(shared_store: Path, command: list[str]) -> None:
    jsonl = shared_store.parent / "bad.jsonl"
    jsonl.write_text("{}\n")
    jsonl.chmod(0o644)
    argv = [str(jsonl) if part == "FILE" else part for part in command]
    result = _as_nobody("-m", "sessiondb", argv[0], str(shared_store), *argv[1:])
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"sessiondb: error: cannot change store {shared_store} as this user: ")
    assert "permission denied" in lines[0] and "read commands" in lines[0]
    assert "LOCK" in lines[0]
