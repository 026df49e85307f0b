"""Deleting LangGraph checkpoints in an append-only log: hidden for every reader at once, bytes gone after a purge."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.conformance.test_utils import generate_checkpoint, generate_config, generate_metadata

import sessiondb
from sessiondb.integrations.langgraph import SessionDBSaver

pytestmark = pytest.mark.anyio


def _stored_form(saver: SessionDBSaver, value: str) -> bytes:
    """What of ``value`` the store's files hold: its serde bytes, inside base64 (log, snapshots) or not."""
    return saver.serde.dumps_typed(value)[1]


def _on_disk(directory: Path, needle: bytes) -> list[str]:
    """Files holding ``needle`` as such or inside any base64 string (at any of the 3 alignments)."""
    found = []
    for root, _, files in os.walk(directory):
        for name in files:
            blob = (Path(root) / name).read_bytes()
            texts = [blob]
            for run in re.findall(rb"[A-Za-z0-9+/]{8,}", blob):  # base64 strings start a JSON string
                texts.append(base64.b64decode(run[: len(run) - len(run) % 4]))
            if any(needle in text for text in texts):
                found.append(name)
    return found


async def _put_chain(saver: SessionDBSaver, thread_id: str, values: list[str], run_ids: list[str]) -> list[Any]:
    stored: list[Any] = []
    for step, (value, run_id) in enumerate(zip(values, run_ids, strict=True)):
        config = generate_config(thread_id)
        if stored:
            config["configurable"]["checkpoint_id"] = stored[-1]["configurable"]["checkpoint_id"]
        checkpoint = generate_checkpoint(channel_values={"secret": value}, channel_versions={"secret": step + 1})
        stored.append(
            await saver.aput(config, checkpoint, generate_metadata(step=step, run_id=run_id), {"secret": step + 1})
        )
    return stored


async def test_prune_delete_for_runs_and_delete_thread_leave_no_bytes_after_purge(tmp_path: Path) -> None:
    path = tmp_path / "store"
    async with sessiondb.open_store(path) as store:
        saver = SessionDBSaver(store)
        kept = await _put_chain(saver, "pruned", [f"PRUNED-{i}" for i in range(5)], [f"r{i}" for i in range(5)])
        await _put_chain(saver, "runs", ["RUN-A", "RUN-B", "RUN-C"], ["run-a", "run-b", "run-c"])
        await _put_chain(saver, "gone", ["GONE-0", "GONE-1"], ["g0", "g1"])
        doomed = ["PRUNED-0", "PRUNED-3", "RUN-A", "RUN-B", "GONE-0", "GONE-1"]
        for value in doomed:
            assert _on_disk(path, _stored_form(saver, value)), value  # the check can see them
        await saver.aprune(["pruned"], strategy="keep_latest")
        await saver.adelete_for_runs(["run-a", "run-b"])
        await saver.adelete_thread("gone")
        # Hidden for every reader at once, this one and a second saver alike.
        for reader in (saver, SessionDBSaver(store)):
            assert [t.checkpoint["id"] async for t in reader.alist(generate_config("pruned"))] == [
                kept[-1]["configurable"]["checkpoint_id"]
            ]
            runs = [t.checkpoint["channel_values"]["secret"] async for t in reader.alist(generate_config("runs"))]
            assert runs == ["RUN-C"]
            assert await reader.aget_tuple(generate_config("gone")) is None
        result = await store.compact(purge=True)
        assert result["sealed"] and result["segments_deleted"] >= 1
        for value in doomed:
            assert not _on_disk(path, _stored_form(saver, value)), value
        for value in ("PRUNED-4", "RUN-C"):
            assert _on_disk(path, _stored_form(saver, value)), value  # what is live stays
    async with sessiondb.open_store(path) as store:
        saver = SessionDBSaver(store)
        latest = await saver.aget_tuple(generate_config("pruned"))
        assert latest is not None and latest.checkpoint["channel_values"] == {"secret": "PRUNED-4"}
        await _put_chain(saver, "gone", ["AGAIN"], ["g2"])  # a deleted thread id is usable again
        again = await saver.aget_tuple(generate_config("gone"))
        assert again is not None and again.checkpoint["channel_values"] == {"secret": "AGAIN"}


def test_cli_compact_purge(tmp_path: Path) -> None:
    path = tmp_path / "store"

    async def write() -> bytes:
        async with sessiondb.open_store(path) as store:
            saver = SessionDBSaver(store)
            await _put_chain(saver, "t", ["OLD-VALUE", "NEW-VALUE"], ["a", "b"])
            await saver.aprune(["t"])
            return _stored_form(saver, "OLD-VALUE")

    import anyio

    needle = anyio.run(write)
    assert _on_disk(path, needle)
    subprocess.run([sys.executable, "-m", "sessiondb", "compact", str(path), "--purge"], check=True)
    assert not _on_disk(path, needle)

    async def read() -> Any:
        async with sessiondb.open_store(path) as store:
            return await SessionDBSaver(store).aget_tuple(generate_config("t"))

    latest = anyio.run(read)
    assert latest.checkpoint["channel_values"] == {"secret": "NEW-VALUE"}
