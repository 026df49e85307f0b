"""Accepted means identical: a value append accepts reads back equal, with the same types, everywhere.

For values of every JSON-adjacent Python type, on the directory store, ``":memory:"`` and
PostgreSQL, after reopen, through ``read``, ``read_all``, ``subscribe``, ``load`` and the
CLI's ``--json`` output: either append refuses it with ``InvalidInputError`` (naming the
session and the field), or every reader gives back the very value.
"""

from __future__ import annotations

import asyncio
import datetime
import decimal
import enum
import io
import json
import math
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sessiondb
from sessiondb import Custom, InvalidInputError, Message, Store, Text
from sessiondb._backends.local import verify_store
from sessiondb._backends.postgres import PostgresBackend
from sessiondb._values import MAX_NESTING
from sessiondb.cli import main as cli_main

pytestmark = pytest.mark.anyio
BUDGET = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
SLOW_BUDGET = settings(BUDGET, max_examples=400)


class Color(enum.IntEnum):
    RED = 1


class Tag(str):
    pass


class Mapping(dict):  # type: ignore[type-arg]
    pass


_text = st.one_of(
    st.text(max_size=8),
    st.text(st.characters(categories=["Cs"]), min_size=1, max_size=2),  # lone surrogates
    st.sampled_from(["\x00", "a\x00b", "\u2028", "\ufeff", "\U0001f600", "-0", "1e400", "NaN"]),
)
_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([2**63 - 1, -(2**63), 2**63, 2**64, -(2**63) - 1, 2**13_999, -(2**13_999), 2**14_000]),
    st.floats(),  # nan, inf, -0.0, subnormals, 1e308 ...
    _text,
    st.binary(max_size=4),
    st.builds(bytearray, st.binary(max_size=2)),
    st.datetimes(),
    st.dates(),
    st.uuids(),
    st.decimals(allow_nan=False, places=2),
    st.just(Color.RED),
    st.builds(Tag, st.text(max_size=3)),
    st.complex_numbers(max_magnitude=2, allow_nan=False),
)


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=3).map(tuple),
        st.dictionaries(_text, children, max_size=3),
        st.dictionaries(st.one_of(st.integers(), st.booleans(), st.none(), st.floats()), children, max_size=2),
        st.dictionaries(st.text(max_size=3), children, max_size=2).map(Mapping),
        st.frozensets(st.integers(), max_size=3),
        st.sets(st.text(max_size=2), max_size=3),
    )


json_adjacent = st.recursive(_leaf, _containers, max_leaves=12)
_plain_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
plain_json = st.recursive(
    _plain_leaf, lambda c: st.one_of(st.lists(c, max_size=4), st.dictionaries(st.text(max_size=4), c, max_size=3))
)


def identical(a: object, b: object) -> bool:
    """``a == b`` with the same type at every level; -0.0 is not 0.0."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        assert isinstance(b, float)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, list):
        assert isinstance(b, list)
        return len(a) == len(b) and all(identical(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        assert isinstance(b, dict)
        return list(a) == list(b) and all(identical(a[k], b[k]) for k in a)
    return a == b


async def _nested(depth: int, call: Callable[[], Any]) -> Any:
    """Await ``call()`` from ``depth`` coroutines deep (readers must not depend on the caller's stack)."""
    if depth == 0:
        return await call()
    return await _nested(depth - 1, call)


async def _read_everywhere(store: Store, sid: str, cli_store: Path | None) -> list[object]:
    """The stored Custom event's data through every reader, after the store was reopened."""
    seen: list[object] = []
    events = [r async for r in store.read(sid)]
    seen.append(events[-1].event.data)  # type: ignore[union-attr]
    everything = await store.read_all()
    seen.append([r for r in everything if r.session_id == sid][-1].event.data)  # type: ignore[union-attr]
    subscription = store.subscribe(sid)
    async with asyncio.timeout(30):
        async for recorded in subscription:
            if recorded.version == events[-1].version:
                seen.append(recorded.event.data)  # type: ignore[union-attr]
                break
    await subscription.aclose()
    nested = await _nested(150, lambda: store.read_all())
    seen.append(nested[-1].event.data)
    if cli_store is not None:
        out, err = io.StringIO(), io.StringIO()
        # The CLI opens the store itself, read-only, beside this open one.
        argv = ["show", str(cli_store), sid, "--raw", "--json"]
        code = await asyncio.to_thread(lambda: cli_main(argv, stdout=out, stderr=err))
        assert code == 0, err.getvalue()
        seen.append(json.loads(out.getvalue().rstrip("\n").split("\n")[-1])["event"]["data"])  # JSON lines: \n only
    return seen


class Backend:
    """How a test opens one backend; ``durable`` when reopening finds the same data."""

    def __init__(self, open_: Callable[[], Any], *, durable: bool, cli_store: Path | None = None) -> None:
        self.open = open_
        self.durable = durable
        self.cli_store = cli_store


async def _check_value(backend: Backend, value: object) -> bool:
    """Append ``value``; True if it was accepted (and then read back identical everywhere)."""
    sid = f"s-{uuid.uuid4().hex[:10]}"
    async with backend.open() as store:
        await store.create_session(session_id=sid)
        try:
            await store.append(sid, Custom("v", value))
        except InvalidInputError as exc:
            assert repr(sid) in str(exc) and "event.data" in str(exc), str(exc)
            return False
        if not backend.durable:  # ":memory:" lives only while open
            for got in await _read_everywhere(store, sid, None):
                assert identical(got, value), (value, got)
            return True
    async with backend.open() as store:
        for got in await _read_everywhere(store, sid, backend.cli_store):
            assert identical(got, value), (value, got)
    return True


@pytest.fixture(params=["directory", "memory", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "directory":
        yield Backend(lambda: sessiondb.open_store(tmp_path / "store"), durable=True, cli_store=tmp_path / "store")
    elif request.param == "memory":
        yield Backend(lambda: sessiondb.open_store(":memory:"), durable=False)
    else:
        dsn = request.getfixturevalue("pg_dsn")
        schema = request.getfixturevalue("pg_schema")  # dropped afterwards
        yield Backend(lambda: sessiondb.open_store(PostgresBackend(dsn, schema=schema)), durable=True)


@BUDGET
@given(value=json_adjacent)
async def test_refused_or_identical(backend: Backend, value: object) -> None:
    await _check_value(backend, value)


@pytest.mark.slow
@SLOW_BUDGET
@given(value=json_adjacent)
async def test_refused_or_identical_large_budget(backend: Backend, value: object) -> None:
    await _check_value(backend, value)


@BUDGET
@given(value=plain_json)
async def test_plain_json_is_accepted(backend: Backend, value: object) -> None:
    # The other half of the property: the rule refuses only what cannot round-trip.
    assert await _check_value(backend, value)


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ((1, 2), "event.data"),
        ({1: "a"}, "event.data"),
        ([float("nan")], "event.data[0]"),
        ({"k": [float("inf")]}, "event.data['k'][0]"),
        ([2**14_000], "event.data[0]"),
        (["a\udc80"], "event.data[0]"),
        (b"x", "event.data"),
        ({"when": datetime.datetime(2026, 1, 1)}, "event.data['when']"),
        ([Color.RED], "event.data[0]"),
        ([True, Tag("x")], "event.data[1]"),
        ({"s": {1, 2}}, "event.data['s']"),
        (decimal.Decimal("1.5"), "event.data"),
    ],
)
async def test_unfaithful_values_are_refused_naming_session_and_field(store: Store, value: object, where: str) -> None:
    sid = await store.create_session(session_id="fidelity")
    with pytest.raises(InvalidInputError) as refused:
        await store.append(sid, Custom("v", value))
    assert "'fidelity'" in str(refused.value) and where in str(refused.value)
    assert (await store.session_info(sid)).version == 1  # nothing was written


def _nest(depth: int) -> object:
    value: object = []
    for _ in range(depth - 1):
        value = [value]
    return value


async def test_nesting_limit_is_checked_at_append(tmp_path: Path) -> None:
    # Issue 11: a list nested 900 deep was acknowledged, then load from ~150 coroutines deep
    # raised CorruptionError while verify said the store was fine.
    async with sessiondb.open_store(tmp_path / "s") as store:
        sid = await store.create_session(session_id="deep")
        with pytest.raises(
            InvalidInputError, match=r"'deep'.*event\.data\[0\]\[0\].*nests containers deeper"
        ) as refused:
            await store.append(sid, Custom("t", _nest(900)))
        # The path to the refused level is abbreviated in the middle, so the message stays one readable line.
        assert "…(52 levels)…" in str(refused.value)
        assert len(str(refused.value)) < 300
        with pytest.raises(InvalidInputError):
            await store.append(sid, Custom("t", _nest(MAX_NESTING + 1)))
        await store.append(sid, Custom("t", _nest(MAX_NESTING)))
    async with sessiondb.open_store(tmp_path / "s") as store:
        loaded = await _nested(150, lambda: store.load("deep"))
        assert loaded.version == 2
        events = await _nested(150, lambda: _collect(store.read("deep")))
        assert identical(events[-1].event.data, _nest(MAX_NESTING))
    assert verify_store(tmp_path / "s").ok


async def _collect(iterator: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in iterator]


async def test_metadata_limits_agree_across_backends(backend: Backend) -> None:
    # The directory store accepted metadata that PostgreSQL's text columns refuse (NUL),
    # and event ids longer than its index can hold: the store refuses them for every backend.
    async with backend.open() as store:
        for kwargs in ({"model": "m\x00"}, {"workspace_root": "/w\x00"}, {"model": "m" * 5000}):
            with pytest.raises(InvalidInputError, match="nothing was written"):
                await store.create_session(**kwargs)
        sid = await store.create_session(model="m\x7f", workspace_root="/\u2028")
        with pytest.raises(InvalidInputError, match="branch_name"):
            await store.fork(sid, branch_name="b\x00")
        with pytest.raises(InvalidInputError, match=r"event_ids\[0\]"):
            await store.append(sid, Message.user("x"), event_ids=["e\x00"])
        with pytest.raises(InvalidInputError, match=r"event_ids\[0\]"):
            await store.append(sid, Message.user("x"), event_ids=["e" * 3000])
        with pytest.raises(InvalidInputError, match=r"blocks\[0\]\.text"):
            await store.append(sid, Message("user", [Text("a\ud800")]))
        await store.append(sid, Message.user("a\x00b"), event_ids=["e" * 256])  # NUL in content is kept
        child = await store.fork(sid, branch_name="b" * 4096)
        assert (await store.load(child)).model == "m\x7f"
        assert (await store.load(sid)).messages[-1].text == "a\x00b"


async def test_a_deep_record_stored_before_the_limit_reads_from_any_stack(tmp_path: Path) -> None:
    # A record nested 900 deep, as an older sessiondb acknowledged it (written past the
    # store's check): reads from 150 coroutines deep decode it on a fresh stack instead of
    # calling it corrupt, and verify agrees.
    from sessiondb._backends._base import AppendRequest

    async with sessiondb.open_store(tmp_path / "s") as store:
        sid = await store.create_session(session_id="old")
        await store.backend.commit([AppendRequest(sid, (Custom("t", _nest(900)),), timestamp_ms=1)])
    async with sessiondb.open_store(tmp_path / "s") as store:
        loaded = await _nested(150, lambda: store.load("old"))
        assert loaded.version == 2
        events = await _nested(150, lambda: _collect(store.read("old")))
        assert events[-1].event.data == _nest(900)  # == compares in C: identical() would recurse too deep
        everything = await _nested(150, lambda: store.read_all())
        assert everything[-1].event.data == _nest(900)
    assert verify_store(tmp_path / "s").ok


async def test_a_deep_record_another_writer_appended_is_learned_from_any_stack(tmp_path: Path) -> None:
    # Since issue 13 a read first learns other writers' frames (LogCatchUp -> Index.index_frame),
    # decoding them on the reader's stack: a deep record written by another open of the
    # directory must be decoded on a fresh stack there too, never called corrupt.
    from sessiondb._backends._base import AppendRequest

    path = tmp_path / "s"
    async with sessiondb.open_store(path) as reader, sessiondb.open_store(path) as writer:
        sid = await reader.create_session(session_id="old")
        await writer.backend.commit([AppendRequest(sid, (Custom("t", _nest(900)),), timestamp_ms=1)])
        info = await _nested(150, lambda: reader.session_info("old"))  # the catch-up runs here, deep
        assert info.version == 2
        events = await _nested(150, lambda: _collect(reader.read("old")))
        assert events[-1].event.data == _nest(900)
        # The writer task catches up under the write lock too before each batch.
        await writer.backend.commit([AppendRequest(sid, (Custom("t", _nest(900)),), timestamp_ms=2)])
        assert await _nested(150, lambda: reader.append("old", Custom("t", [1]))) == 4
        assert not reader.broken
        everything = await _nested(150, lambda: reader.read_all())
        assert [r.version for r in everything] == [1, 2, 3, 4]
    assert verify_store(path).ok
