"""The PostgreSQL backend: sessions shared by many processes and hosts through one database.

``PostgresBackend`` (``_backend.py``) drives one ``append_batch`` call per batch;
``_batch.py`` builds its arrays, ``_schema.py`` holds the schema and its
migrations, ``_snapshots.py`` the snapshot table. asyncpg is imported only when
the backend opens.
"""

from ._backend import PostgresBackend, redact_dsn

__all__ = ["PostgresBackend", "redact_dsn"]
