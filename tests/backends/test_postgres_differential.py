"""Random batches committed to PostgreSQL and to the local backend must have the same outcomes and leave the same state.

The local backend is the reference. Batches mix creates, appends with and
without expected versions, retries and partial retries by event id, deletes,
compactions, label events (title, tags, pin; scoped creates) and several appends
to one session, so both of the database function's paths (the set-based one and
the ordered loop) and the label fold are compared.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from sessiondb import (
    Compacted,
    Custom,
    LocalBackend,
    Message,
    PinChanged,
    SessionDeleted,
    SessionStarted,
    TagsChanged,
    TitleChanged,
    Usage,
)
from sessiondb._backends._base import AppendRequest
from sessiondb._backends._listing import session_query
from sessiondb._backends._memory import MemoryFileSystem
from sessiondb._backends.postgres import PostgresBackend

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]


def _random_batch(rng: random.Random, sessions: list[str], used_ids: list[list[str]], clock: list[int]) -> list[Any]:
    """Describe a batch as plain tuples, so the same batch can be built twice."""
    batch: list[Any] = []
    for _ in range(rng.randint(1, 12)):
        sid = rng.choice(sessions)
        clock[0] += 1
        roll = rng.random()
        if roll < 0.12:
            batch.append(("create", sid, clock[0]))
        elif roll < 0.16:
            batch.append(("delete", sid, clock[0]))
        else:
            count = rng.randint(1, 3)
            kinds = [
                rng.choice(["message", "message", "message", "compaction", "custom", "title", "tags", "pin"])
                for _ in range(count)
            ]
            expected = rng.choice([None, None, rng.randint(0, 12)])
            ids: list[str | None] | None = None
            if rng.random() < 0.4:
                if used_ids and rng.random() < 0.5:
                    previous = rng.choice(used_ids)
                    ids = list(previous) if rng.random() < 0.7 else [*previous[:1], f"fresh{clock[0]}"]
                    count = len(ids)
                    kinds = (kinds * 3)[:count]
                else:
                    ids = [f"id{clock[0]}-{k}" for k in range(count)]
                    used_ids.append([i for i in ids if i is not None])
            batch.append(("append", sid, clock[0], kinds, expected, ids, rng.randint(0, 50)))
    return batch


_TAGS = ("a", "b", "c")


def _label(kind: str, seed: int) -> Any:
    if kind == "title":
        return TitleChanged(None if seed % 5 == 0 else f"Title {seed % 3}")
    if kind == "pin":
        return PinChanged(seed % 2 == 0)
    added = [tag for n, tag in enumerate(_TAGS) if seed >> n & 1]
    removed = [tag for n, tag in enumerate(_TAGS) if seed >> (n + 3) & 1 and tag not in added]
    return TagsChanged(added=added, removed=removed)


def _requests(batch: list[Any]) -> list[AppendRequest]:
    requests = []
    for item in batch:
        if item[0] == "create":
            started = SessionStarted(item[2], model="m", scope=f"scope-{item[2] % 3}" if item[2] % 4 else None)
            requests.append(AppendRequest(item[1], (started,), timestamp_ms=item[2], creates=True, full_check=True))
        elif item[0] == "delete":
            requests.append(AppendRequest(item[1], (SessionDeleted(),), timestamp_ms=item[2]))
        else:
            _, sid, ts, kinds, expected, ids, tokens = item
            events: list[Any] = []
            for kind in kinds:
                if kind == "message":
                    events.append(Message.assistant(f"t{ts}", usage=Usage(tokens, 1, 2, 3)))
                elif kind == "compaction":
                    events.append(Compacted(f"summary {ts}", removed_message_count=tokens % 4))
                elif kind == "custom":
                    events.append(Custom("note", {"ts": ts}))
                else:
                    events.append(_label(kind, ts + tokens))
            # A store flags its compactions (refused beyond the live messages); unflagged, as from logs
            # written before that check, over-large counts are clamped. Both backends must agree on each.
            checked = "compaction" in kinds and tokens % 3 != 0
            requests.append(
                AppendRequest(
                    sid, tuple(events), expected_version=expected, event_ids=ids, timestamp_ms=ts, full_check=checked
                )
            )
    return requests


def _outcome(request: AppendRequest) -> tuple[Any, ...]:
    if request.error is not None:
        return (type(request.error).__name__,)
    return (request.version, request.duplicate)


@pytest.mark.parametrize("seed", range(16))
async def test_random_batches_match_the_local_backend(pg_dsn: str, pg_schema: str, seed: int) -> None:
    rng = random.Random(seed)
    sessions = [f"s{i}" for i in range(6)]
    local = LocalBackend("/:memory:", file_system=MemoryFileSystem())
    postgres = PostgresBackend(pg_dsn, schema=pg_schema)
    await local.open()
    await postgres.open()
    try:
        used_ids: list[list[str]] = []
        clock = [1_000]
        for _ in range(25):
            batch = _random_batch(rng, sessions, used_ids, clock)
            expected_requests, actual_requests = _requests(batch), _requests(batch)
            await local.commit(expected_requests)
            await postgres.commit(actual_requests)
            assert [_outcome(r) for r in actual_requests] == [_outcome(r) for r in expected_requests], batch
        for sid in sessions:
            assert await postgres.info(sid) == await local.info(sid)
            if await local.info(sid) is not None:
                stored = await postgres.read_session(sid, 0, None)
                reference = await local.read_session(sid, 0, None)
                assert [(e.version, e.event, e.event_id, e.timestamp_ms) for e in stored] == [
                    (e.version, e.event, e.event_id, e.timestamp_ms) for e in reference
                ]
        assert {i.session_id for i in await postgres.list_sessions()} == {
            i.session_id for i in await local.list_sessions()
        }
        for filters in ({"scope": "scope-1"}, {"tag": "a"}, {"title": "title 2"}, {"pinned": True}):
            for order in ("updated", "title", "version"):
                query = session_query(**filters, order=order)
                assert await postgres.page_sessions(query, None) == await local.page_sessions(query, None), query
    finally:
        await local.aclose()
        await postgres.aclose()
