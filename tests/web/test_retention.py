"""A session whose oldest events retention removed: the page shows what is stored, after the snapshot's context."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

pytest.importorskip("jinja2")
from starlette.testclient import TestClient

import sessiondb
from sessiondb import CompactionSettings, HistoryUnavailableError, Message
from sessiondb.web import create_app, render_session_html

from ._html import Page

SETTINGS = CompactionSettings(background=False, min_tail_events=5, min_tail_bytes=10**9)


def _build(path: Path) -> int:
    async def build() -> int:
        async with sessiondb.open_store(path, segment_bytes=2048, compaction=SETTINGS) as store:
            await store.create_session(session_id="old")
            for turn in range(60):
                await store.append("old", Message.user(f"turn {turn} " + "z" * 50))
            await store.compact()
            with pytest.raises(HistoryUnavailableError):
                [e async for e in store.read("old")]
            return (await store.session_info("old")).version

    return asyncio.run(build())


def test_the_page_shows_what_retention_kept(tmp_path: Path) -> None:
    path = tmp_path / "store"
    latest = _build(path)
    with TestClient(create_app(str(path)), base_url="http://127.0.0.1") as client:
        response = client.get("/s/old")
        assert response.status_code == 200
        page = Page(response.text)
        (notice,) = page.by_class("retention")
        assert "no longer stored" in notice.text and "turn 59" in page.text
        versions = [int(node.attrs["data-version"] or 0) for node in page.nodes if node.attrs.get("data-version")]
        floor = min(versions) - 1
        assert 0 < floor < latest
        # The live context at the floor, from the snapshot: every message up to there.
        (folded,) = page.by_class("removed")
        assert "turn 0 " in folded.text and f"turn {floor - 2} " in folded.text
        assert client.get(f"/s/old?v={latest - 1}").status_code == 200
        gone = client.get("/s/old?v=2")  # removed, and the only snapshot is at the latest version
        assert gone.status_code == 410 and "removed by retention" in Page(gone.text).text

    async def export() -> str:
        async with sessiondb.open_store(path, read_only=True) as store:
            return await render_session_html(store, "old")

    assert "turn 59" in Page(asyncio.run(export())).text
