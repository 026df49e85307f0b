"""A backend instance serves one store, once: a second open_store over it is refused at start, clearly, on every
backend alike, and opens nothing (no connection, no lock) rather than failing every call afterwards."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import sessiondb
from sessiondb import Message

pytestmark = pytest.mark.anyio


async def _reused_is_refused(make: Callable[[], sessiondb.Backend]) -> sessiondb.Backend:
    backend = make()
    async with sessiondb.open_store(backend) as store:
        await store.create_session(session_id="a")
        await store.append("a", Message.user("hi"))
    for _ in range(2):  # after a close; the refusal changes nothing, so the same again
        with pytest.raises(sessiondb.InvalidInputError, match=r"has served, another store: .*Make a new one"):
            async with sessiondb.open_store(backend):
                pass
    # While it serves a store, a second store over it is refused too (and the first goes on).
    fresh = make()
    async with sessiondb.open_store(fresh) as store:
        with pytest.raises(sessiondb.InvalidInputError, match="a backend instance opens once"):
            await sessiondb.open_store(fresh).start()
        assert await store.append("a", Message.user("still here")) == 3
    # A new instance over the same place opens it, with everything written.
    async with sessiondb.open_store(make()) as store:
        assert (await store.session_info("a")).version == 3
    return backend


async def test_a_directory_backend_is_not_opened_twice(tmp_path: Path) -> None:
    await _reused_is_refused(lambda: sessiondb.LocalBackend(tmp_path / "store"))


async def test_a_store_whose_open_failed_may_be_started_again(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    backend = sessiondb.LocalBackend(tmp_path / "file" / "store")
    store = sessiondb.open_store(backend)
    for _ in range(2):  # the failed open left nothing open or claimed: the same error, not "reused"
        with pytest.raises(sessiondb.InvalidInputError, match="is a file"):
            await store.start()


@pytest.mark.postgres
async def test_a_postgres_backend_is_not_opened_twice_and_connects_nothing(pg_dsn: str, pg_schema: str) -> None:
    from sessiondb._backends.postgres import PostgresBackend

    backend = await _reused_is_refused(lambda: PostgresBackend(pg_dsn, schema=pg_schema))
    # The refusals came before open(): no writer, pool or listener connection was made (none to leak).
    assert backend._writer is None and backend._pool is None and backend._listener is None  # type: ignore[attr-defined]
