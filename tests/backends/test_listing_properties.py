"""Listings against brute force: for random stores and queries, on the directory store, ":memory:" and PostgreSQL.

``page_sessions`` paged to the end equals ``list_sessions`` with the same filters, and
both equal a filter and sort of ``session_info`` over every session the test created.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sessiondb
from sessiondb import Message, SessionInfo, Store
from sessiondb._backends._listing import SessionQuery
from sessiondb._backends.postgres import PostgresBackend

pytestmark = pytest.mark.anyio
BUDGET = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
ORDERS = ("updated", "created", "title", "version")
FINGERPRINT = SessionQuery().fingerprint()
SCOPES = (None, "a", "b", "ü/x")
TAGS = ("t1", "t2", "T1", "ß")
TITLES = (None, "foo bar", "FOO", "Straße", "STRASSE", "é", "zz", "a")

_session = st.fixed_dictionaries(
    {
        "scope": st.sampled_from(SCOPES),
        "title": st.sampled_from(TITLES),
        "tags": st.lists(st.sampled_from(TAGS), max_size=3),
        "untag": st.lists(st.sampled_from(TAGS), max_size=2),
        "pinned": st.booleans(),
        "messages": st.integers(0, 3),
        "delete": st.integers(0, 9).map(lambda n: n == 0),
    }
)
_query = st.fixed_dictionaries(
    {
        "scope": st.sampled_from(SCOPES),
        "tag": st.sampled_from((None, *TAGS)),
        "title": st.sampled_from((None, "foo", "FOO", "strasse", "É", "a", "nothing")),
        "pinned": st.sampled_from((None, True, False)),
        "order": st.sampled_from(ORDERS),
        "descending": st.booleans(),
    }
)


class Harness:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.ids: list[str] = []


@pytest.fixture(params=["directory", "memory", "postgres"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "directory":
        yield lambda: sessiondb.open_store(tmp_path / "store")
    elif request.param == "memory":
        yield lambda: sessiondb.open_store(":memory:")
    else:
        dsn = request.getfixturevalue("pg_dsn")
        schema = request.getfixturevalue("pg_schema")
        yield lambda: sessiondb.open_store(PostgresBackend(dsn, schema=schema))


@pytest.fixture
async def harness(opener: Any) -> AsyncIterator[Harness]:
    async with opener() as store:
        yield Harness(store)


def _brute_force(infos: list[SessionInfo], query: dict[str, Any]) -> list[str]:
    needle = query["title"].casefold() if query["title"] is not None else None
    kept = [
        info
        for info in infos
        if not info.deleted
        and (query["scope"] is None or info.scope == query["scope"])
        and (query["tag"] is None or query["tag"] in info.tags)
        and (query["pinned"] is None or info.pinned == query["pinned"])
        and (needle is None or (info.title is not None and needle in info.title.casefold()))
    ]
    field = {"updated": "updated_at_ms", "created": "created_at_ms", "version": "version"}.get(query["order"])

    def key(info: SessionInfo) -> tuple[Any, str]:
        value = (info.title or "") if field is None else getattr(info, field)
        return (value, info.session_id)

    kept.sort(key=key, reverse=query["descending"])
    return [info.session_id for info in kept]


@BUDGET
@given(
    sessions=st.lists(_session, max_size=6), queries=st.lists(_query, min_size=1, max_size=4), limit=st.integers(1, 5)
)
async def test_pages_equal_the_listing_and_brute_force(
    harness: Harness, sessions: list[dict[str, Any]], queries: list[dict[str, Any]], limit: int
) -> None:
    store = harness.store
    for spec in sessions:
        sid = await store.create_session(scope=spec["scope"])
        harness.ids.append(sid)
        if spec["title"] is not None:
            await store.set_title(sid, spec["title"])
        if spec["tags"]:
            await store.add_tags(sid, *spec["tags"])
        if spec["untag"]:
            await store.remove_tags(sid, *spec["untag"])
        await store.set_pinned(sid, spec["pinned"])
        for i in range(spec["messages"]):
            await store.append(sid, Message.user(str(i)))
        if spec["delete"]:
            await store.delete_session(sid)
    infos = [await store.backend.info(sid) for sid in harness.ids]
    every = [info for info in infos if info is not None]
    for query in queries:
        expected = _brute_force(every, query)
        listed = [info.session_id for info in await store.list_sessions(**query)]
        assert listed == expected, query
        paged: list[str] = []
        cursor = None
        while True:
            page = await store.page_sessions(**query, limit=limit, cursor=cursor)
            paged += [info.session_id for info in page.sessions]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert paged == expected, query


_change = st.tuples(st.sampled_from(("append", "create", "title", "tag", "untag", "pin", "delete")), st.integers(0, 99))


@BUDGET
@given(
    sessions=st.lists(_session, min_size=1, max_size=6),
    query=_query,
    limit=st.integers(1, 3),
    changes=st.lists(st.lists(_change, max_size=3), max_size=6),
)
async def test_pages_stay_consistent_while_the_store_changes(
    harness: Harness,
    sessions: list[dict[str, Any]],
    query: dict[str, Any],
    limit: int,
    changes: list[list[tuple[str, int]]],
) -> None:
    """Keyset pages with appends, creates, label changes and deletes between them: every session left
    untouched that matched at the start is shown, in order; and where a change can only move a session
    ahead of the cursor (creation order, or newest updated or highest version first), none is shown twice."""
    store = harness.store
    for spec in sessions:
        sid = await store.create_session(scope=spec["scope"])
        harness.ids.append(sid)
        if spec["title"] is not None:
            await store.set_title(sid, spec["title"])
        if spec["tags"]:
            await store.add_tags(sid, *spec["tags"])
    before = [info for info in (await store.list_sessions(**query))]
    touched: set[str] = set()
    shown: list[str] = []
    cursor = None
    rounds = iter(changes)
    while True:
        page = await store.page_sessions(**query, limit=limit, cursor=cursor)
        shown += [info.session_id for info in page.sessions]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
        for kind, n in next(rounds, []):
            live = [info.session_id for info in await store.list_sessions()]
            target = live[n % len(live)] if live else None
            if kind == "create" or target is None:
                harness.ids.append(await store.create_session(scope=SCOPES[n % len(SCOPES)]))
                continue
            touched.add(target)
            if kind == "append":
                await store.append(target, Message.user("between pages"))
            elif kind == "title":
                await store.set_title(target, TITLES[n % len(TITLES)])
            elif kind == "tag":
                await store.add_tags(target, TAGS[n % len(TAGS)])
            elif kind == "untag":
                await store.remove_tags(target, TAGS[n % len(TAGS)])
            elif kind == "pin":
                await store.set_pinned(target, n % 2 == 0)
            else:
                await store.delete_session(target)
    if query["order"] == "created" or (query["order"] in ("updated", "version") and query["descending"]):
        assert len(shown) == len(set(shown)), (query, shown)
    untouched = [info.session_id for info in before if info.session_id not in touched]
    assert [sid for sid in shown if sid in set(untouched)] == untouched, query


def _forged(fields: list[Any]) -> str:
    import base64

    import msgspec

    return base64.urlsafe_b64encode(msgspec.json.encode(fields)).decode().rstrip("=")


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3),
    max_leaves=5,
)
# Cursors that pass the format, order and filter checks (an unfiltered listing's fingerprint), with any key
# and id: what reached PostgreSQL as DataError (an int beyond int64) or a NUL in text, before the fields were checked.
_well_formed = st.builds(
    lambda order, descending, key, sid: _forged([1, order, descending, FINGERPRINT, key, sid]),
    st.sampled_from(ORDERS),
    st.booleans(),
    _json | st.integers(min_value=-(2**70), max_value=2**70) | st.text(min_size=0, max_size=600),
    _json | st.text(),
)
_any_cursor = (
    st.binary(max_size=200).map(lambda raw: __import__("base64").urlsafe_b64encode(raw).decode())
    | st.text(max_size=200)
    | st.lists(_json, max_size=7).map(_forged)
    | _well_formed
)


@pytest.fixture
async def seeded(opener: Any) -> AsyncIterator[Store]:
    async with opener() as store:
        for n in range(3):
            sid = await store.create_session(session_id=f"s{n}")
            await store.set_title(sid, f"t{n}")
        yield store


@BUDGET
@given(cursor=_any_cursor, order=st.sampled_from(ORDERS), descending=st.booleans())
async def test_any_cursor_gives_a_page_or_invalid_input(
    seeded: Store, cursor: str, order: str, descending: bool
) -> None:
    try:
        page = await seeded.page_sessions(order=order, descending=descending, limit=2, cursor=cursor)
    except sessiondb.InvalidInputError:
        return
    assert len(page.sessions) <= 2


@pytest.mark.parametrize(
    ("order", "key", "sid"),
    [
        ("version", 2**64, "s1"),
        ("updated", -1, "s1"),
        ("created", True, "s1"),
        ("version", 1.5, "s1"),
        ("title", "a\x00b", "s1"),
        ("title", "x" * 501, "s1"),
        ("updated", 1, "s\x00"),
        ("updated", 1, ""),
        ("updated", 1, 7),
        ("title", 3, "s1"),
    ],
)
async def test_forged_cursor_fields_are_invalid_input_on_every_backend(
    seeded: Store, order: str, key: object, sid: object
) -> None:
    with pytest.raises(sessiondb.InvalidInputError, match="not a session listing cursor"):
        await seeded.page_sessions(order=order, cursor=_forged([1, order, True, FINGERPRINT, key, sid]))


async def test_out_of_range_reads_and_nul_filters_are_clear_on_every_backend(seeded: Store) -> None:
    """Other inputs that reached PostgreSQL raw: read_all past int64, a NUL in an id or a title filter."""
    assert await seeded.read_all(after=2**64) == []
    # (PostgreSQL's read_all may hold back commits past another client's open transaction: no exact count.)
    assert len(await seeded.read_all(after=0, limit=2**64)) <= 6
    with pytest.raises(sessiondb.InvalidSessionIdError):
        await seeded.session_info("a\x00b")
    with pytest.raises(sessiondb.InvalidInputError, match="title= filter"):
        await seeded.list_sessions(title="a\x00")
