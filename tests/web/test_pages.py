"""Every page of the viewer through the ASGI test client: content, escaping, time travel, forks, paging, errors."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

pytest.importorskip("jinja2")
from starlette.testclient import TestClient

from sessiondb import InvalidInputError
from sessiondb.web import create_app

from . import _stores
from ._html import Page


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("viewer") / "store"
    claude = _stores.build(path)
    return path, claude


@pytest.fixture
def client(built: tuple[Path, str]) -> Iterator[TestClient]:
    with TestClient(create_app(str(built[0])), base_url="http://127.0.0.1") as opened:
        yield opened


def page(client: TestClient, url: str, status: int = 200) -> Page:
    response = client.get(url)
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"].startswith("text/html")
    return Page(response.text)


def session(client: TestClient, sid: str, query: str = "", status: int = 200) -> Page:
    return page(client, f"/s/{quote(sid, safe='')}{query}", status)


def test_list_shows_every_session_with_counts(client: TestClient, built: tuple[Path, str]) -> None:
    listing = page(client, "/")
    for sid in (_stores.CHAT, _stores.FORK, _stores.COMPACTED, _stores.OPENAI, built[1]):
        assert sid in listing.text
        assert f"/s/{quote(sid, safe='')}" in [a.get("href") for a in listing.tags("a")]
    assert "model-<b>1</b>" in listing.text  # escaped, so shown as typed
    assert not listing.tags("b") or all("model" not in str(b) for b in listing.tags("b"))


def test_list_pages_with_a_cursor_and_sorts(client: TestClient) -> None:
    seen: list[str] = []
    url: str | None = "/?limit=2&sort=created"
    pages = 0
    while url is not None:
        listing = client.get(url)
        assert listing.status_code == 200
        rows = re.findall(r'<td><a href="/s/([^"?]+)"', listing.text)
        assert 1 <= len(rows) <= 2
        seen += rows
        found = re.search(r'<a rel="next" href="([^"]+)"', listing.text)
        url = found.group(1).replace("&amp;", "&") if found else None
        pages += 1
    assert pages == 3 and len(seen) == 5 == len(set(seen))
    for sort in ("updated", "created", "version", "title"):
        assert client.get(f"/?sort={sort}").status_code == 200


@pytest.mark.parametrize(
    "query", ["?sort=nope", "?limit=0", "?limit=-3", "?limit=x", "?limit=100000", "?cursor=zzz", "?cursor=-5"]
)
def test_list_refuses_bad_parameters(client: TestClient, query: str) -> None:
    response = client.get("/" + query)
    assert response.status_code == 400
    assert "Bad request" in Page(response.text).text


def test_list_filters_by_title_tag_scope_and_pin(client: TestClient) -> None:
    rows = re.compile(r'<td><a href="/s/([^"?]+)"')
    for query in ("?title=REPOSITORY", "?tag=demo", "?pinned=yes"):
        assert rows.findall(client.get("/" + query).text) == [_stores.CHAT], query
    assert rows.findall(client.get("/?tag=tools").text) == []  # removed again at v10
    assert _stores.CHAT not in rows.findall(client.get("/?pinned=no").text)
    # A fork keeps its parent's scope: both are listed under it, oldest first when asked.
    scoped = rows.findall(client.get("/?scope=" + quote(_stores.SCOPE) + "&sort=created").text)
    assert scoped == [_stores.FORK, _stores.CHAT]
    listing = page(client, "/")
    assert _stores.TITLE in listing.text and _stores.SCOPE in listing.text
    assert client.get("/?pinned=maybe").status_code == 400


def test_session_page_shows_the_conversation(client: TestClient) -> None:
    chat = session(client, _stores.CHAT)
    text = chat.text
    assert "What is in the repository?" in text and "Two entries: README.md and src/." in text
    # Thinking is folded: inside a <details> without "open".
    html = client.get(f"/s/{_stores.CHAT}").text
    (thinking,) = chat.by_class("thinking")
    assert thinking.tag == "details" and "open" not in thinking.attrs
    assert "I should list the files first." in thinking.text
    # The tool call and its result share one .tool box; the tool message is not repeated on its own.
    (tool,) = chat.by_class("tool")
    assert "list_files" in tool.text and "README.md" in tool.text
    assert html.count("README.md\nsrc/") == 1
    # Usage per model call, per turn and in total (120+200 in, 30+12 out, 50 cache read).
    assert "120 in · 30 out · 50 cache read" in text
    assert "320 in · 42 out · 50 cache read" in text
    assert re.search(r"<dt>input</dt><dd>320</dd>", html) and re.search(r"<dt>cache read</dt><dd>50</dd>", html)


def test_hostile_text_is_shown_never_run(client: TestClient) -> None:
    for sid in (_stores.CHAT, _stores.COMPACTED):
        response = client.get(f"/s/{sid}")
        chat = Page(response.text)
        assert _stores.HOSTILE in chat.text
        assert not chat.tags("img") and not chat.tags("textarea")
        assert not chat.has_attribute_starting("onerror")
        nonce = re.search(r"'nonce-([^']+)'", response.headers["content-security-policy"])
        assert nonce is not None
        scripts = chat.tags("script")
        assert len(scripts) == 1 and scripts[0].get("nonce") == nonce.group(1)
        assert "alert" not in "".join(chat.script_bodies)
        assert "model-<b>1</b>" in chat.text or sid != _stores.CHAT
    export_like = client.get(f"/s/{_stores.FORK}")
    assert "try-<other>" in Page(export_like.text).text  # the branch name, escaped in the fork tree


def test_time_travel_shows_the_session_as_it_was(client: TestClient) -> None:
    early = session(client, _stores.CHAT, "?v=2")
    assert "What is in the repository?" in early.text
    assert "Let me look." not in early.text and "Thanks." not in early.text
    assert "as it was at v2" in early.text
    assert not early.tags("script")  # no live tail on an old version
    empty = session(client, _stores.CHAT, "?v=0")
    assert "No events at this version." in empty.text
    latest = session(client, _stores.CHAT, "?v=11")
    assert "Thanks." in latest.text and "(latest)" in latest.text


def test_time_travel_shows_the_labels_as_they_were(client: TestClient) -> None:
    before = session(client, _stores.CHAT, "?v=6")
    assert before.tags("h1")[0] is not None and before.by_class("tag") == []
    assert before.nodes[[n.tag for n in before.nodes].index("h1")].text == _stores.CHAT
    first = session(client, _stores.CHAT, "?v=7")
    assert first.nodes[[n.tag for n in first.nodes].index("h1")].text == "First title"
    tagged = session(client, _stores.CHAT, "?v=9")
    assert sorted(node.text for node in tagged.by_class("tag")) == ["demo", "tools"]
    latest = session(client, _stores.CHAT)
    assert latest.nodes[[n.tag for n in latest.nodes].index("h1")].text == " ".join(_stores.TITLE.split())
    assert [node.text for node in latest.by_class("tag")] == ["demo"] and "pinned" in latest.text
    labels = [node.text for node in latest.by_class("label-change")]
    assert labels[0].endswith("title set to \u201cFirst title\u201d")
    assert any(text.endswith("tags +demo +tools") for text in labels)
    assert any(text.endswith("tags \u2212tools") for text in labels)
    assert labels[-1].endswith("pinned")
    fork = session(client, _stores.FORK)
    assert not fork.by_class("tag") and "First title" not in fork.text  # a fork starts without labels


@pytest.mark.parametrize(
    ("query", "status"), [("?v=x", 400), ("?v=-1", 400), ("?v=12", 404), ("?v=1.5", 400), ("?v=", 400)]
)
def test_bad_versions(client: TestClient, query: str, status: int) -> None:
    response = client.get(f"/s/{_stores.CHAT}{query}")
    assert response.status_code == status
    assert "v=" not in Page(response.text).text or status == 400


@pytest.mark.parametrize("sid", ["nope", "a" * 300, "%00", "a b", "<script>"])
def test_unknown_sessions_are_404(client: TestClient, sid: str) -> None:
    response = client.get(f"/s/{quote(sid, safe='')}")
    assert response.status_code == 404
    assert "No such session" in Page(response.text).text
    assert "<script>" not in response.text.replace("&lt;script&gt;", "")


def test_fork_page_shows_shared_history_and_the_tree(client: TestClient) -> None:
    fork = client.get(f"/s/{_stores.FORK}").text
    text = Page(fork).text
    assert "What is in the repository?" in text  # the parent's history up to the fork point
    assert "A different question on the fork." in text
    assert f'href="/s/{_stores.CHAT}?v=5"' in fork  # "forked from chat at v5", one click away
    tree = re.search(r'<div class="box" id="fork-tree">(.*?)</aside>', fork, re.S)
    assert tree is not None and f'href="/s/{_stores.CHAT}"' in tree.group(1)
    parent_tree = re.search(
        r'<div class="box" id="fork-tree">(.*?)</aside>', client.get(f"/s/{_stores.CHAT}").text, re.S
    )
    assert parent_tree is not None and f'href="/s/{_stores.FORK}"' in parent_tree.group(1)


def test_compaction_keeps_removed_messages_behind_its_summary(client: TestClient) -> None:
    compacted = session(client, _stores.COMPACTED)
    (section,) = compacted.by_class("compaction")
    (folded,) = compacted.by_class("removed")
    assert folded.tag == "details" and "open" not in folded.attrs
    for n in range(1, 5):
        assert f"question {n}" in folded.text and f"answer {n}" in folded.text
    assert "Show the 8 removed messages (v2\u2013v9)" in folded.text
    assert "They asked four questions." in section.text
    timeline = compacted.by_id("timeline").text
    outside = timeline.replace(section.text, "")
    assert "question 1 " not in outside and "question 5" in outside and "question 7" in outside


def test_paging_a_long_session(tmp_path: Path) -> None:
    import asyncio

    import sessiondb
    from sessiondb import Message

    async def write() -> None:
        async with sessiondb.open_store(tmp_path / "s") as store:
            await store.create_session(session_id="long")
            await store.append("long", *[Message.user(f"m{n:03}") for n in range(25)])

    asyncio.run(write())
    with TestClient(create_app(str(tmp_path / "s"), page_size=10), base_url="http://127.0.0.1") as client:
        last = session(client, "long")  # 26 entries (the start and 25 messages): the last page by default
        assert "page 3 of 3" in last.text and "m024" in last.text and "m015" not in last.text
        assert last.tags("script")  # the live tail runs on the newest page only
        first = session(client, "long", "?page=1")
        assert "m000" in first.text and "m009" not in first.text and not first.tags("script")
        assert "m024" in session(client, "long", "?page=99").text  # past the end: the last page
        for bad in ("?page=0", "?page=-1", "?page=x"):
            assert client.get(f"/s/long{bad}").status_code == 400


def test_openai_agents_session_reads_as_a_conversation(client: TestClient) -> None:
    openai = session(client, _stores.OPENAI)
    text = openai.text
    assert "Weather in Paris?" in text and "It is 18C and sunny in Paris." in text
    (thinking,) = openai.by_class("thinking")
    assert "Call the weather tool." in thinking.text
    (tool,) = openai.by_class("tool")
    assert "get_weather" in tool.text and '"city": "Paris"' in tool.text and "18C and sunny" in tool.text
    assert "function_call" not in text and "output_text" not in text  # not raw JSON
    assert "OpenAI Agents" in text


def test_claude_code_session_reads_as_a_conversation(client: TestClient, built: tuple[Path, str]) -> None:
    claude = session(client, built[1])
    text = claude.text
    assert "List it" in text and "Two files: CLAUDE.md and main.py." in text
    (thinking,) = claude.by_class("thinking")
    assert "Use Bash to list." in thinking.text
    (tool,) = claude.by_class("tool")
    assert "Bash" in tool.text and "ls -a" in tool.text and "CLAUDE.md main.py" in tool.text
    assert "Hook ran fine" in text
    timeline = claude.by_id("timeline")
    visible = timeline.text.replace(" ".join(n.text for n in claude.by_class("raw")), "")
    assert "parentUuid" not in visible and "tool_use" not in visible  # entries read as a conversation
    assert "Claude Code: project -home-me-proj, session 5f1c0a2e-claude" in text
    assert "100 in · 20 out" in text  # the two responses' usage, each counted once


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_nothing_writes(client: TestClient, method: str) -> None:
    for url in ("/", f"/s/{_stores.CHAT}", f"/s/{_stores.CHAT}/events"):
        assert client.request(method, url).status_code == 405
    head = client.head(f"/s/{_stores.CHAT}")
    assert head.status_code == 200 and head.content == b""


def test_security_headers(client: TestClient) -> None:
    response = client.get("/")
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"


def test_other_host_names_are_refused(built: tuple[Path, str]) -> None:
    with TestClient(create_app(str(built[0])), base_url="http://attacker.example") as client:
        assert client.get("/").status_code == 400
    with TestClient(create_app(str(built[0])), base_url="http://localhost:8765") as client:
        assert client.get("/").status_code == 200
    with TestClient(create_app(str(built[0])), base_url="http://127.0.0.2:8765") as client:
        assert client.get("/").status_code == 400  # another loopback address is only accepted when bound to


@pytest.mark.parametrize(("host", "url"), [("127.0.0.2", "http://127.0.0.2:8765"), ("::1", "http://[::1]:8765")])
def test_the_bound_loopback_address_is_an_accepted_host(built: tuple[Path, str], host: str, url: str) -> None:
    with TestClient(create_app(str(built[0]), host=host), base_url=url) as client:
        assert client.get("/").status_code == 200
    with TestClient(create_app(str(built[0]), host=host), base_url="http://attacker.example") as client:
        assert client.get("/").status_code == 400


@pytest.mark.parametrize(
    "token",
    [
        "t\u00f6ken" + "\u0442\u043e\u043a\u0435\u043d" + "tokentoken",
        "token with a space 0",
        "token;Path=/x0123456",
        'token"quoted"0123456',
    ],
)
def test_tokens_that_do_not_fit_a_url_and_a_cookie_are_refused(built: tuple[Path, str], token: str) -> None:
    with pytest.raises(InvalidInputError, match=re.escape("A-Z a-z, digits and - _ . ~")):
        create_app(str(built[0]), token=token)


def test_token_is_required_when_set(built: tuple[Path, str]) -> None:
    token = "t0ken-" + "x" * 20
    app = create_app(str(built[0]), token=token, allow_any_host=True)
    with TestClient(app, base_url="http://192.0.2.1") as client:
        assert client.get("/").status_code == 401
        assert client.get(f"/s/{_stores.CHAT}").status_code == 401
        assert client.get("/?token=wrong").status_code == 401
        assert client.get("/", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        first = client.get(f"/s/{_stores.CHAT}?v=2&token={token}", follow_redirects=False)
        assert first.status_code == 303 and first.headers["location"] == f"/s/{_stores.CHAT}?v=2"
        assert "HttpOnly" in first.headers["set-cookie"] and "SameSite=Strict" in first.headers["set-cookie"]
        assert client.get(f"/s/{_stores.CHAT}").status_code == 200  # the cookie now
        client.cookies.clear()
        assert client.get("/").status_code == 401


def test_the_header_never_shows_a_database_password() -> None:
    from sessiondb.web._app import _label

    assert _label("postgresql://app:s3cret@db.example:5432/sessions") == "postgresql://app@db.example:5432/sessions"
    assert _label("postgresql://app@db/sessions") == "postgresql://app@db/sessions"
    assert _label("/data/store") == "/data/store"


@pytest.mark.parametrize(
    ("url", "status"), [("/s/nope/events", 404), ("/s/chat/events?after=x", 400), ("/s/chat/events?after=-1", 400)]
)
def test_event_stream_refusals(client: TestClient, url: str, status: int) -> None:
    assert client.get(url).status_code == status


def test_an_event_stream_past_the_sessions_version_is_refused(client: TestClient) -> None:
    response = client.get(f"/s/{_stores.CHAT}/events?after=99999")  # it used to wait forever with a 200
    assert response.status_code == 400
    assert "is at v11" in Page(response.text).text and "after=99999" in Page(response.text).text


def test_search_results_do_not_pretend_to_apply_list_controls(client: TestClient) -> None:
    listing = Page(client.get("/").text)
    assert listing.tags("input") and any(t.get("name") == "title" for t in listing.tags("input"))
    response = client.get("/?q=onerror&title=zzz&pinned=yes&sort=title")
    assert response.status_code == 200
    results = Page(response.text)
    assert results.by_class("snippet")  # the hits are shown, not filtered by a title no session has
    assert not [t for t in results.tags("input") if t.get("name") == "title"]
    assert not [t for t in results.tags("select") if t.get("name") in ("pinned", "sort")]
    note = results.by_id("ignored").text
    assert "title, pinned, sort" in note and "session list" in note
    plain = client.get("/?q=onerror&title=&pinned=&sort=updated")  # what the list's own form sends
    assert 'id="ignored"' not in plain.text and Page(plain.text).by_class("snippet")


@pytest.mark.parametrize("query", ["?cursor=garbage", "?q=question&cursor=garbage"])
def test_a_damaged_page_link_says_so_in_the_pages_words(client: TestClient, query: str) -> None:
    response = client.get("/" + query)
    assert response.status_code == 400
    text = Page(response.text).text
    assert "This page link is out of date or damaged; start from the first page." in text
    assert "next_cursor" not in text and "page_sessions" not in text


def test_search_marks_matches_and_escapes_the_rest(client: TestClient) -> None:
    response = client.get("/?q=onerror")
    assert response.status_code == 200
    results = Page(response.text)
    snippets = results.by_class("snippet")
    assert snippets and all("onerror" in node.text for node in snippets)
    assert not results.tags("img") and not results.has_attribute_starting("onerror")
    marks = [node.text for node in results.nodes if node.tag == "mark"]
    assert marks and set(marks) == {"onerror"}
    links = [a.get("href") for a in results.tags("a")]
    assert f"/s/{_stores.CHAT}?v=2#v2" in links  # a hit links to the session as it was at that event


def test_search_within_one_session_pages_with_a_cursor(client: TestClient) -> None:
    seen: list[str] = []
    url: str | None = f"/?q=question&session={_stores.COMPACTED}&limit=3&order=newest"
    while url is not None:
        response = client.get(url)
        assert response.status_code == 200
        page_ = Page(response.text)
        seen += [node.text for node in page_.by_class("snippet")]
        found = re.search(r'<a rel="next" href="([^"]+)"', response.text)
        url = found.group(1).replace("&amp;", "&") if found else None
    assert seen == [f"question {n}" for n in range(7, 0, -1)]  # newest first, every one once


@pytest.mark.parametrize("query", ['?q="', "?q=***", "?q=x&order=bogus", "?q=x&cursor=nonsense", "?q=x&session=nope"])
def test_bad_searches(client: TestClient, query: str) -> None:
    assert client.get("/" + query).status_code in (400, 404)
