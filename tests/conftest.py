"""Shared test configuration: anyio on asyncio, the slow marker, store fixtures."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import sessiondb


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with `make test-slow` (pytest --run-slow)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[sessiondb.Store]:
    async with sessiondb.open_store(tmp_path / "store") as opened:
        yield opened


POSTGRES_DSN_VARIABLE = "SESSIONDB_TEST_POSTGRES_DSN"


def _drop_postgres_schema(dsn: str, schema: str) -> None:
    """Drop a test's schema, from a thread with a loop of its own (the test's loop may still be running)."""
    import asyncio
    import threading

    async def drop() -> None:
        import asyncpg

        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f"drop schema if exists {schema} cascade")
        finally:
            await conn.close()

    thread = threading.Thread(target=asyncio.run, args=(drop(),))
    thread.start()
    thread.join()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL store URL with a schema no other test uses (dropped afterwards), or a skip saying how to run."""
    dsn = os.environ.get(POSTGRES_DSN_VARIABLE)
    if not dsn:
        pytest.skip(f"set {POSTGRES_DSN_VARIABLE}=postgresql://postgres@127.0.0.1:5432/test to run PostgreSQL tests")
    schema = f"sdbtest_{uuid.uuid4().hex[:12]}"
    yield f"{dsn}{'&' if '?' in dsn else '?'}schema={schema}"
    _drop_postgres_schema(dsn, schema)


@pytest.fixture(params=["directory", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """What ``open_store`` takes, for each backend: a store directory, or a PostgreSQL URL with a fresh schema."""
    if request.param == "directory":
        return str(tmp_path / "store")
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake home directory, and a separate current directory where no literal ``~`` may appear."""
    home = tmp_path / "home"
    home.mkdir()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    return home
