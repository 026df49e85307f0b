"""Fixtures for the multi-process tests: the store each test runs on, and child processes that are always killed.

Every test runs on a store directory (several writer processes on one
directory, docs/multiprocess.md) and on PostgreSQL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backends.conftest import pg_dsn, pg_schema

__all__ = ["children", "pg_dsn", "pg_schema", "store_target"]

CHILD = Path(__file__).with_name("_child.py")


@pytest.fixture(
    params=[
        pytest.param("directory"),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ]
)
def store_target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """What every process passes to ``open_store``: a directory, or a PostgreSQL URL naming a fresh schema."""
    if request.param == "directory":
        return str(tmp_path / "store")
    dsn: str = request.getfixturevalue("pg_dsn")
    schema: str = request.getfixturevalue("pg_schema")
    separator = "&" if "?" in dsn else "?"
    return f"{dsn}{separator}schema={schema}"


def is_postgres(target: str) -> bool:
    return target.startswith(("postgresql://", "postgres://"))


class Children:
    """Child processes running ``_child.py``; every one is SIGKILLed and reaped when the test ends."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen[str]] = []

    def start(self, *args: str, pass_fds: tuple[int, ...] = (), **options: Any) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, str(CHILD), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            pass_fds=pass_fds,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            **options,
        )
        self.processes.append(process)
        return process

    def kill_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
            process.wait()
            for stream in (process.stdin, process.stdout, process.stderr):
                if stream is not None:
                    stream.close()


@pytest.fixture
def children() -> Iterator[Children]:
    spawned = Children()
    try:
        yield spawned
    finally:
        spawned.kill_all()
