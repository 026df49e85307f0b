"""Fixtures for backend tests: a PostgreSQL DSN (or a skip saying how to get one) and a fresh schema per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

DSN_VARIABLE = "SESSIONDB_TEST_POSTGRES_DSN"
HOW_TO_RUN = (
    f"PostgreSQL tests need a server: set {DSN_VARIABLE}=postgresql://postgres@127.0.0.1:5432/test "
    "(.ci/run sets it and makes these tests mandatory)"
)


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    dsn = os.environ.get(DSN_VARIABLE)
    if not dsn:
        pytest.skip(HOW_TO_RUN)
    return dsn


@pytest.fixture
async def pg_schema(pg_dsn: str) -> AsyncIterator[str]:
    """A schema name no other test uses; dropped afterwards."""
    import asyncpg

    schema = f"sdbtest_{uuid.uuid4().hex[:12]}"
    yield schema
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(f"drop schema if exists {schema} cascade")
    finally:
        await conn.close()


class StoreOpener(NamedTuple):
    """How a test opens its store, whether reopening finds the same data, and the directory (a directory store's)."""

    open: Callable[[], Any]
    durable: bool
    directory: Path | None


@pytest.fixture(params=["directory", "memory", "postgres"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreOpener]:
    """Each backend, with small segments and eager compaction passes (snapshots, retention, the index checkpoint)."""
    import sessiondb
    from sessiondb import CompactionSettings
    from sessiondb._backends.postgres import PostgresBackend

    settings = CompactionSettings(background=False, keep_segments=1, min_tail_events=1, min_tail_bytes=1)
    if request.param == "directory":
        directory = tmp_path / "s"
        yield StoreOpener(
            lambda: sessiondb.open_store(directory, segment_bytes=4096, compaction=settings), True, directory
        )
    elif request.param == "memory":
        yield StoreOpener(lambda: sessiondb.open_store(":memory:"), False, None)
    else:
        dsn = request.getfixturevalue("pg_dsn")
        schema = request.getfixturevalue("pg_schema")
        yield StoreOpener(
            lambda: sessiondb.open_store(PostgresBackend(dsn, schema=schema), compaction=settings), True, None
        )
