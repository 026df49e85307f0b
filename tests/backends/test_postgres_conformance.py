"""The conformance suite against a real PostgreSQL (SESSIONDB_TEST_POSTGRES_DSN), one fresh schema per test."""

from __future__ import annotations

from typing import Any

import pytest

from sessiondb._backends.postgres import PostgresBackend
from sessiondb.testing import BackendConformance, BackendFactory

pytestmark = pytest.mark.postgres


class TestPostgresConformance(BackendConformance):
    @pytest.fixture
    def backend_factory(self, pg_dsn: str, pg_schema: str) -> BackendFactory:
        def factory(**options: Any) -> PostgresBackend:
            return PostgresBackend(pg_dsn, schema=pg_schema, **options)

        return factory
