"""Retention never drops the history a registered projection's state still needs.

Store A registers a snapshotted projection; store B, opened on the same directory
without it, compacts with retention. A's ``project`` must still work afterwards.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import msgspec
import pytest

import sessiondb
from sessiondb import CompactionSettings, Custom, Message, Projection, RecordedEvent

pytestmark = pytest.mark.anyio


class Tally(msgspec.Struct):
    texts: list[str] = msgspec.field(default_factory=list)


def _fold(state: Tally, recorded: RecordedEvent) -> Tally:
    if isinstance(recorded.event, Message):
        state.texts.append(recorded.event.text)
    return state


TALLY = Projection("tally", lambda sid: Tally(), _fold, state_type=Tally)


def _settings(**overrides: object) -> CompactionSettings:
    options: dict[str, object] = {"background": False, "min_tail_events": 5, "min_tail_bytes": 10**9}
    options.update(overrides)
    return CompactionSettings(**options)  # type: ignore[arg-type]


def _segments(path: Path) -> list[str]:
    return sorted(name for name in os.listdir(path) if name.endswith(".seg"))


async def _fill(store: sessiondb.Store, sid: str, turns: int, start: int = 0) -> list[str]:
    texts = []
    for turn in range(start, start + turns):
        text = f"{sid} turn {turn} " + "z" * 60
        await store.append(sid, Message.user(text))
        texts.append(text)
    return texts


async def test_a_store_without_the_projection_keeps_the_history_it_needs(tmp_path: Path) -> None:
    path = tmp_path / "s"
    async with sessiondb.open_store(path, segment_bytes=2048, compaction=_settings()) as a:
        a.register_projection(TALLY)
        await a.create_session(session_id="t")
        texts = await _fill(a, "t", 60)
        # B shares the directory (another process in production: uvicorn worker, the CLI, a script).
        async with sessiondb.open_store(path, segment_bytes=2048, compaction=_settings(keep_segments=0)) as b:
            await b.compact(purge=True)
        assert (await a.project("t", "tally")).texts == texts
    async with sessiondb.open_store(path, compaction=_settings()) as a:
        a.register_projection(TALLY)
        assert (await a.project("t", "tally")).texts == texts
        assert (await a.load("t")).version == 61
