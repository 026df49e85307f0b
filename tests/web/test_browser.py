"""What a person sees, in a real headless Chromium (Debian's, driven by Playwright), against a real server.

Locally these tests skip when Chromium or Playwright is missing; CI sets
SESSIONDB_REQUIRE_BROWSER=1 (``.ci/run`` installs chromium), and then a missing
browser fails them. Screenshots go to the test's tmp directory; with
SESSIONDB_UPDATE_SCREENSHOT=1 the session page's is also written to docs/images/viewer.png.
"""

from __future__ import annotations

import concurrent.futures
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from . import _stores
from ._server import Writer, serving

REQUIRED = os.environ.get("SESSIONDB_REQUIRE_BROWSER") == "1"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "images" / "viewer.png"


def _missing(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"{reason}, and SESSIONDB_REQUIRE_BROWSER=1 says the browser tests must run", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install -e '.[dev]')")
    executable = shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(executable):
        _missing("Debian's chromium is not installed (apt-get install -y chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    store = tmp_path_factory.mktemp("browser") / "store"
    # In a thread: Playwright's sync API keeps an event loop running on this one.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(_stores.build, store).result()
    with serving("store", cwd=store.parent) as url:  # the header shows "store", not a temporary path
        yield url, store


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    problems: list[str] = []
    # A dialog would mean hostile text ran; a console error, e.g. a CSP refusal of our own inline script.
    opened.on("dialog", lambda dialog: (problems.append(f"dialog: {dialog.message}"), dialog.dismiss()))
    opened.on(
        "console", lambda msg: problems.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None
    )
    opened.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    opened.problems = problems
    yield opened
    context.close()
    assert not problems, problems


def test_list_then_session(page: Any, site: tuple[str, Path], tmp_path: Path) -> None:
    url, _store = site
    page.goto(url)
    first_column = page.locator("table.sessions tr td:first-child")
    for sid in (_stores.FORK, _stores.COMPACTED, _stores.OPENAI):
        assert first_column.get_by_role("link", name=sid, exact=True).is_visible()
    # A titled session is listed by its title (hostile text and all, as text), its id beneath.
    titled = first_column.get_by_role("link", name="Repository tour", exact=False)
    assert titled.is_visible() and first_column.get_by_text(_stores.CHAT, exact=True).is_visible()
    assert page.get_by_text("demo", exact=True).is_visible()
    page.screenshot(path=tmp_path / "list.png", full_page=True)
    titled.click()
    page.wait_for_url(f"**/s/{_stores.CHAT}")
    assert page.get_by_text("Two entries: README.md and src/.").is_visible()
    # The hostile message is shown as text (no dialog opened: checked by the fixture).
    assert page.get_by_text("What is in the repository?", exact=False).first.is_visible()
    assert page.locator("img").count() == 0
    # Thinking is folded until clicked.
    thinking = page.locator("details.thinking").first
    assert not thinking.get_by_text("I should list the files first.").is_visible()
    thinking.locator("summary").click()
    assert thinking.get_by_text("I should list the files first.").is_visible()
    # The tool call and its result sit side by side.
    call = page.locator(".tool .call").first.bounding_box()
    result = page.locator(".tool .result").first.bounding_box()
    assert result["x"] > call["x"] + call["width"] - 1 and abs(result["y"] - call["y"]) < 5
    assert page.locator(".tool .result").first.get_by_text("README.md", exact=False).is_visible()
    page.screenshot(path=tmp_path / "session.png", full_page=True)
    if os.environ.get("SESSIONDB_UPDATE_SCREENSHOT") == "1":
        DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
        page.screenshot(path=DOCS_SCREENSHOT)


def test_fork_tree_and_version_picker(page: Any, site: tuple[str, Path], tmp_path: Path) -> None:
    url, _store = site
    page.goto(f"{url}s/{_stores.CHAT}")
    page.locator("#fork-tree").get_by_role("link", name=_stores.FORK).click()
    page.wait_for_url(f"**/s/{_stores.FORK}")
    assert page.get_by_text("A different question on the fork.").is_visible()
    assert page.get_by_text("What is in the repository?", exact=False).first.is_visible()  # shared history
    page.screenshot(path=tmp_path / "fork.png", full_page=True)
    # "Forked from chat at v5": one click back to the parent as it was at the fork point.
    page.locator(".entry.notice", has_text="Forked from").get_by_role("link", name=_stores.CHAT).click()
    page.wait_for_url(f"**/s/{_stores.CHAT}?v=5")
    assert page.get_by_text("as it was at v5").is_visible()
    page.fill("#version-input", "2")
    page.get_by_role("button", name="Go").click()
    page.wait_for_url(f"**/s/{_stores.CHAT}?v=2")
    assert page.get_by_text("What is in the repository?", exact=False).first.is_visible()
    assert page.get_by_text("Let me look.").count() == 0


def test_compaction_hides_removed_messages_until_expanded(page: Any, site: tuple[str, Path], tmp_path: Path) -> None:
    url, _store = site
    page.goto(f"{url}s/{_stores.COMPACTED}")
    assert page.get_by_text("They asked four questions.", exact=False).is_visible()
    removed = page.locator("details.removed")
    assert not removed.get_by_text("question 1", exact=True).is_visible()
    assert page.get_by_text("question 5", exact=True).is_visible()
    removed.locator("summary").click()
    assert removed.get_by_text("question 1", exact=True).is_visible()
    assert removed.get_by_text("answer 4", exact=True).is_visible()
    page.screenshot(path=tmp_path / "compacted.png", full_page=True)


def test_integration_sessions_read_as_conversations(page: Any, site: tuple[str, Path], tmp_path: Path) -> None:
    url, _store = site
    page.goto(f"{url}s/{_stores.OPENAI}")
    assert page.get_by_text("It is 18C and sunny in Paris.").is_visible()
    assert page.locator(".tool .call").get_by_text("get_weather").is_visible()
    assert page.locator(".tool .result").get_by_text("18C and sunny").is_visible()
    assert page.get_by_text("function_call", exact=False).count() == 0
    page.screenshot(path=tmp_path / "openai.png", full_page=True)


def test_live_tail_shows_another_process_appending(page: Any, site: tuple[str, Path], tmp_path: Path) -> None:
    url, store = site
    writer = Writer(store)  # creates session "live"
    try:
        page.goto(f"{url}s/live")
        page.wait_for_function("document.getElementById('live-status') !== null")
        assert writer.ask("append appended while you watch") == "ok 2"
        page.get_by_text("appended while you watch").wait_for(timeout=15_000)
        assert page.get_by_text("last: v2").is_visible()
        page.screenshot(path=tmp_path / "live.png", full_page=True)
    finally:
        writer.close()


def test_search_then_open_a_hit(page: Any, site: tuple[str, Path], tmp_path: Path) -> None:
    url, _store = site
    page.goto(url)
    page.fill("input[name=q]", "sunny")
    page.locator("form.filters button").click()
    page.wait_for_url("**/?q=sunny*")
    marks = page.locator("td.snippet mark")
    assert marks.count() >= 1 and marks.first.inner_text().lower() == "sunny"
    page.screenshot(path=tmp_path / "search.png", full_page=True)
    page.locator("table.hits a[href*='?v=']").first.click()
    page.wait_for_url(f"**/s/{_stores.OPENAI}?v=*")
    assert page.get_by_text("sunny", exact=False).first.is_visible()


def test_live_result_sits_beside_its_call_and_deletion_is_said(page: Any, site: tuple[str, Path]) -> None:
    """What arrives live is placed as a reload places it; the session's deletion is said with its version."""
    import asyncio

    from sessiondb import Message, Text, ToolUse, Usage, open_store

    url, store = site

    def append(*events: Any) -> int:
        async def run() -> int:
            async with open_store(store) as opened:
                if await opened.backend.info("watched") is None:
                    await opened.create_session(session_id="watched")
                return await opened.append("watched", *events)

        # In a thread: Playwright's sync API keeps an event loop running on this one.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, run()).result()

    def delete() -> None:
        async def run() -> None:
            async with open_store(store) as opened:
                await opened.delete_session("watched")

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, run()).result()

    call = Message.assistant([Text("Listing."), ToolUse("w1", "bash", '{"cmd": "ls"}')], usage=Usage(7, 3))
    version = append(Message.user("what is here?"), call)
    page.goto(f"{url}s/watched")
    page.wait_for_function("document.getElementById('live-status') !== null")
    assert page.locator(".result.pending").count() == 1
    append(Message.tool_result("w1", "bash", "notes.txt"))
    page.locator(".tool .result").get_by_text("notes.txt").wait_for(timeout=15_000)
    assert page.locator(".result.pending").count() == 0
    tool = page.locator(".tool").filter(has_text="notes.txt")
    assert tool.count() == 1 and tool.get_by_text("bash", exact=True).is_visible()
    call_box = tool.locator(".call").bounding_box()
    result_box = tool.locator(".result").bounding_box()
    assert result_box["x"] > call_box["x"] + call_box["width"] - 1 and abs(result_box["y"] - call_box["y"]) < 5
    assert tool.locator(".result").get_by_text(f"result · v{version + 1}").is_visible()
    # A user message arriving live starts the next turn.
    append(Message.user("and now?"))
    page.get_by_text("and now?").wait_for(timeout=15_000)
    turns = page.locator("#timeline > .turn")
    assert [turns.nth(i).get_attribute("data-turn") for i in range(turns.count())] == ["0", "1", "2"]
    assert turns.nth(2).get_by_text("and now?").is_visible()
    append(Message.assistant("Still notes.txt.", usage=Usage(3, 1)))
    page.get_by_text("turn 2 · 3 in · 1 out").wait_for(timeout=15_000)
    assert page.get_by_text("turn 1 · 7 in · 3 out").is_visible()
    delete()
    page.get_by_text(f"The session was deleted at v{version + 4}").wait_for(timeout=15_000)
    page.reload()
    # The page's own status (410 Gone) is the one console error Chromium logs; nothing else is.
    assert page.problems == ["console error: Failed to load resource: the server responded with a status of 410 (Gone)"]
    page.problems.clear()
    assert page.get_by_role("heading", name="Session deleted").is_visible()
    assert page.get_by_text(f"Session 'watched' was deleted at v{version + 4}", exact=False).is_visible()
