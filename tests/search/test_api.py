"""``Store.search``: what is found, how hits look, paging, the query syntax and its errors (both backends)."""

# Fullwidth letters and digits are what some of these tests search for.
# ruff: noqa: RUF001

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sessiondb
from sessiondb import (
    Custom,
    InvalidInputError,
    Message,
    SessionDeletedError,
    SessionNotFoundError,
    Text,
    Thinking,
    ToolResult,
    ToolUse,
)
from sessiondb._search import parse_query

pytestmark = pytest.mark.anyio


@pytest.fixture
async def opened(store_target: str) -> AsyncIterator[sessiondb.Store]:
    async with sessiondb.open_store(store_target) as store:
        yield store


async def _hits(store: sessiondb.Store, query: str, **options: object) -> list[tuple[str, int, str]]:
    page = await store.search(query, **options)  # type: ignore[arg-type]
    return [(hit.session_id, hit.version, hit.kind) for hit in page.hits]


async def test_every_kind_of_content_is_found_with_its_kind(opened: sessiondb.Store) -> None:
    store = opened
    sid = await store.create_session(session_id="chat")
    await store.append(sid, Message.user("please fix the flaky scheduler"))  # 2
    await store.append(
        sid,
        Message.assistant(
            [Thinking("the scheduler races on shutdown"), Text("looking"), ToolUse("t1", "grep", '{"pattern": "racy"}')]
        ),
    )  # 3
    await store.append(sid, Message("tool", [ToolResult("t1", "grep", "src/sched.py:12: racy_lock()")]))  # 4
    await store.record_prompt(sid, "remember the kumquat")  # 5
    await store.record_compaction(sid, summary="we fixed the scheduler race", removed_message_count=1)  # 6
    await store.append(sid, Custom("openai_agents.items", {"items": [{"role": "user", "content": "quince jam"}]}))  # 7
    assert await _hits(store, "flaky") == [("chat", 2, "message")]
    assert await _hits(store, "shutdown") == [("chat", 3, "thinking")]
    assert await _hits(store, "racy", order="newest") == [("chat", 4, "tool_result"), ("chat", 3, "tool_use")]
    assert await _hits(store, "kumquat") == [("chat", 5, "prompt")]
    assert await _hits(store, "race") == [("chat", 6, "compaction")]
    assert await _hits(store, "quince") == [("chat", 7, "custom")]


async def test_snippets_are_plain_text_with_highlight_offsets(opened: sessiondb.Store) -> None:
    store = opened
    sid = await store.create_session()
    hostile = "<script>alert(1)</script> the Café owner said: " + "filler " * 60 + "and the café closed"
    await store.append(sid, Message.user(hostile))
    (hit,) = (await store.search("cafe")).hits
    assert hit.highlights
    for start, end in hit.highlights:
        assert hit.snippet[start:end].lower() in {"café", "cafe"}
    assert "…" in hit.snippet  # cut to a window around the match
    assert hit.score > 0 and hit.timestamp_ms > 0 and hit.position > 0


async def test_deleted_sessions_are_not_found_and_forks_find_their_own_events(opened: sessiondb.Store) -> None:
    store = opened
    parent = await store.create_session(session_id="parent")
    await store.append(parent, Message.user("walrus one"))
    child = await store.fork(parent, session_id="child")
    await store.append(child, Message.user("walrus two"))
    other = await store.create_session(session_id="other")
    await store.append(other, Message.user("walrus three"))
    assert sorted(await _hits(store, "walrus")) == [
        ("child", 4, "message"),
        ("other", 2, "message"),
        ("parent", 2, "message"),
    ]
    assert await _hits(store, "walrus", session_id="child") == [("child", 4, "message")]
    await store.delete_session(other)
    assert sorted(s for s, _, _ in await _hits(store, "walrus")) == ["child", "parent"]
    with pytest.raises(SessionDeletedError):
        await store.search("walrus", session_id="other")
    with pytest.raises(SessionNotFoundError):
        await store.search("walrus", session_id="nobody")


async def test_a_conversation_compaction_keeps_history_searchable(opened: sessiondb.Store) -> None:
    store = opened
    sid = await store.create_session()
    for i in range(8):
        await store.append(sid, Message.user(f"step {i} about the ocelot"))
    await store.compact_conversation(sid, keep_last=2)
    page = await store.search("ocelot", limit=100)
    assert sorted(hit.version for hit in page.hits if hit.kind == "message") == list(range(2, 10))


async def test_pages_follow_each_other_without_gaps_or_repeats(opened: sessiondb.Store) -> None:
    store = opened
    sid = await store.create_session()
    for i in range(25):
        await store.append(sid, Message.user("heron " * (1 + i % 5) + f"number {i}"))
    for order in ("relevance", "newest"):
        seen: list[int] = []
        cursor = None
        first_page = True
        while True:
            page = await store.search("heron", order=order, limit=7, cursor=cursor)
            seen += [hit.position for hit in page.hits]
            if first_page and order == "newest":
                await store.append(sid, Message.user("a later heron"))  # not added to later pages
                first_page = False
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert len(seen) == len(set(seen)) == 25, order
    assert len((await store.search("heron", limit=100)).hits) == 26


async def test_unusable_arguments_are_clear_errors(opened: sessiondb.Store) -> None:
    store = opened
    sid = await store.create_session()
    await store.append(sid, Message.user("one two three"))
    for query in ("", "   ", "...", '""', "*", "- + ()"):
        with pytest.raises(InvalidInputError, match="no word to search for"):
            await store.search(query)
    with pytest.raises(InvalidInputError, match="characters"):
        await store.search("a" * 1001)
    with pytest.raises(InvalidInputError, match="limit"):
        await store.search("one", limit=0)
    with pytest.raises(InvalidInputError, match="order"):
        await store.search("one", order="oldest")
    with pytest.raises(InvalidInputError, match="not one a search returned"):
        await store.search("one", cursor="garbage!")
    for _ in range(3):
        await store.append(sid, Message.user("one more"))
    page = await store.search("one", limit=1)
    assert page.next_cursor is not None
    with pytest.raises(InvalidInputError, match="another search"):
        await store.search("two", limit=1, cursor=page.next_cursor)


def test_the_query_syntax() -> None:
    assert [t.words for t in parse_query('Foo.bar "Big  cat" dog*').terms] == [("foo", "bar"), ("big", "cat"), ("dog",)]
    assert [t.prefix for t in parse_query('Foo.bar "Big  cat" dog*').terms] == [False, False, True]
    assert parse_query('"unclosed phrase').terms[0].words == ("unclosed", "phrase")
    assert parse_query('"a b"*').terms[0].prefix
    assert parse_query("AND OR NOT near").fts5() == '"and" "or" "not" "near"'  # operators are plain words
    assert parse_query("Crème brûlée").terms[0].words == ("creme",)
    assert parse_query("x_y").terms[0].words == ("x", "y")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=st.text(max_size=40))
async def test_no_query_reaches_the_engine_as_syntax(query: str) -> None:
    async with sessiondb.open_store(":memory:") as store:
        sid = await store.create_session()
        await store.append(sid, Message.user('some words: col:x NEAR(a b) ^start "quoted" x AND y'))
        try:
            page = await store.search(query)
        except InvalidInputError:
            return
        assert isinstance(page, sessiondb.SearchPage)


async def test_the_background_indexer_follows_appends_once_searched(tmp_path: object) -> None:
    async with sessiondb.open_store(":memory:") as store:
        sid = await store.create_session()
        await store.search("anything")  # from now on the index follows the log
        for i in range(50):
            await store.append(sid, Message.user(f"lemur {i}"))
        last = store.statistics()["last_position"]
        with anyio.fail_after(30):
            while store.statistics()["search_position"] < last:
                await anyio.sleep(0.01)  # waiting for a condition, bounded by fail_after
        indexed = store.statistics()["search_events_indexed"]
        assert store.statistics()["search_events_from_batches"] == 50  # taken from the batches, not read back
        assert len((await store.search("lemur", limit=100)).hits) == 50
        assert store.statistics()["search_events_indexed"] == indexed  # nothing was left for search() to do


async def test_titles_and_tags_are_found_and_filter_by_scope_and_tag(opened: sessiondb.Store) -> None:
    store = opened
    a = await store.create_session(session_id="a", scope="proj-1")
    b = await store.create_session(session_id="b", scope="proj-2")
    fork = await store.fork(a, session_id="a-fork")  # inherits proj-1
    for sid in (a, b, fork):
        await store.append(sid, Message.user(f"the pelican in {sid}"))
    await store.set_title(a, "Pelican migration plan")
    version = await store.set_title(a, "Heron migration plan")  # replaces the first: only the newest is found
    assert await _hits(store, "heron migration") == [("a", version, "title")]
    assert await _hits(store, "pelican migration") == []
    await store.add_tags(b, "birds", "urgent")
    tagged = await store.remove_tags(b, "urgent")
    assert await _hits(store, "birds") == [("b", tagged, "tags")]
    assert await _hits(store, "urgent") == []
    assert sorted(s for s, _, _ in await _hits(store, "pelican", scope="proj-1")) == ["a", "a-fork"]
    assert [s for s, _, _ in await _hits(store, "pelican", scope="proj-2")] == ["b"]
    assert [s for s, _, _ in await _hits(store, "pelican", tag="birds")] == ["b"]
    assert await _hits(store, "pelican", tag="urgent") == []
    assert [s for s, _, _ in await _hits(store, "pelican", scope="proj-2", tag="birds", session_id="b")] == ["b"]
    await store.set_title(a, None)
    assert await _hits(store, "heron") == []
    await store.delete_session(b)
    assert await _hits(store, "birds") == []
    assert await _hits(store, "pelican", scope="proj-2") == []


@pytest.fixture(params=["directory", "memory", pytest.param("postgres", marks=pytest.mark.postgres)])
async def any_store(request: pytest.FixtureRequest, tmp_path: object) -> AsyncIterator[sessiondb.Store]:
    targets = {"directory": f"{tmp_path}/store", "memory": ":memory:"}
    target = targets[request.param] if request.param in targets else request.getfixturevalue("pg_url")
    async with sessiondb.open_store(target) as store:
        yield store


async def test_cjk_words_are_found_inside_a_sentence(any_store: sessiondb.Store) -> None:
    """Chinese, Japanese and Korean run words together: each character is a word, a query's run of them a phrase."""
    store = any_store
    sid = await store.create_session(session_id="cjk")
    await store.append(sid, Message.user("这是一个测试"))  # 2
    await store.append(sid, Message.user("テストです"))  # 3
    await store.append(sid, Message.user("테스트입니다"))  # 4
    await store.append(sid, Message.user("用Python写的程序, café"))  # 5
    await store.set_title(sid, "关于测试的会话")  # 6
    assert await _hits(store, "测试", order="newest") == [("cjk", 6, "title"), ("cjk", 2, "message")]
    assert await _hits(store, "テスト") == [("cjk", 3, "message")]
    assert await _hits(store, "테스트") == [("cjk", 4, "message")]
    assert await _hits(store, "python") == await _hits(store, "Python写") == [("cjk", 5, "message")]
    assert await _hits(store, "程序 cafe") == [("cjk", 5, "message")]
    assert await _hits(store, "一个 测试") == [("cjk", 2, "message")]  # two terms, anywhere
    assert await _hits(store, '"这是 测试"') == []  # a phrase: in a row, and 一个 lies between
    assert await _hits(store, "试测") == []  # the characters in that order
    assert await _hits(store, "ストで") == [("cjk", 3, "message")]
    (hit,) = (await store.search("测试", session_id=sid, tag=None, order="newest", limit=1)).hits
    assert [hit.snippet[start:end] for start, end in hit.highlights] == ["测试"]
    assert "\x1f" not in hit.snippet
    (hit,) = (await store.search("ストで")).hits
    assert (hit.snippet, [hit.snippet[start:end] for start, end in hit.highlights]) == ("テストです", ["ストで"])


async def test_compatibility_forms_are_found_as_their_plain_letters(any_store: sessiondb.Store) -> None:
    """Fullwidth letters, ligatures, super- and subscripts: found by the text as written and by their NFKD form.

    The directory and :memory: stores found none of these (not even the exact stored text): queries
    were normalized (NFKD), SQLite's unicode61 indexed the raw text. Snippets show the text as written.
    """
    store = any_store
    sid = await store.create_session(session_id="compat")
    await store.append(sid, Message.user("ＡＰＩキーの設定"))  # 2
    await store.append(sid, Message.user("ＡＢＣ全角英字とＰｙｔｈｏｎ３"))  # 3
    await store.append(sid, Message.user("the ﬁnal report"))  # 4
    await store.append(sid, Message.user("water H₂O and x²"))  # 5
    await store.append(sid, Message.user("plain api, final and python3 h2o"))  # 6
    assert await _hits(store, "ＡＰＩ", order="newest") == await _hits(store, "api", order="newest")
    assert await _hits(store, "api", order="newest") == [("compat", 6, "message"), ("compat", 2, "message")]
    assert await _hits(store, "Ｐｙｔｈｏｎ３", order="newest") == [("compat", 6, "message"), ("compat", 3, "message")]
    assert await _hits(store, "python3", order="newest") == [("compat", 6, "message"), ("compat", 3, "message")]
    assert await _hits(store, "pyth*", order="newest") == [("compat", 6, "message"), ("compat", 3, "message")]
    assert await _hits(store, "ﬁnal", order="newest") == [("compat", 6, "message"), ("compat", 4, "message")]
    assert await _hits(store, "final", order="newest") == [("compat", 6, "message"), ("compat", 4, "message")]
    assert await _hits(store, "H₂O", order="newest") == [("compat", 6, "message"), ("compat", 5, "message")]
    assert await _hits(store, "x2") == await _hits(store, "x²") == [("compat", 5, "message")]
    assert await _hits(store, "ＡＰＩキー") == await _hits(store, '"api キ ー"') == [("compat", 2, "message")]
    for query, snippet, marked in (
        ("api", "ＡＰＩキーの設定", ["ＡＰＩ"]),
        ("final", "the ﬁnal report", ["ﬁnal"]),
        ("h2o", "water H₂O and x²", ["H₂O"]),
        ("python3", "ＡＢＣ全角英字とＰｙｔｈｏｎ３", ["Ｐｙｔｈｏｎ３"]),
    ):
        hit = (await store.search(query, order="newest")).hits[-1]
        assert hit.snippet.lstrip("…") in snippet  # the text as written (a window of it)
        assert [hit.snippet[start:end] for start, end in hit.highlights] == marked


async def test_a_unit_separator_in_text_stays_a_separator(any_store: sessiondb.Store) -> None:
    """SQLite's index marks CJK word edges with U+001F; the same character in the text is no mark of ours."""
    store = any_store
    sid = await store.create_session()
    await store.append(sid, Message.user("alpha\x1fbeta 测\x1f试"))
    (hit,) = (await store.search("beta")).hits
    assert hit.snippet in ("alpha beta 测 试", "alpha\x1fbeta 测\x1f试")
    assert await _hits(store, "alpha beta") == await _hits(store, "测试") == [(sid, 2, "message")]
