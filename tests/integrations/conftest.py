"""Fixtures for the framework integrations: a store factory over each backend, closed after the test."""

from __future__ import annotations

import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from tests.backends.conftest import pg_dsn, pg_schema  # noqa: F401  (fixtures used by the tests here)

import sessiondb
from sessiondb._backends.postgres import PostgresBackend

StoreFactory = Callable[[], Awaitable[sessiondb.Store]]
BACKENDS = ["directory", "memory", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
async def open_fresh_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreFactory]:
    """A factory of fresh, open stores of one backend kind (each its own directory or schema)."""
    kind = request.param
    dsn = request.getfixturevalue("pg_dsn") if kind == "postgres" else None
    counter = itertools.count()
    schemas: list[str] = []
    async with contextlib.AsyncExitStack() as stack:

        async def fresh() -> sessiondb.Store:
            if kind == "directory":
                target: object = tmp_path / f"store-{next(counter)}"
            elif kind == "memory":
                target = ":memory:"
            else:
                assert dsn is not None
                schemas.append(f"sdbtest_{uuid.uuid4().hex[:12]}")
                target = PostgresBackend(dsn, schema=schemas[-1])
            return await stack.enter_async_context(sessiondb.open_store(target))  # type: ignore[arg-type]

        yield fresh
    if schemas:
        import asyncpg

        assert dsn is not None
        conn = await asyncpg.connect(dsn)
        try:
            for schema in schemas:
                await conn.execute(f"drop schema if exists {schema} cascade")
        finally:
            await conn.close()
