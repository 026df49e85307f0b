"""PostgreSQL-specific behaviour: schema migration, many processes, connection loss, the late-commit rule, wake-ups."""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import uuid
from pathlib import Path

import asyncpg
import msgspec
import pytest

import sessiondb
from sessiondb import BackendUnavailableError, ConflictError, Message, SchemaVersionError
from sessiondb._backends._base import AppendRequest
from sessiondb._backends.postgres import PostgresBackend
from sessiondb._backends.postgres._batch import build_batch
from sessiondb._backends.postgres._schema import MIGRATIONS, POSITION_SHIFT, SCHEMA_VERSION

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

WORKER = Path(__file__).with_name("_pg_worker.py")


def _backend(dsn: str, schema: str, **options: object) -> PostgresBackend:
    return PostgresBackend(dsn, schema=schema, **options)  # type: ignore[arg-type]


# ---------------------------------------------------------------- schema


async def test_schema_is_created_and_an_older_one_is_upgraded(pg_dsn: str, pg_schema: str) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        # A store as version 1 left it, with a session in it.
        await conn.execute(f"create schema {pg_schema}")
        await conn.execute(f"create table {pg_schema}.schema_version (version integer not null)")
        for statement in MIGRATIONS[1](pg_schema):
            await conn.execute(statement)
        await conn.execute(f"insert into {pg_schema}.schema_version values (1)")
        await conn.execute(
            f"insert into {pg_schema}.sessions (session_id, version, created_at_ms, model) values ('old', 1, 5, 'm')"
        )
        await conn.execute(
            f"insert into {pg_schema}.events (position, session_id, version, timestamp_ms, payload) "
            "values (1, 'old', 1, 5, $1)",
            b'{"type":"session_started","created_at_ms":5,"model":"m"}',
        )
        async with sessiondb.open_store(_backend(pg_dsn, pg_schema)) as store:
            assert await conn.fetchval(f"select version from {pg_schema}.schema_version") == SCHEMA_VERSION
            assert await store.append("old", Message.user("after upgrade")) == 2
            assert [m.text for m in (await store.load("old")).messages] == ["after upgrade"]
            assert (await store.session_info("old")).model == "m"
    finally:
        await conn.close()


async def _schema_exists(dsn: str, schema: str) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        return bool(await conn.fetchval("select exists (select 1 from pg_namespace where nspname = $1)", schema))
    finally:
        await conn.close()


async def test_a_read_only_open_never_creates_the_schema(pg_dsn: str, pg_schema: str) -> None:
    url = f"{pg_dsn}{'&' if '?' in pg_dsn else '?'}schema={pg_schema}"
    with pytest.raises(
        sessiondb.SessionDBError, match=f"no sessiondb store in schema {pg_schema} at .*opening it for writing"
    ):
        async with sessiondb.open_store(url, read_only=True):
            pass
    assert not await _schema_exists(pg_dsn, pg_schema)
    async with sessiondb.open_store(url) as store:  # writing creates it
        await store.create_session(session_id="s")
    async with sessiondb.open_store(url, read_only=True) as store:
        assert [info.session_id for info in await store.list_sessions()] == ["s"]
        with pytest.raises(sessiondb.InvalidInputError, match=r"opened read-only.*session 's'"):
            await store.append("s", Message.user("no"))
        assert (await store.session_info("s")).version == 1
    # An older schema is not migrated by a reader either.
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(f"update {pg_schema}.schema_version set version = 1")
    finally:
        await conn.close()
    with pytest.raises(SchemaVersionError, match="open it for writing once to migrate"):
        async with sessiondb.open_store(url, read_only=True):
            pass


async def test_a_newer_schema_is_refused(pg_dsn: str, pg_schema: str) -> None:
    async with sessiondb.open_store(_backend(pg_dsn, pg_schema)):
        pass
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(f"update {pg_schema}.schema_version set version = {SCHEMA_VERSION + 1}")
    finally:
        await conn.close()
    with pytest.raises(SchemaVersionError, match="upgrade sessiondb"):
        async with sessiondb.open_store(_backend(pg_dsn, pg_schema)):
            pass


async def test_unreachable_server_is_a_clear_retryable_error(pg_schema: str) -> None:
    with pytest.raises(BackendUnavailableError, match="cannot reach PostgreSQL"):
        async with sessiondb.open_store(
            PostgresBackend("postgresql://postgres@127.0.0.1:1/test", schema=pg_schema, connect_timeout=2)
        ):
            pass


async def test_open_store_routes_a_url_with_a_schema_parameter(pg_dsn: str, pg_schema: str) -> None:
    separator = "&" if "?" in pg_dsn else "?"
    async with sessiondb.open_store(f"{pg_dsn}{separator}schema={pg_schema}") as store:
        assert isinstance(store.backend, PostgresBackend) and store.backend.schema == pg_schema
        sid = await store.create_session()
        assert await store.append(sid, Message.user("x")) == 2


# ---------------------------------------------------------------- one transaction per batch


async def test_a_batch_is_one_transaction(pg_dsn: str, pg_schema: str) -> None:
    async with sessiondb.open_store(_backend(pg_dsn, pg_schema)) as store:
        sids = [await store.create_session() for _ in range(200)]
        before = store.backend.statistics()["transactions"]
        await asyncio.gather(*(store.append(sid, Message.user("x")) for sid in sids))
        transactions = store.backend.statistics()["transactions"] - before
        events = [e for e in await store.read_all(limit=10_000) if e.version == 2]
        assert len(events) == 200
        # A position carries its transaction's id in its high bits.
        assert len({e.position >> POSITION_SHIFT for e in events}) == transactions
        assert transactions <= 3, "200 concurrent appends should take one or two batches"


# ---------------------------------------------------------------- read_all never skips a late commit


async def test_read_all_waits_for_an_older_transaction_still_in_progress(pg_dsn: str, pg_schema: str) -> None:
    async with sessiondb.open_store(_backend(pg_dsn, pg_schema)) as store:
        sid = await store.create_session()
        start = (await store.read_all())[-1].position
        conn = await asyncpg.connect(pg_dsn)
        try:
            # An open transaction that has an xid: older than the appends below.
            transaction = conn.transaction()
            await transaction.start()
            await conn.fetchval("select pg_current_xact_id()")
            await store.append(sid, Message.user("committed while an older transaction is open"))
            assert await store.read_all(after=start) == []
            assert await store.backend.wait_for_new_events(start, 0.2) == start  # type: ignore[attr-defined]
            await transaction.rollback()
        finally:
            await conn.close()
        newest = await store.backend.wait_for_new_events(start, 5)  # type: ignore[attr-defined]
        assert [(e.version, e.position) for e in await store.read_all(after=start)] == [(2, newest)]


async def test_late_committing_batch_gets_no_position_below_what_readers_saw(pg_dsn: str, pg_schema: str) -> None:
    """Two stores; one batch blocks on a session lock mid-commit while the other commits and is read."""
    async with (
        sessiondb.open_store(_backend(pg_dsn, pg_schema)) as first,
        sessiondb.open_store(_backend(pg_dsn, pg_schema)) as second,
    ):
        a = await first.create_session(session_id="a")
        b = await first.create_session(session_id="b")
        seen = await first.read_all()
        after = seen[-1].position
        blocker = await asyncpg.connect(pg_dsn)
        try:
            lock_class = first.backend._lock_class  # type: ignore[attr-defined]
            transaction = blocker.transaction()
            await transaction.start()
            await blocker.execute("select pg_advisory_xact_lock($1, hashtext($2))", lock_class, a)
            slow = asyncio.ensure_future(second.append(a, Message.user("slow")))
            await asyncio.sleep(0.2)
            await first.append(b, Message.user("fast"))
            fast = await first.read_all(after=after)
            assert [(e.session_id, e.version) for e in fast] == [("b", 2)]
            await transaction.commit()
            await slow
        finally:
            await blocker.close()
        late = await first.read_all(after=fast[-1].position)
        assert [(e.session_id, e.version) for e in late] == [("a", 2)]
        assert [(e.session_id, e.version) for e in await first.read_all(after=after)] == [("b", 2), ("a", 2)]
        del b


# ---------------------------------------------------------------- wake-ups


async def test_notify_wakes_a_waiter_in_another_process(pg_dsn: str, pg_schema: str) -> None:
    async with (
        sessiondb.open_store(_backend(pg_dsn, pg_schema, poll_interval=30)) as reader,
        sessiondb.open_store(_backend(pg_dsn, pg_schema)) as writer,
    ):
        sid = await writer.create_session()
        after = await reader.backend.wait_for_new_events(0, 30)  # type: ignore[attr-defined]
        assert after == (await reader.read_all())[-1].position
        waiting = asyncio.ensure_future(reader.backend.wait_for_new_events(after, 10))  # type: ignore[attr-defined]
        await asyncio.sleep(0.2)
        assert not waiting.done()
        loop = asyncio.get_running_loop()
        started = loop.time()
        await writer.append(sid, Message.user("wake up"))
        assert await waiting == (await reader.read_all(after=after))[-1].position
        assert loop.time() - started < 5, "woken by NOTIFY, not by the 30 s poll"


async def test_no_notify_is_sent_until_some_process_listens(pg_dsn: str, pg_schema: str) -> None:
    async with sessiondb.open_store(_backend(pg_dsn, pg_schema)) as writer:
        sid = await writer.create_session()
        for n in range(3):
            await writer.append(sid, Message.user(f"nobody listens {n}"))
        assert writer.backend.statistics()["notifies"] == 0  # type: ignore[attr-defined]
        async with sessiondb.open_store(_backend(pg_dsn, pg_schema, poll_interval=30)) as reader:
            after = await reader.backend.wait_for_new_events(0, 30)  # type: ignore[attr-defined]
            waiting = asyncio.ensure_future(reader.backend.wait_for_new_events(after, 10))  # type: ignore[attr-defined]
            loop = asyncio.get_running_loop()
            started = loop.time()
            await writer.append(sid, Message.user("someone listens now"))
            notifying = writer.backend._notify_task  # type: ignore[attr-defined]
            assert notifying is not None  # started before the append was acknowledged
            await notifying
            assert writer.backend.statistics()["notifies"] >= 1  # type: ignore[attr-defined]
            assert await waiting > after
            assert loop.time() - started < 5, "woken by NOTIFY, not by the 30 s poll"


async def test_a_listener_starting_during_a_commit_without_notify_still_sees_it(pg_dsn: str, pg_schema: str) -> None:
    """A batch that found nobody listening holds the listener lock until it commits; a new listener waits for it."""
    async with (
        sessiondb.open_store(_backend(pg_dsn, pg_schema)) as writer,
        sessiondb.open_store(_backend(pg_dsn, pg_schema, poll_interval=1)) as reader,
    ):
        sid = await writer.create_session()
        backend: PostgresBackend = writer.backend  # type: ignore[assignment]
        after = backend.last_position  # the create's (read_all may not show it yet: docs/postgres.md)
        message = Message.user("unannounced")
        arrays = build_batch([AppendRequest(sid, (message,), timestamp_ms=1)], 1 << 20, msgspec.json.encode)
        conn = await asyncpg.connect(pg_dsn)
        try:
            transaction = conn.transaction()
            await transaction.start()
            row = await conn.fetchrow(backend._append_sql, backend._lock_class, uuid.uuid4(), *arrays.arguments())
            assert row["listened"] is False  # nobody listens: this commit will send no NOTIFY
            waiting = asyncio.ensure_future(reader.backend.wait_for_new_events(after, 10))  # type: ignore[attr-defined]
            await asyncio.sleep(0.2)
            assert not waiting.done()  # the listener waits for the lock the batch holds
            await transaction.commit()
        finally:
            await conn.close()
        assert await waiting == row["base"] + 1
        assert [e.event for e in await reader.read_all(after=after)] == [message]


async def test_polling_finds_events_without_notify(pg_dsn: str, pg_schema: str) -> None:
    async with (
        sessiondb.open_store(_backend(pg_dsn, pg_schema, poll_interval=0.05)) as reader,
        sessiondb.open_store(_backend(pg_dsn, pg_schema, notify=False)) as writer,
    ):
        sid = await writer.create_session()
        # read_all shows a commit once no older transaction anywhere on the server is open
        # (docs/postgres.md): wait for that, as a subscriber would, before taking the position.
        after = await reader.backend.wait_for_new_events(0, 30)  # type: ignore[attr-defined]
        assert after == (await reader.read_all())[-1].position
        waiting = asyncio.ensure_future(reader.backend.wait_for_new_events(after, 10))  # type: ignore[attr-defined]
        await asyncio.sleep(0.1)
        await writer.append(sid, Message.user("found by polling"))
        assert await waiting > after


# ---------------------------------------------------------------- many processes


async def test_four_processes_share_one_hundred_sessions(pg_dsn: str, pg_schema: str) -> None:
    sessions, per_worker = 100, 320
    async with sessiondb.open_store(_backend(pg_dsn, pg_schema)) as store:
        for i in range(sessions):
            await store.create_session(session_id=f"shared-{i}")
        cursor = (await store.read_all(limit=100_000))[-1].position
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        workers = [
            await asyncio.create_subprocess_exec(
                sys.executable, str(WORKER), pg_dsn, pg_schema, str(w), str(sessions), str(per_worker), str(w),
                stdout=asyncio.subprocess.PIPE, env=env,
            )
            for w in range(4)
        ]  # fmt: skip
        followed: list[sessiondb.RecordedEvent] = []
        outputs = asyncio.gather(*(worker.communicate() for worker in workers))
        while not outputs.done():
            await store.backend.wait_for_new_events(cursor, 0.5)  # type: ignore[attr-defined]
            page = await store.read_all(after=cursor, limit=1_000)
            if page:
                followed += page
                cursor = page[-1].position
        results = await outputs
        assert [worker.returncode for worker in workers] == [0, 0, 0, 0]
        while page := await store.read_all(after=cursor, limit=1_000):
            followed += page
            cursor = page[-1].position

        acknowledged = [json.loads(line) for out, _ in results for line in out.decode().splitlines()]
        assert len(acknowledged) == 4 * per_worker
        stored: dict[str, list[sessiondb.RecordedEvent]] = {}
        for i in range(sessions):
            sid = f"shared-{i}"
            events = await store.backend.read_session(sid, 1, None)
            assert [e.version for e in events] == list(range(2, len(events) + 2)), f"{sid} has gaps"
            stored[sid] = events
        by_id = {e.event_id: (e.session_id, e.version) for events in stored.values() for e in events}
        assert len(by_id) == sum(len(events) for events in stored.values()), "an event id was stored twice"
        assert {tuple(ack[:2]): ack[2] for ack in acknowledged} == {v: k for k, v in by_id.items()}
        assert set(by_id) == {ack[2] for ack in acknowledged}, "stored something nobody acknowledged"

        positions = [e.position for e in followed]
        assert positions == sorted(positions) and len(set(positions)) == len(positions)
        assert sorted((e.session_id, e.version) for e in followed) == sorted(by_id.values())


# ---------------------------------------------------------------- connection loss


async def _writer_pid(store: sessiondb.Store) -> int:
    identity = store.backend._writer_identity  # type: ignore[attr-defined]
    assert identity is not None
    return int(identity[0])


async def test_connection_killed_while_a_batch_waits_inside_the_transaction(pg_dsn: str, pg_schema: str) -> None:
    async with sessiondb.open_store(_backend(pg_dsn, pg_schema)) as store:
        sids = [await store.create_session() for _ in range(20)]
        admin = await asyncpg.connect(pg_dsn)
        try:
            lock_class = store.backend._lock_class  # type: ignore[attr-defined]
            transaction = admin.transaction()
            await transaction.start()
            await admin.execute("select pg_advisory_xact_lock($1, hashtext($2))", lock_class, sids[0])
            pid = await _writer_pid(store)
            appends = asyncio.gather(
                *(store.append(sid, Message.user("during"), event_ids=[f"{sid}-d"]) for sid in sids),
                return_exceptions=True,
            )
            for _ in range(200):  # until the batch is blocked inside append_batch
                waiting = await admin.fetchval(
                    "select wait_event_type = 'Lock' from pg_stat_activity where pid = $1", pid
                )
                if waiting:
                    break
                await asyncio.sleep(0.01)
            assert waiting
            killer = await asyncpg.connect(pg_dsn)
            await killer.execute("select pg_terminate_backend($1)", pid)
            await killer.close()
            await transaction.commit()
            results = await appends
        finally:
            await admin.close()
        # The batch was certainly not committed, so the backend ran it again on a new connection.
        assert results == [2] * len(sids)
        assert store.backend.statistics()["connection_losses"] >= 1
        assert await _writer_pid(store) != pid
        for sid in sids:
            assert [e.event_id for e in await store.backend.read_session(sid, 0, None)] == [None, f"{sid}-d"]


async def test_connections_killed_at_random_lose_nothing_acknowledged_and_write_nothing_twice(
    pg_dsn: str, pg_schema: str
) -> None:
    rng = random.Random(8)
    async with sessiondb.open_store(_backend(pg_dsn, pg_schema)) as store:
        sids = [await store.create_session() for _ in range(50)]
        acknowledged: dict[str, int] = {}
        unavailable = 0

        async def appender(sid: str) -> None:
            nonlocal unavailable
            for n in range(40):
                event_id = f"{sid}-{n}"
                while True:
                    try:
                        acknowledged[event_id] = await store.append(sid, Message.user(event_id), event_ids=[event_id])
                        break
                    except BackendUnavailableError:
                        unavailable += 1  # retry with the same id: a retry that was written is recognised
                        await asyncio.sleep(0.01)

        async def killer() -> None:
            conn = await asyncpg.connect(pg_dsn)
            try:
                for _ in range(6):
                    await asyncio.sleep(rng.uniform(0.02, 0.15))
                    await conn.execute("select pg_terminate_backend($1)", await _writer_pid(store))
            finally:
                await conn.close()

        await asyncio.gather(killer(), *(appender(sid) for sid in sids))
        assert store.backend.statistics()["connection_losses"] >= 1
        for sid in sids:
            events = await store.backend.read_session(sid, 1, None)
            assert [e.version for e in events] == list(range(2, 42)), "gap or duplicate"
            assert sorted(e.event_id for e in events) == sorted(f"{sid}-{n}" for n in range(40))
            for e in events:
                assert acknowledged[e.event_id] == e.version  # type: ignore[index]
        del unavailable


async def test_stale_append_conflicts_alone_across_two_stores(pg_dsn: str, pg_schema: str) -> None:
    async with (
        sessiondb.open_store(_backend(pg_dsn, pg_schema)) as one,
        sessiondb.open_store(_backend(pg_dsn, pg_schema)) as two,
    ):
        sid = await one.create_session()
        other = await one.create_session()
        assert await two.append(sid, Message.user("two wins"), expected_version=1) == 2
        results = await asyncio.gather(
            one.append(sid, Message.user("stale"), expected_version=1),
            one.append(other, Message.user("fine"), expected_version=1),
            return_exceptions=True,
        )
        assert isinstance(results[0], ConflictError) and results[0].actual_version == 2
        assert results[1] == 2


async def test_commit_whose_reply_is_lost_is_acknowledged_once(pg_dsn: str, pg_schema: str) -> None:
    from urllib.parse import urlsplit

    from ._proxy import CuttingProxy

    parts = urlsplit(pg_dsn)
    proxy = CuttingProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    port = await proxy.start()
    proxied = parts._replace(netloc=f"{parts.username or 'postgres'}@127.0.0.1:{port}").geturl()
    try:
        async with sessiondb.open_store(_backend(proxied, pg_schema, notify=False)) as store:
            sids = [await store.create_session() for _ in range(10)]
            proxy.arm()
            # No event ids: only the stored batch outcome can tell these were written.
            versions = await asyncio.gather(*(store.append(sid, Message.user("once")) for sid in sids))
            assert proxy.cuts == 1
            assert versions == [2] * 10
            statistics = store.backend.statistics()
            assert statistics["resolved_committed"] == 1 and statistics["resubmitted"] == 0
            for sid in sids:
                assert [e.version for e in await store.backend.read_session(sid, 0, None)] == [1, 2]
    finally:
        await proxy.aclose()


async def test_append_after_a_delete_in_the_same_batch_is_refused(pg_dsn: str, pg_schema: str) -> None:
    from sessiondb import SessionDeleted, SessionNotFoundError
    from sessiondb._backends._base import AppendRequest

    backend = _backend(pg_dsn, pg_schema)
    await backend.open()
    try:
        create = AppendRequest("d", (sessiondb.SessionStarted(1),), timestamp_ms=1, creates=True)
        await backend.commit([create])
        delete = AppendRequest("d", (SessionDeleted(),), timestamp_ms=2)
        late = AppendRequest("d", (Message.user("too late"),), timestamp_ms=3)
        await backend.commit([delete, late])
        assert delete.error is None and delete.version == 2
        assert isinstance(late.error, SessionNotFoundError)
        info = await backend.info("d")
        assert info is not None and info.deleted and info.version == 2
    finally:
        await backend.aclose()


# ---------------------------------------------------------------- snapshots and compaction


async def test_snapshots_round_trip_and_a_damaged_one_is_not_trusted(pg_dsn: str, pg_schema: str) -> None:
    backend = _backend(pg_dsn, pg_schema)
    await backend.open()
    try:
        assert backend.supports_snapshots
        assert await backend.write_snapshot("s", 5, b"state at 5")
        assert await backend.read_snapshot("s", 10) == (5, b"state at 5")
        assert await backend.read_snapshot("s", 4) is None
        assert await backend.write_snapshot("s", 3, b"older")  # never replaces a newer one
        assert await backend.read_snapshot("s", 10) == (5, b"state at 5")
        assert backend.snapshot_versions() == {"s": (5, len(b"state at 5"))}
    finally:
        await backend.aclose()
    reopened = _backend(pg_dsn, pg_schema)
    await reopened.open()
    try:
        assert reopened.snapshot_versions() == {"s": (5, len(b"state at 5"))}
        conn = await asyncpg.connect(pg_dsn)
        try:
            await conn.execute(f"update {pg_schema}.snapshots set data = 'state at 6'")
        finally:
            await conn.close()
        assert await reopened.read_snapshot("s", 10) is None
        assert reopened.statistics()["snapshots_damaged"] == 1
    finally:
        await reopened.aclose()


async def test_compaction_frees_deleted_sessions_but_not_what_a_fork_reads(pg_dsn: str, pg_schema: str) -> None:
    async with sessiondb.open_store(_backend(pg_dsn, pg_schema)) as store:
        backend = store.backend
        lonely = await store.create_session()
        parent = await store.create_session()
        for sid in (lonely, parent):
            await store.append(sid, Message.user("x"), Message.user("y"))
        await backend.write_snapshot(lonely, 3, b"snap")
        child = await store.fork(parent)
        await store.delete_session(lonely)
        await store.delete_session(parent)
        counters = await backend.compact_storage(None)
        assert counters["events_deleted"] == 4 and counters["snapshots_deleted"] == 1
        assert await backend.read_session(lonely, 0, None) == []
        assert backend.snapshot_versions() == {}
        info = await backend.info(lonely)
        assert info is not None and info.deleted
        with pytest.raises(sessiondb.SessionExistsError):
            await store.create_session(session_id=lonely)
        # The deleted parent's history is still what its fork reads.
        assert [m.text for m in (await store.load(child)).messages] == ["x", "y"]
        assert (await backend.compact_storage(None))["events_deleted"] == 0
        conn = await asyncpg.connect(pg_dsn)
        try:
            outcomes = await conn.fetchval(f"select count(*) from {pg_schema}.batches")
            assert outcomes > 0
            await conn.execute(f"update {pg_schema}.batches set created_at = now() - interval '1 hour'")
            assert (await backend.compact_storage(None))["batch_outcomes_deleted"] == outcomes
            assert await conn.fetchval(f"select count(*) from {pg_schema}.batches") == 0
        finally:
            await conn.close()


async def test_subscribe_all_does_not_skip_another_writers_late_commit(pg_dsn: str, pg_schema: str) -> None:
    """Another writer's batch has its xid (so an older position) but commits only after this store's append.

    A subscriber of this store must still get the other writer's event, in position order.
    """
    import uuid

    import msgspec

    from sessiondb._backends._base import AppendRequest
    from sessiondb._backends.postgres._batch import build_batch

    async with sessiondb.open_store(_backend(pg_dsn, pg_schema)) as ours:
        if not hasattr(ours, "subscribe_all"):
            pytest.skip("Store.subscribe_all is not there yet")
        backend = ours.backend
        mine = await ours.create_session(session_id="mine")
        other = await ours.create_session(session_id="other")
        start = (await ours.read_all())[-1].position
        received: list[tuple[str, int, int]] = []

        async def follow() -> None:
            async for event in ours.subscribe_all(after=start):
                received.append((event.session_id, event.version, event.position))
                if len(received) == 2:
                    return

        follower = asyncio.ensure_future(follow())
        await asyncio.sleep(0.2)
        # The other writer: append_batch inside a transaction whose commit is late (a slow disk, say).
        late_writer = await asyncpg.connect(pg_dsn)
        try:
            arrays = build_batch(
                [AppendRequest(other, (Message.user("late"),), timestamp_ms=1)], 1 << 20, msgspec.json.encode
            )
            transaction = late_writer.transaction()
            await transaction.start()
            await late_writer.fetchrow(
                backend._append_sql,  # type: ignore[attr-defined]
                backend._lock_class,  # type: ignore[attr-defined]
                uuid.uuid4(),
                *arrays.arguments(),
            )
            await ours.append(mine, Message.user("early"))
            await asyncio.sleep(0.5)
            await transaction.commit()
        finally:
            await late_writer.close()
        await asyncio.wait_for(follower, 5)
        assert [r[:2] for r in received] == [("other", 2), ("mine", 2)]
        assert received[0][2] < received[1][2]


async def test_text_postgres_cannot_store_fails_that_append_only(pg_dsn: str, pg_schema: str) -> None:
    async with sessiondb.open_store(_backend(pg_dsn, pg_schema)) as store:
        sid = await store.create_session()
        results = await asyncio.gather(
            store.append(sid, Message.user("a"), event_ids=["nul\x00id"]),
            store.append(sid, Message.user("b"), event_ids=["surrogate\ud800"]),
            store.append(sid, Message.user("fine"), event_ids=["ok"]),
            store.create_session(model="m\x00"),
            store.append(sid, Message.user("late"), timestamp_ms=2**70),
            return_exceptions=True,
        )
        assert isinstance(results[4], sessiondb.InvalidInputError) and "timestamp_ms" in str(results[4])
        assert isinstance(results[0], sessiondb.InvalidInputError) and "NUL" in str(results[0])
        assert isinstance(results[1], sessiondb.InvalidInputError) and "surrogate" in str(results[1])
        assert results[2] == 2
        assert isinstance(results[3], sessiondb.InvalidInputError)
        assert not store.broken
        assert await store.append(sid, Message.user("after")) == 3


async def test_absurd_numbers_fail_or_clamp_without_breaking_the_batch(pg_dsn: str, pg_schema: str) -> None:
    async with sessiondb.open_store(_backend(pg_dsn, pg_schema)) as store:
        sid = await store.create_session()
        await store.append(sid, Message.user("a"), Message.user("b"))
        results = await asyncio.gather(
            store.append(sid, Message.user("x"), expected_version=2**40),
            store.append(sid, sessiondb.Compacted("all of it", removed_message_count=2**40)),
            return_exceptions=True,
        )
        assert isinstance(results[0], ConflictError) and results[0].expected_version == 2**40
        # More than the live context is refused, by append_batch under the session's lock (clamped to an
        # int4 on the way; tests/backends/test_postgres_differential.py also sends unflagged over-large
        # counts, which the backend clamps as it does for old logs).
        assert isinstance(results[1], sessiondb.InvalidInputError) and "has 2 live message(s)" in str(results[1])
        assert await store.append(sid, sessiondb.Compacted("all of it", removed_message_count=2)) == 4
        assert (await store.session_info(sid)).message_count == 1  # just the summary


async def test_a_batch_the_server_refuses_fails_its_appends_but_not_the_store(pg_dsn: str, pg_schema: str) -> None:
    async with sessiondb.open_store(_backend(pg_dsn, pg_schema)) as store:
        sid = await store.create_session()
        admin = await asyncpg.connect(pg_dsn)
        try:
            # Sabotage: every write to events now fails on the server.
            await admin.execute(f"alter table {pg_schema}.events add constraint sabotage check (version < 0) not valid")
            with pytest.raises(BackendUnavailableError, match="refused the batch"):
                await store.append(sid, Message.user("refused"))
            assert not store.broken
            await admin.execute(f"alter table {pg_schema}.events drop constraint sabotage")
        finally:
            await admin.close()
        assert await store.append(sid, Message.user("accepted")) == 2


async def test_the_compactor_snapshots_sessions_and_loads_use_them(pg_dsn: str, pg_schema: str) -> None:
    settings = sessiondb.CompactionSettings(background=False, min_tail_events=10)
    async with sessiondb.open_store(_backend(pg_dsn, pg_schema), compaction=settings) as store:
        busy = await store.create_session()
        quiet = await store.create_session()
        for i in range(30):
            await store.append(busy, Message.user(f"m{i}"))
        await store.append(quiet, Message.user("only one"))
        before = await store.load(busy)
        assert (await store.compact())["snapshots_written"] == 1
        assert store.backend.snapshot_versions()[busy][0] == 31
        assert quiet not in store.backend.snapshot_versions()
        assert (await store.compact())["snapshots_written"] == 0
        await store.append(busy, Message.user("after the snapshot"))
        after = await store.load(busy)
        assert after.messages[:-1] == before.messages and after.messages[-1].text == "after the snapshot"
        assert len((await store.load(busy, at_version=5)).messages) == 4  # time travel below the snapshot
    background = sessiondb.CompactionSettings(interval_seconds=0.05, min_tail_events=10, state_ratio=0.0)
    async with sessiondb.open_store(_backend(pg_dsn, pg_schema), compaction=background) as store:
        for i in range(25):
            await store.append(busy, Message.user(f"more {i}"))
        await asyncio.sleep(0.5)  # background passes run, without errors
        statistics = store.statistics()
        assert statistics["compaction_passes"] >= 2 and statistics["compaction_errors"] == 0
        assert store.backend.snapshot_versions()[busy][0] > 32
        assert [m.text for m in (await store.load(busy)).messages][-1] == "more 24"
