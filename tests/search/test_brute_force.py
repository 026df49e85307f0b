"""Search results equal a brute-force scan of the log, on random stores, on every backend."""

# Fullwidth letters and digits are what some of these tests search for.
# ruff: noqa: RUF001

from __future__ import annotations

import os
import tempfile
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sessiondb
from sessiondb import Compacted, Custom, Message, PromptRecorded, Text, Thinking, ToolResult, ToolUse

from ._brute import Term, expected_positions, normalized, query_text, words

pytestmark = pytest.mark.anyio

VOCABULARY = ["alpha", "alps", "beta", "bet", "gamma", "Gamma", "delta", "d3lta", "x1", "zeta", "ALPHA"]
# Compatibility forms (fullwidth, ligatures, super- and subscripts) and their plain twins: the same words.
VOCABULARY += ["ＡＰＩ", "api", "Ｐｙｔｈｏｎ３", "python3", "ﬁnal", "final", "ﬁ", "H₂O", "h2o", "x²", "x2"]
SEPARATORS = [" ", " ", ".", "-", "_", "\n", ", ", "/", '"', "*"]

text = st.lists(st.tuples(st.sampled_from(VOCABULARY), st.sampled_from(SEPARATORS)), max_size=8).map(
    lambda pairs: "".join(word + sep for word, sep in pairs)
)
block = st.one_of(
    text.map(Text),
    text.map(Thinking),
    st.builds(lambda name, body: ToolUse(id="t", name=name, input=body), st.sampled_from(VOCABULARY), text),
    st.builds(lambda name, body: ToolResult("t", name, body), st.sampled_from(VOCABULARY), text),
)
event = st.one_of(
    st.builds(Message, st.sampled_from(["user", "assistant", "tool"]), st.lists(block, min_size=1, max_size=3)),
    st.builds(lambda t: PromptRecorded(t, 1), text),
    st.builds(lambda t: Compacted(t, 0), text),
    st.builds(lambda t, n: Custom("note", {"k": [t, n]}), text, st.integers(0, 9)),
)
TAGS = ["alpha", "red", "blue"]
# (session index, events, search now?), (-1, session index, _): delete it,
# (-2, session index, title or None): set its title, (-3, session index, (tag, add?)): add or remove a tag
step = st.one_of(
    st.tuples(st.integers(0, 2), st.lists(event, min_size=1, max_size=3), st.booleans()),
    st.tuples(st.just(-1), st.integers(0, 2), st.just(False)),
    st.tuples(st.just(-2), st.integers(0, 2), st.one_of(st.none(), text)),
    st.tuples(st.just(-3), st.integers(0, 2), st.tuples(st.sampled_from(TAGS), st.booleans())),
)
term = st.one_of(
    st.builds(lambda w, p: ((w.lower(),), p), st.sampled_from(VOCABULARY), st.booleans()),
    st.builds(lambda w: ((w[:2].lower(),), True), st.sampled_from(VOCABULARY)),
    st.builds(lambda a, b: ((a.lower(), b.lower()), False), st.sampled_from(VOCABULARY), st.sampled_from(VOCABULARY)),
)
queries = st.lists(st.lists(term, min_size=1, max_size=2), min_size=1, max_size=3)

BUDGET = settings(
    max_examples=int(os.environ.get("SESSIONDB_SEARCH_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)


async def _all_pages(
    store: sessiondb.Store,
    query: str,
    order: str,
    session_id: str | None = None,
    scope: str | None = None,
    tag: str | None = None,
) -> list[Any]:
    hits: list[Any] = []
    cursor = None
    while True:
        page = await store.search(
            query, order=order, limit=3, cursor=cursor, session_id=session_id, scope=scope, tag=tag
        )
        hits += page.hits
        assert len(page.hits) <= 3
        if page.next_cursor is None:
            return hits
        cursor = page.next_cursor


def _check_highlights(hit: Any, terms: list[Term]) -> None:
    terms = normalized(terms)
    allowed = {w for wanted, _ in terms for w in wanted}
    prefixes = [wanted[-1] for wanted, prefix in terms if prefix]
    for start, end in hit.highlights:
        assert 0 <= start < end <= len(hit.snippet)
        for word in words(hit.snippet[start:end]):
            assert word in allowed or any(word.startswith(p) for p in prefixes), (hit, terms)


async def _check(store: sessiondb.Store, sessions: list[str], terms_list: list[list[Term]]) -> None:
    # From each session, not read_all: PostgreSQL's read_all lags behind other open transactions on the server.
    events = [e for info in await store.list_sessions() async for e in store.read(info.session_id)]
    for terms in terms_list:
        query = query_text(terms)
        expected = expected_positions(events, terms)
        newest = await _all_pages(store, query, "newest")
        positions = [hit.position for hit in newest]
        assert positions == sorted(expected, reverse=True), query
        best = await _all_pages(store, query, "relevance")
        assert sorted(hit.position for hit in best) == sorted(expected), query
        scores = [hit.score for hit in best]
        assert scores == sorted(scores, reverse=True)
        by_position = {e.position: e for e in events}
        for hit in best:
            recorded = by_position[hit.position]
            assert (hit.session_id, hit.version, hit.timestamp_ms) == (
                recorded.session_id,
                recorded.version,
                recorded.timestamp_ms,
            )
            assert hit.kind in {
                "message",
                "thinking",
                "tool_use",
                "tool_result",
                "prompt",
                "compaction",
                "custom",
                "title",
                "tags",
            }
            _check_highlights(hit, terms)
        alive = {s.session_id for s in await store.list_sessions()}
        for sid in sessions[:1]:
            if sid in alive:
                within = await _all_pages(store, query, "newest", session_id=sid)
                assert [h.position for h in within] == sorted(expected_positions(events, terms, sid), reverse=True)
        for scope, tag in (("p0", None), ("p1", None), (None, "red"), ("p0", "alpha")):
            filtered = await _all_pages(store, query, "newest", scope=scope, tag=tag)
            wanted = expected_positions(events, terms, scope=scope, tag=tag)
            assert [h.position for h in filtered] == sorted(wanted, reverse=True), (query, scope, tag)


async def _run(target: str, steps: list[Any], terms_list: list[list[Term]]) -> None:
    async with sessiondb.open_store(target) as store:
        sessions = [await store.create_session(session_id=f"s{i}", scope=f"p{i % 2}") for i in range(3)]
        deleted: set[int] = set()
        for index, payload, search_now in steps:
            if index == -1:
                if payload not in deleted:
                    await store.delete_session(sessions[payload])
                    deleted.add(payload)
                continue
            if index < -1:
                if payload in deleted:
                    continue
                if index == -2:
                    await store.set_title(
                        sessions[payload], " ".join(search_now.split()) or None if search_now else None
                    )
                elif search_now[1]:
                    await store.add_tags(sessions[payload], search_now[0])
                else:
                    await store.remove_tags(sessions[payload], search_now[0])
                continue
            if index in deleted:
                continue
            await store.append(sessions[index], *payload)
            if search_now:
                await _check(store, sessions, terms_list[:1])
        await _check(store, sessions, terms_list)


@BUDGET
@given(steps=st.lists(step, max_size=12), terms_list=queries)
async def test_memory_store_matches_brute_force(steps: list[Any], terms_list: list[list[Term]]) -> None:
    await _run(":memory:", steps, terms_list)


@BUDGET
@given(steps=st.lists(step, max_size=12), terms_list=queries)
async def test_directory_store_matches_brute_force(steps: list[Any], terms_list: list[list[Term]]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        await _run(os.path.join(directory, "store"), steps, terms_list)


@pytest.mark.postgres
@settings(BUDGET, max_examples=int(os.environ.get("SESSIONDB_SEARCH_PG_EXAMPLES", "10")))
@given(steps=st.lists(step, max_size=10), terms_list=queries)
async def test_postgres_store_matches_brute_force(pg_dsn: str, steps: list[Any], terms_list: list[list[Term]]) -> None:
    import asyncpg

    schema = f"sdbtest_{uuid.uuid4().hex[:12]}"
    try:
        await _run(f"{pg_dsn}{'&' if '?' in pg_dsn else '?'}schema={schema}", steps, terms_list)
    finally:
        conn = await asyncpg.connect(pg_dsn)
        try:
            await conn.execute(f"drop schema if exists {schema} cascade")
        finally:
            await conn.close()
