"""The viewer over a PostgreSQL store: every page, and the live tail of what another process appends."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

import pytest

pytest.importorskip("jinja2")
import httpx
from starlette.testclient import TestClient

import sessiondb
from sessiondb import Message
from sessiondb.web import create_app

from . import _stores
from ._html import Page
from ._server import serving
from .test_live import sse

pytestmark = pytest.mark.postgres


def test_pages_over_postgres(pg_url: str) -> None:
    claude = _stores.build(pg_url)
    with TestClient(create_app(pg_url), base_url="http://127.0.0.1") as client:
        listing = Page(client.get("/").text)
        assert _stores.CHAT in listing.text and claude in listing.text
        chat = Page(client.get(f"/s/{_stores.CHAT}").text)
        assert _stores.HOSTILE in chat.text and chat.by_class("tool") and not chat.tags("img")
        fork = Page(client.get(f"/s/{_stores.FORK}").text)
        assert "A different question on the fork." in fork.text and "What is in the repository?" in fork.text
        (removed,) = Page(client.get(f"/s/{_stores.COMPACTED}").text).by_class("removed")
        assert "question 1" in removed.text
        assert "Two files: CLAUDE.md and main.py." in Page(client.get(f"/s/{quote(claude, safe='')}").text).text
        assert "Let me look." not in Page(client.get(f"/s/{_stores.CHAT}?v=2").text).text
        assert client.get("/s/nope").status_code == 404
        # Labels come from PostgreSQL's own columns and indexes.
        tagged = Page(client.get("/?tag=demo").text)
        assert _stores.TITLE in tagged.text and _stores.OPENAI not in tagged.text
        assert "First title" in Page(client.get(f"/s/{_stores.CHAT}?v=7").text).text
        found = Page(client.get("/?q=repository").text)  # PostgreSQL's own text search
        assert {node.text.lower() for node in found.nodes if node.tag == "mark"} == {"repository"}
        assert not found.tags("img")


def test_live_tail_over_postgres(pg_url: str) -> None:
    async def create() -> None:
        async with sessiondb.open_store(pg_url) as store:
            await store.create_session(session_id="live")

    async def append(text: str) -> int:
        async with sessiondb.open_store(pg_url) as store:
            return await store.append("live", Message.user(text))

    asyncio.run(create())
    with (
        serving(pg_url) as url,
        httpx.Client(base_url=url, timeout=60) as client,
        client.stream("GET", "/s/live/events?after=1") as stream,
    ):
        events = (e for e in sse(stream.iter_lines()) if e.get("event") == "entry")
        for n in range(3):
            assert asyncio.run(append(f"from another process {n}")) == n + 2
            event = next(events)
            assert event["id"] == str(n + 2) and f"from another process {n}" in Page(event["data"]).text
