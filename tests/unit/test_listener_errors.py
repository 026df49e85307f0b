"""A batch listener or projection fold that raises must not stop the writer."""

from __future__ import annotations

from pathlib import Path

import pytest

import sessiondb
from sessiondb import Message

pytestmark = pytest.mark.anyio


async def test_raising_listener_and_fold_do_not_stop_appends(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    def bad_listener(batch: object) -> None:
        raise RuntimeError("listener bug")

    def bad_fold(state: int, event: sessiondb.RecordedEvent) -> int:
        if isinstance(event.event, Message) and event.event.text == "boom":
            raise RuntimeError("fold bug")
        return state + 1

    async with sessiondb.open_store(tmp_path / "s") as store:
        store.register_projection(sessiondb.Projection("count", initial=lambda sid: 0, fold=bad_fold))
        sid = await store.create_session()
        assert await store.project(sid, "count") == 1
        store.add_batch_listener(bad_listener)
        assert await store.append(sid, Message.user("a")) == 2
        await store.append(sid, Message.user("boom"))  # the cached fold raises: the entry is dropped
        assert await store.append(sid, Message.user("c")) == 4  # the writer is alive
        assert store.statistics()["listener_errors"] >= 3
        assert not store.broken
        with pytest.raises(RuntimeError, match="fold bug"):  # a fresh replay surfaces the bug to the caller
            await store.project(sid, "count")
    async with sessiondb.open_store(tmp_path / "s") as store:
        assert (await store.load(sid)).version == 4
