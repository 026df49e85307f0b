"""The live tail for real: uvicorn serving a directory store while another process appends to it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("jinja2")
import httpx

import sessiondb
from sessiondb import Message

from ._html import Page
from ._server import Writer, serving
from ._stores import HOSTILE


def sse(lines: Iterator[str]) -> Iterator[dict[str, str]]:
    """Server-sent events as dicts of their fields (data lines joined by newlines)."""
    event: dict[str, str] = {}
    for line in lines:
        if not line:
            if event:
                yield event
            event = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        event[name] = event[name] + "\n" + value if name in event and name == "data" else value


def _create(path: Path) -> None:
    async def create() -> None:
        async with sessiondb.open_store(path) as store:
            await store.create_session(session_id="live", model="writer")
            await store.append("live", Message.user("before the server started"))

    asyncio.run(create())


def test_live_tail_streams_what_another_process_appends(tmp_path: Path) -> None:
    store = tmp_path / "store"
    _create(store)
    with serving(str(store)) as url:
        writer = Writer(store)
        try:
            with httpx.Client(base_url=url, timeout=30) as client:
                page = Page(client.get("/s/live").text)
                assert "before the server started" in page.text and page.tags("script")
                with client.stream("GET", "/s/live/events?after=2") as stream:
                    assert stream.headers["content-type"].startswith("text/event-stream")
                    events = sse(stream.iter_lines())
                    for n in range(1, 6):
                        assert writer.ask(f"append live message {n} {HOSTILE}") == f"ok {n + 2}"
                        event = next(events)
                        while event.get("event") != "entry":
                            event = next(events)
                        assert event["id"] == str(n + 2)
                        shown = Page(event["data"])
                        assert f"live message {n} {HOSTILE}" in shown.text
                        assert not shown.tags("img") and not shown.tags("script")
                    assert writer.ask("delete live") == "ok"
                    gone = next(events)
                    assert gone["event"] == "gone" and gone["id"] == "8"
                # A page read after the appends returned shows them (the read-only store follows the log).
                # Deleted: the page, a version of it, a search in it and a new live tail all say so, naming the version.
                for path in ("/s/live", "/s/live?v=3", "/?q=live&session=live"):
                    deleted = client.get(path)
                    assert deleted.status_code == 410, path
                    assert "Session 'live' was deleted at v8" in Page(deleted.text).text, path
                with client.stream("GET", "/s/live/events?after=2") as stream:
                    assert stream.status_code == 200
                    assert [(e["event"], e["id"]) for e in sse(stream.iter_lines())] == [("gone", "8")]
                assert client.get("/s/never-was").status_code == 404
                listing = Page(client.get("/").text)
                assert "live" not in listing.text.split("session model")[-1].split()
        finally:
            writer.close()


def test_reconnecting_browser_resumes_after_last_event_id(tmp_path: Path) -> None:
    store = tmp_path / "store"
    _create(store)
    with serving(str(store)) as url:
        writer = Writer(store)
        try:
            for n in range(3):
                assert writer.ask(f"append m{n}") == f"ok {n + 3}"
            with (
                httpx.Client(base_url=url, timeout=30) as client,
                client.stream("GET", "/s/live/events?after=0", headers={"Last-Event-ID": "3"}) as stream,
            ):
                events = (e for e in sse(stream.iter_lines()) if e.get("event") == "entry")
                assert [next(events)["id"] for _ in range(2)] == ["4", "5"]
        finally:
            writer.close()


def test_pages_follow_a_store_another_process_writes(tmp_path: Path) -> None:
    """Through the ASGI test client: each page read after another process's append returned shows it."""
    from starlette.testclient import TestClient

    from sessiondb.web import create_app

    store = tmp_path / "store"
    _create(store)
    writer = Writer(store)
    try:
        with TestClient(create_app(str(store)), base_url="http://127.0.0.1") as client:
            for n in range(3):
                assert writer.ask(f"append written beside the viewer {n}") == f"ok {n + 3}"
                page = Page(client.get("/s/live").text)
                assert f"written beside the viewer {n}" in page.text and f"Version {n + 3} (latest)" in page.text
            assert writer.ask("create another") == "ok"
            assert "another" in Page(client.get("/").text).text
            assert client.get("/s/live?v=3").status_code == 200
    finally:
        writer.close()


def test_an_idle_stream_sends_keepalive_comments(tmp_path: Path) -> None:
    """uvicorn in a thread, in this process; the stream stays open with comments while nothing is appended."""
    import socket
    import threading

    import uvicorn

    from sessiondb.web import create_app

    store = tmp_path / "store"
    _create(store)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)  # connections wait in the backlog until uvicorn has started: no polling for it
    server = uvicorn.Server(uvicorn.Config(create_app(str(store), keepalive_seconds=0.2), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]})
    thread.start()
    try:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        with (
            httpx.Client(base_url=url, timeout=30) as client,
            client.stream("GET", "/s/live/events?after=2") as stream,
        ):
            comments = 0
            for line in stream.iter_lines():
                comments += line == ": keepalive"
                if comments == 3:
                    break
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
    assert not thread.is_alive()
