"""Fixtures for the search tests: a PostgreSQL DSN, or a skip saying how to get one."""

from __future__ import annotations

import os

import pytest

DSN_VARIABLE = "SESSIONDB_TEST_POSTGRES_DSN"


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    dsn = os.environ.get(DSN_VARIABLE)
    if not dsn:
        pytest.skip(f"set {DSN_VARIABLE}=postgresql://postgres@127.0.0.1:5432/test to run PostgreSQL tests")
    return dsn
