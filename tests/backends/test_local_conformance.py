"""The conformance suite against the local backend, on disk and in memory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sessiondb import LocalBackend
from sessiondb._backends._memory import MemoryFileSystem
from sessiondb.testing import BackendConformance, BackendFactory


class TestLocalConformance(BackendConformance):
    @pytest.fixture
    def backend_factory(self, tmp_path: Path) -> BackendFactory:
        return lambda **options: LocalBackend(tmp_path / "store", **options)


class TestMemoryConformance(BackendConformance):
    @pytest.fixture
    def backend_factory(self) -> BackendFactory:
        file_system = MemoryFileSystem()

        def factory(**options: Any) -> LocalBackend:
            return LocalBackend("/:memory:", file_system=file_system, **options)

        return factory
