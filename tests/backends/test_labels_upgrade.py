"""Stores written before scopes and labels existed keep opening, and take labels afterwards.

The old files are written here by hand, from the formats' descriptions (docs/architecture.md,
the checkpoint layout of ``local/_checkpoint.py``), not by calling today's encoders: a
segment with sessions whose ``session_started`` has no ``scope``, and a checkpoint whose
session summaries have no scope, title, tags or pin. For PostgreSQL, a schema at version 3
with rows in its old columns.
"""

from __future__ import annotations

import json
import re
import zlib
from array import array
from pathlib import Path

import asyncpg
import msgspec
import pytest

import sessiondb
from sessiondb import Message
from sessiondb._backends.postgres import PostgresBackend
from sessiondb._backends.postgres._schema import MIGRATIONS, SCHEMA_VERSION

pytestmark = pytest.mark.anyio

_STARTED = {"type": "session_started", "created_at_ms": 1000, "model": "m"}
_MESSAGE = {"type": "message", "role": "user", "blocks": [{"type": "text", "text": "hello"}]}


def _old_segment() -> tuple[bytes, list[int]]:
    """Segment 1 with one frame: two sessions, three records. Returns the bytes and each record's offset."""
    header = b'{"sessiondb":"segment","format":1,"segment":1,"first_position":1}\n'
    records = [
        {"s": "old-a", "v": 1, "p": 1, "t": 1000, "e": _STARTED},
        {"s": "old-a", "v": 2, "p": 2, "t": 1001, "e": _MESSAGE},
        {"s": "old-b", "v": 1, "p": 3, "t": 1002, "e": {"type": "session_started", "created_at_ms": 1002}},
    ]
    lines = [json.dumps(r, separators=(",", ":")).encode() + b"\n" for r in records]
    payload = b"".join(lines)
    frame = json.dumps(
        {"batch": len(records), "bytes": len(payload), "crc": zlib.crc32(payload), "first": 1}, separators=(",", ":")
    ).encode()
    start = len(header) + len(frame) + 1
    offsets = []
    for line in lines:
        offsets.append(start)
        start += len(line)
    return header + frame + b"\n" + payload, offsets


def _old_checkpoint(segment: bytes, offsets: list[int]) -> bytes:
    """The CHECKPOINT an older sessiondb wrote after that frame: summaries without label fields."""
    frame_offset = segment.index(b"\n") + 1

    def stream(session_id: str, base: int, indexes: list[int], summary: dict[str, object]) -> list[object]:
        locations = array("Q", [(1 << 40) | offsets[i] for i in indexes]).tobytes()
        lengths = array("I", [segment.index(b"\n", offsets[i]) - offsets[i] for i in indexes]).tobytes()
        return [{"session_id": session_id, **summary}, base, locations, lengths, None]

    payload = msgspec.msgpack.encode(
        {
            "format": 1,
            "next_position": 4,
            "segments": [
                [
                    1,
                    1,
                    len(segment),
                    array("Q", [1]).tobytes(),
                    array("Q", [frame_offset]).tobytes(),
                    zlib.crc32(segment),
                ]
            ],
            "streams": [
                stream(
                    "old-a",
                    0,
                    [0, 1],
                    {"created_at_ms": 1000, "updated_at_ms": 1001, "version": 2, "message_count": 1, "model": "m"},
                ),
                stream("old-b", 0, [2], {"created_at_ms": 1002, "updated_at_ms": 1002, "version": 1}),
            ],
            "snapshots": {},
            "older_snapshots": {},
            "floors": {},
            "segments_deleted": 0,
        }
    )
    header = json.dumps(
        {"sessiondb": "checkpoint", "format": 1, "bytes": len(payload), "crc": zlib.crc32(payload)},
        separators=(",", ":"),
    ).encode()
    return header + b"\n" + payload


@pytest.mark.parametrize("with_checkpoint", [False, True])
async def test_an_old_directory_store_opens_and_takes_labels(tmp_path: Path, with_checkpoint: bool) -> None:
    directory = tmp_path / "store"
    directory.mkdir()
    segment, offsets = _old_segment()
    (directory / "0000000001.seg").write_bytes(segment)
    if with_checkpoint:
        (directory / "CHECKPOINT").write_bytes(_old_checkpoint(segment, offsets))
    async with sessiondb.open_store(directory) as store:
        statistics = store.statistics()
        # A format-1 checkpoint (its summaries predate the integrations' counts too) is ignored: the log is rescanned.
        assert statistics.get("opened_from_checkpoint") is False
        if with_checkpoint:
            assert "checkpoint format 1 is not 2" in statistics["checkpoint_ignored"]
        infos = {info.session_id: info for info in await store.list_sessions()}
        assert set(infos) == {"old-a", "old-b"}
        a = infos["old-a"]
        assert (a.scope, a.title, a.tags, a.pinned) == (None, None, (), False)
        assert (a.version, a.message_count, a.model) == (2, 1, "m")
        assert (await store.load("old-a")).messages[0].text == "hello"
        assert await store.list_sessions(scope="x") == []
        assert await store.set_title("old-a", "labelled later") == 3
        assert await store.add_tags("old-b", "legacy") == 2
        assert [i.session_id for i in await store.list_sessions(tag="legacy")] == ["old-b"]
    async with sessiondb.open_store(directory) as store:
        assert store.statistics()["opened_from_checkpoint"] is True
        assert [i.session_id for i in await store.list_sessions(tag="legacy")] == ["old-b"]
        assert [i.session_id for i in await store.list_sessions(title="LATER")] == ["old-a"]
        assert (await store.load("old-a", at_version=2)).title is None


async def _schema_at(conn: asyncpg.Connection, schema: str, version: int) -> None:
    """A schema as sessiondb left it at ``version`` (its migrations up to there, applied in order)."""
    await conn.execute(f"create schema {schema}")
    await conn.execute(f"create table {schema}.schema_version (version integer not null)")
    for step in range(1, version + 1):
        for statement in MIGRATIONS[step](schema):
            await conn.execute(statement)
    await conn.execute(f"insert into {schema}.schema_version values ($1)", version)


@pytest.mark.postgres
async def test_a_version_3_postgresql_schema_is_migrated(pg_dsn: str, pg_schema: str) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        await _schema_at(conn, pg_schema, 3)
        # Rows in the columns version 3 had: no scope, title, tags or pin.
        await conn.execute(
            f"insert into {pg_schema}.sessions (session_id, version, created_at_ms, updated_at_ms, model) "
            "values ('old', 1, 5, 5, 'm')"
        )
        await conn.execute(
            f"insert into {pg_schema}.events (position, session_id, version, timestamp_ms, payload) "
            "values (1, 'old', 1, 5, $1)",
            json.dumps({"type": "session_started", "created_at_ms": 5, "model": "m"}).encode(),
        )
        async with sessiondb.open_store(PostgresBackend(pg_dsn, schema=pg_schema)) as store:
            assert await conn.fetchval(f"select version from {pg_schema}.schema_version") == SCHEMA_VERSION
            info = await store.session_info("old")
            assert (info.scope, info.title, info.tags, info.pinned) == (None, None, (), False)
            assert await store.append("old", Message.user("after upgrade")) == 2
            assert await store.add_tags("old", "legacy", "b") == 3
            assert await store.set_pinned("old", True) == 4
            assert [i.session_id for i in await store.list_sessions(tag="legacy", pinned=True)] == ["old"]
            assert (await store.session_info("old")).tags == ("b", "legacy")
            fresh = await store.create_session(scope="new")
            assert [i.session_id for i in (await store.page_sessions(scope="new")).sessions] == [fresh]
            functions = await conn.fetchval(
                "select count(*) from pg_proc where proname = 'append_batch' and pronamespace = $1::regnamespace",
                pg_schema,
            )
            assert functions == 1  # the old signature was dropped, not left beside the new one
    finally:
        await conn.close()


def _version_4_append_batch(schema: str) -> str:
    """append_batch as version 4 created it: three results, plans chosen per call."""
    text = MIGRATIONS[5](schema)[-1]
    old = text.replace(", out listened boolean", "")
    old = re.sub(r"\n\s*set plan_cache_mode = force_generic_plan", "", old)
    old = re.sub(r"\n\s*listened := [^;]*;", "", old)
    assert old != text and "listened" not in old.split("$fn$")[1]
    return old


@pytest.mark.postgres
async def test_a_version_4_postgresql_schema_is_migrated(pg_dsn: str, pg_schema: str) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        await _schema_at(conn, pg_schema, 4)
        await conn.execute(f"drop function {pg_schema}.append_batch")
        await conn.execute(_version_4_append_batch(pg_schema))
        async with sessiondb.open_store(PostgresBackend(pg_dsn, schema=pg_schema)) as store:
            sid = await store.create_session(scope="s")
            assert await store.append(sid, Message.user("after upgrade")) == 2
            assert await store.set_title(sid, "Upgraded") == 3
        async with sessiondb.open_store(PostgresBackend(pg_dsn, schema=pg_schema)) as store:
            assert await conn.fetchval(f"select version from {pg_schema}.schema_version") == SCHEMA_VERSION == 7
            info = await store.session_info(sid)
            assert (info.version, info.scope, info.title, info.message_count) == (3, "s", "Upgraded", 1)
            rows = await conn.fetch(
                "select proconfig from pg_proc where proname = 'append_batch' and pronamespace = $1::regnamespace",
                pg_schema,
            )
            assert [row[0] for row in rows] == [["plan_cache_mode=force_generic_plan"]]
    finally:
        await conn.close()
