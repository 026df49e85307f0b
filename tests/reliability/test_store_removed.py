"""A store directory (or its files) deleted under a running process: the error says so, not "retention"."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import sessiondb
from sessiondb import Message, StoreBrokenError

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("removed", ["directory", "files"])
async def test_removed_store_files_are_named_as_removed(tmp_path: Path, removed: str) -> None:
    path = tmp_path / "store"
    async with sessiondb.open_store(path) as store:
        await store.create_session(session_id="a")
        await store.append("a", Message.user("x"))
        if removed == "directory":
            shutil.rmtree(path)
        else:
            for child in path.iterdir():
                child.unlink()
        with pytest.raises(StoreBrokenError) as caught:
            await store.append("a", Message.user("y"))
        message = str(caught.value)
        expected = f"store directory {path} was removed" if removed == "directory" else f"files of store {path}"
        assert expected in message
        assert "removed while this process had" in message
        assert "retention removed it" not in message and "rolled past" not in message
        with pytest.raises(StoreBrokenError, match="removed while this process had"):
            await store.append("a", Message.user("z"))


async def test_a_read_first_says_the_same(tmp_path: Path) -> None:
    path = tmp_path / "store"
    async with sessiondb.open_store(path) as store:
        await store.create_session(session_id="a")
        shutil.rmtree(path)
        with pytest.raises(StoreBrokenError, match=f"store directory {path} was removed"):
            await store.list_sessions()
