"""Fixtures for integration tests: a store that can be closed and opened again, on disk or in memory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import sessiondb
from sessiondb._backends._memory import MemoryFileSystem

Opener = Callable[..., sessiondb.Store]


@pytest.fixture(params=["directory", "memory"])
def open_again(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    """``open_again(**options)`` opens the same store each time it is called."""
    if request.param == "directory":
        return lambda **options: sessiondb.open_store(tmp_path / "store", **options)
    file_system = MemoryFileSystem()

    def opener(**options: Any) -> sessiondb.Store:
        backend = sessiondb.LocalBackend("/:memory:", file_system=file_system)
        return sessiondb.open_store(backend, **options)

    return opener
