"""The viewer says what the store holds, the same as ``sessiondb ls`` and ``show``; turns count from 1; live
results sit beside their calls, as a reload shows them.

- An OpenAI Agents session holds items and a LangGraph thread checkpoints, not messages: the
  list, the session page, ``ls`` (table and ``--json``) and ``show`` all said "0 messages".
- The first turn was numbered 2 (the session's start made a turn of its own), and a page
  after the first started again at 1.
- A tool result arriving in the live tail stood apart from its call until a reload.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("jinja2")
import httpx
from starlette.testclient import TestClient
from tests.cli._helpers import run_in_process

import sessiondb
from sessiondb import Message, Store, Text, ToolUse, Usage
from sessiondb.integrations.openai_agents import SessionDBSession
from sessiondb.web import create_app

from . import _stores
from ._html import Page
from ._server import serving
from .test_live import sse


def _holds(page: Page) -> str:
    return page.by_id("contents").text


def _listed(page: Page, session_id: str) -> str:
    """The "holds" cell of a session's row on the list page."""
    (row,) = [node for node in page.nodes if node.tag == "tr" and session_id in node.text.split()]
    header = [node.text for node in page.nodes if node.tag == "th"]
    cells = [node for node in page.nodes if node.tag == "td" and node.text and node.text in row.text]
    assert "holds" in header, header
    return next(cell.text for cell in cells if cell.text.endswith(("items", "item", "checkpoints", "messages")))


async def _items(store: Store) -> int:
    return len(await SessionDBSession(_stores.OPENAI, store).get_items())


def test_integration_sessions_say_what_they_hold_everywhere(tmp_path: Path) -> None:
    path = tmp_path / "store"
    _stores.build(path)

    async def live_items() -> int:
        async with sessiondb.open_store(path) as store:
            return await _items(store)

    items = asyncio.run(live_items())
    assert items == 5
    with TestClient(create_app(str(path)), base_url="http://127.0.0.1") as client:
        assert _listed(Page(client.get("/").text), _stores.OPENAI) == "5 items"
        assert _holds(Page(client.get(f"/s/{_stores.OPENAI}").text)) == "5 items"
        # Time travel: as the session was after its first add_items (v2: started, then one item).
        assert _holds(Page(client.get(f"/s/{_stores.OPENAI}?v=2").text)) == "1 item"
        # A session of messages: the live context, as `ls` counts it; the page adds what was recorded.
        compacted = Page(client.get(f"/s/{_stores.COMPACTED}").text)
        assert _holds(compacted) == "6 messages" and "(13 recorded)" in compacted.by_id("viewing").text
    table = run_in_process("ls", str(path)).out.splitlines()
    assert table[0].split()[2] == "HOLDS"
    (row,) = [line for line in table if line.split()[0] == _stores.OPENAI]
    assert "5 items" in row
    rows = {row["session_id"]: row for row in json.loads(run_in_process("ls", str(path), "--json").out)}
    assert (rows[_stores.OPENAI]["item_count"], rows[_stores.OPENAI]["holds"]) == (5, "5 items")
    assert rows[_stores.CHAT]["holds"] == "5 messages"
    shown = run_in_process("show", str(path), _stores.OPENAI).out
    assert "5 items (an OpenAI Agents SDK session" in shown and "0 message(s)" not in shown


def test_a_memory_store_says_the_same() -> None:
    async def run() -> None:
        async with sessiondb.open_store(":memory:") as store:
            await _stores.write_openai(store)
            app = create_app(store)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://127.0.0.1") as client:
                assert _listed(Page((await client.get("/")).text), _stores.OPENAI) == "5 items"
                assert _holds(Page((await client.get(f"/s/{_stores.OPENAI}")).text)) == "5 items"

    asyncio.run(run())


def test_a_langgraph_thread_says_how_many_checkpoints(tmp_path: Path) -> None:
    pytest.importorskip("langgraph")
    from .test_langgraph import _build

    path = tmp_path / "store"
    _build(path)

    async def written() -> int:
        async with sessiondb.open_store(path) as store:
            events = [recorded.event async for recorded in store.read("lg~t-1")]
            return sum(1 for e in events if isinstance(e, sessiondb.Custom) and e.name == "langgraph.checkpoint")

    checkpoints = asyncio.run(written())
    assert checkpoints >= 4
    expected = f"{checkpoints} checkpoints"
    with TestClient(create_app(str(path)), base_url="http://127.0.0.1") as client:
        assert _listed(Page(client.get("/").text), "lg~t-1") == expected
        page = Page(client.get("/s/lg~t-1").text)
        assert _holds(page) == expected
        # The thread's first message is the first turn.
        assert [node.attrs["data-turn"] for node in page.by_class("turn")][:2] == ["0", "1"]
        assert "turn 1 · 80 in · 17 out" in page.text
        # The header and the side panel total what the turns show (the AIMessages' usage_metadata), and say
        # that it is not in the store's totals, which `ls` shows (0: the thread has no Message events).
        assert page.by_id("viewing").text.split("·")[-1].strip() == "97 tokens"
        assert page.by_id("reported-usage").text.startswith("97 tokens reported in the integration's messages")
    (row,) = [line for line in run_in_process("ls", str(path)).out.splitlines() if line.startswith("lg~t-1 ")]
    assert expected in row and row.split()[5] == "0"  # SESSION DATE TIME N checkpoints TOKENS
    assert f"{expected} (a LangGraph thread" in run_in_process("show", str(path), "lg~t-1").out


def _turns(page: Page) -> list[tuple[str, str]]:
    """(number, first entry's role) of each turn on a page."""
    out = []
    for turn in page.by_class("turn"):
        index = page.nodes.index(turn)
        first = next(node for node in page.nodes[index + 1 :] if "entry" in node.classes)
        role = next((c.removeprefix("role-") for c in first.classes if c.startswith("role-")), "notice")
        out.append((turn.attrs["data-turn"] or "", role))
    return out


def test_turns_count_from_one_for_every_kind_and_across_pages(tmp_path: Path) -> None:
    path = tmp_path / "store"
    claude = _stores.build(path)

    async def long_session() -> None:
        async with sessiondb.open_store(path) as store:
            await store.create_session(session_id="long")
            for n in range(1, 6):
                await store.append("long", Message.user(f"question {n}"))
                await store.append("long", Message.assistant(f"answer {n}", usage=Usage(n, 1)))

    asyncio.run(long_session())
    with TestClient(create_app(str(path)), base_url="http://127.0.0.1") as client:
        for session_id in (_stores.CHAT, _stores.OPENAI, claude, _stores.COMPACTED):
            turns = _turns(Page(client.get(f"/s/{session_id}").text))
            numbered = [number for number, role in turns if role == "user"]
            assert numbered[0] == "1", (session_id, turns)
            assert numbered == [str(n) for n in range(1, len(numbered) + 1)], (session_id, turns)
            assert all(number == "0" for number, role in turns[: turns.index((numbered[0], "user"))])
        chat = Page(client.get(f"/s/{_stores.CHAT}").text)
        assert "turn 1 · 320 in" in chat.text and "turn 2" not in chat.text.split("turn 1")[0]
    # Pages of 4 entries (the start, then question/answer pairs): numbering goes on from the pages before.
    with TestClient(create_app(str(path), page_size=4), base_url="http://127.0.0.1") as client:
        first = _turns(Page(client.get("/s/long?page=1").text))
        second = _turns(Page(client.get("/s/long?page=2").text))
        last = _turns(Page(client.get("/s/long?page=3").text))
    assert first == [("0", "notice"), ("1", "user"), ("2", "user")]
    assert second == [("2", "assistant"), ("3", "user"), ("4", "user")]
    assert last == [("4", "assistant"), ("5", "user")]


def _call(call_id: str) -> Message:
    return Message.assistant([Text("Running it."), ToolUse(call_id, "bash", '{"cmd": "ls"}')], usage=Usage(5, 2))


def test_a_live_result_goes_beside_its_call(tmp_path: Path) -> None:
    path = tmp_path / "store"

    async def append(*events: Any) -> int:
        async with sessiondb.open_store(path) as store:
            if await store.backend.info("tools") is None:
                await store.create_session(session_id="tools")
            return await store.append("tools", *events)

    version = asyncio.run(append(Message.user("list it"), _call("c1")))
    with serving(str(path)) as url, httpx.Client(base_url=url, timeout=30) as client:
        page = Page(client.get("/s/tools").text)
        (waiting,) = [node for node in page.nodes if node.attrs.get("data-pending") == "c1"]
        assert "no result recorded" in waiting.text
        with client.stream("GET", f"/s/tools/events?after={version}") as stream:
            sse_events = (e for e in sse(stream.iter_lines()) if e.get("event") in ("entry", "reload"))
            events = (e for e in sse_events if e.get("event") == "entry")
            asyncio.run(append(Message.tool_result("c1", "bash", "a.txt\nb.txt")))
            live = Page(next(events)["data"])
            # Only the result, marked for its call's place: no tool message of its own.
            (result,) = [node for node in live.nodes if node.attrs.get("data-result-for") == "c1"]
            assert "a.txt" in result.text and f"result · v{version + 1}" in result.text
            assert not live.by_class("entry")
            # A call that arrives live waits for its result there too (each event is a message of the stream).
            asyncio.run(append(_call("c2"), Message.tool_result("c2", "bash", "c.txt")))
            call = Page(next(events)["data"])
            assert [node for node in call.nodes if node.attrs.get("data-pending") == "c2"]
            # Its usage adds to the turn's: the turn's heading comes again, as a reload shows it.
            (head,) = [node for node in call.nodes if node.attrs.get("data-turn-head") == "1"]
            assert head.text.startswith("turn 1 · 10 in · 4 out")
            result = Page(next(events)["data"])
            assert [node.text for node in result.nodes if node.attrs.get("data-result-for") == "c2"]
            # A result whose call the page does not show stands alone, as a reload shows it.
            asyncio.run(append(Message.tool_result("elsewhere", "bash", "orphan")))
            alone = Page(next(events)["data"])
            assert "result of bash elsewhere" in alone.text
            # A compaction folds messages the page shows: the page is asked to reload.
            compaction = asyncio.run(append(sessiondb.Compacted("They listed files.", 2)))
            reload = next(e for e in sse_events if e.get("event") == "reload")
            assert reload["id"] == str(compaction)
        # The reload shows what the tail showed.
        reloaded = Page(client.get(f"/s/tools?v={version + 4}").text)
        tools = reloaded.by_class("tool")
        assert "a.txt" in tools[0].text and f"result · v{version + 1}" in tools[0].text
        assert not [node for node in reloaded.nodes if node.attrs.get("data-pending")]


def test_a_live_openai_output_goes_beside_its_function_call(tmp_path: Path) -> None:
    path = tmp_path / "store"

    async def add(items: list[dict[str, Any]]) -> None:
        async with sessiondb.open_store(path) as store:
            await SessionDBSession("agent", store).add_items(items)

    call = {"type": "function_call", "call_id": "fc", "name": "weather", "arguments": '{"city": "Oslo"}'}
    asyncio.run(add([{"role": "user", "content": "Weather?"}, call]))
    with serving(str(path)) as url, httpx.Client(base_url=url, timeout=30) as client:
        assert [n for n in Page(client.get("/s/agent").text).nodes if n.attrs.get("data-pending") == "fc"]
        with client.stream("GET", "/s/agent/events?after=2") as stream:
            events = (e for e in sse(stream.iter_lines()) if e.get("event") == "entry")
            asyncio.run(add([{"type": "function_call_output", "call_id": "fc", "output": "3C"}]))
            live = Page(next(events)["data"])
            (result,) = [node for node in live.nodes if node.attrs.get("data-result-for") == "fc"]
            assert "3C" in result.text and not live.by_class("entry")
