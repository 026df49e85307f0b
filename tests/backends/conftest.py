"""Fixtures for backend tests: a PostgreSQL DSN (or a skip saying how to get one) and a fresh schema per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

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
