"""A process that fell behind retention rebuilds its index and goes on (store directories only).

Several processes share one store directory. The laggard reads the log once and then
neither reads nor appends, while two writer processes roll through many segments (labels,
a deletion, a session they share) and a third process's compaction lets retention remove
every sealed segment, the laggard's newest known one among them. Its index cannot be
caught up frame by frame: the frames it would need are gone. It must rebuild its index
the way open does, under the write lock, and go on:

- its next append is planned against the true head (``expected_version`` passes) and is
  written to the live active segment (a freshly opened store reads it back);
- its reads show every event any process acknowledged (through snapshots and the log);
- its listings, label filters, session states, readable log and search results are equal
  to a freshly opened store's;
- its subscribers deliver what is still stored exactly once and in order, and a
  subscriber whose next event retention removed gets ``HistoryUnavailableError``.

The subscription case stops its laggard with SIGSTOP: a process with live subscribers
looks at the log every few milliseconds, so only a stopped one falls behind. It runs
with the checkpoint the compacting process left and without one (the rebuild then
scans, and sessions whose start retention removed begin at their first version left).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

import sessiondb
from sessiondb import CompactionSettings, Message

from ._helpers import create_sessions, message_texts, result_of, store_view, wait_line
from .conftest import Children

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(300)]

SEGMENT_BYTES = 4096
APPENDS = 120  # per writer: some 16 segments between them
QUERIES = ["laggard", "first", "late", "w1", "w2:7"]


async def _roll_and_remove(children: Children, target: str) -> dict[tuple[str, int], str]:
    """Two writer processes roll through segments; then this process compacts with retention keeping none.

    Returns every acknowledged append: (session, version) -> text.
    """
    writers = [children.start("roll", target, name, str(APPENDS), str(SEGMENT_BYTES)) for name in ("w1", "w2")]
    results = await asyncio.gather(*(result_of(writer) for writer in writers))
    acked = {}
    for result in results:
        assert result["failures"] == [], result
        acked.update({(sid, version): text for sid, version, text in result["acked"]})
    settings = CompactionSettings(background=False, min_tail_events=5, min_tail_bytes=10**9, keep_segments=0)
    async with sessiondb.open_store(target, segment_bytes=SEGMENT_BYTES, compaction=settings) as compactor:
        compacted = await compactor.compact()
    assert compacted["segments_deleted"] >= 10, compacted
    return acked


def _expected_texts(acked: dict[tuple[str, int], str]) -> dict[str, list[str]]:
    texts: dict[str, list[str]] = {}
    for (session_id, _version), text in sorted(acked.items()):
        texts.setdefault(session_id, []).append(text)
    return texts


def _send(process: Any, line: str) -> None:
    assert process.stdin is not None
    process.stdin.write(line + "\n")
    process.stdin.flush()


async def test_a_process_that_fell_behind_retention_rebuilds_and_goes_on(tmp_path: Path, children: Children) -> None:
    target = str(tmp_path / "store")
    await create_sessions(target, ["shared", "quiet"])
    laggard = children.start("laggard", target, str(SEGMENT_BYTES), ",".join(QUERIES))
    known = json.loads(await wait_line(laggard, "READY "))
    # A search index exists from now on: every writer keeps it current as it appends. Made after the laggard
    # opened, so that no indexer task of its own reads the log while it idles.
    async with sessiondb.open_store(target) as store:
        await store.search("anything")

    acked = await _roll_and_remove(children, target)
    newest_known = tmp_path / "store" / f"{known['segment']:010d}.seg"
    assert not newest_known.exists(), "retention kept the laggard's newest segment: the test proves nothing"
    heads = {"shared": max(version for sid, version in acked if sid == "shared")}
    _send(laggard, "GO " + json.dumps(heads))
    result = await result_of(laggard)

    assert result["failures"] == [], result["failures"]
    assert result["rebuilds"] == 1
    assert result["version"] == heads["shared"] + 1  # planned against the true head
    view = result["view"]
    for session_id, texts in _expected_texts(acked).items():
        if session_id.endswith("-gone"):
            assert session_id not in view["loaded"]  # deleted while the laggard idled
            continue
        expected = texts + (["laggard after falling behind"] if session_id == "shared" else [])
        assert result["texts"][session_id] == expected, session_id  # every acknowledged event reads back
    async with sessiondb.open_store(target, segment_bytes=SEGMENT_BYTES) as fresh:
        assert view == await store_view(fresh, QUERIES)
        assert message_texts(await fresh.load("shared"))[-1] == "laggard after falling behind"
        info = await fresh.session_info("laggard-new")
        assert (info.title, info.tags, info.scope) == ("laggard title", ("laggard", "late"), "scope-both")
    assert set(view["by_tag"]["late"]) == {"laggard-new", "w1-b", "w2-b"}
    assert "w1-gone" not in {info["session_id"] for info in view["sessions"]}
    assert "shared" in {hit[0] for hit in view["search"]["laggard"]}  # its own append, searched


@pytest.mark.parametrize("checkpoint", [True, False], ids=["from-checkpoint", "from-scan"])
async def test_subscribers_of_a_process_that_fell_behind_go_on_exactly_once(
    tmp_path: Path, children: Children, checkpoint: bool
) -> None:
    target = str(tmp_path / "store")
    await create_sessions(target, ["shared", "quiet"])
    lagsub = children.start("lagsub", target, str(SEGMENT_BYTES))
    known = json.loads(await wait_line(lagsub, "READY "))
    os.kill(lagsub.pid, signal.SIGSTOP)  # its subscribers look at the log every few ms: stopped, it falls behind
    try:
        acked = await _roll_and_remove(children, target)
        async with sessiondb.open_store(target, segment_bytes=SEGMENT_BYTES) as other:
            for n in range(5):  # after retention: in the live segment, readable by the laggard's subscriber
                await other.append("quiet", Message.user(f"quiet {n}"))
            quiet_head = (await other.session_info("quiet")).version
        if not checkpoint:
            os.unlink(tmp_path / "store" / "CHECKPOINT")  # the rebuild scans: streams start at the first version left
    finally:
        os.kill(lagsub.pid, signal.SIGCONT)
    assert not (tmp_path / "store" / f"{known['segment']:010d}.seg").exists()
    _send(lagsub, "GO " + json.dumps({"quiet": quiet_head}))
    result = await result_of(lagsub)

    assert result["failures"] == [], result["failures"]
    assert result["rebuilds"] == 1
    assert result["own"] == quiet_head + 1
    # Still stored: delivered exactly once, in order, across the rebuild (and its own append after it).
    assert result["delivered"]["quiet"] == list(range(1, quiet_head + 2))
    assert "quiet" not in result["ended"]
    # Removed by retention before they were delivered: a clear error, never silence.
    shared_head = max(version for sid, version in acked if sid == "shared")
    assert result["delivered"]["shared"] == [1], result["delivered"]["shared"][:5]
    assert result["ended"]["shared"].startswith("HistoryUnavailableError"), result["ended"]
    assert "from version 2" in result["ended"]["shared"] and shared_head > 2
    assert result["delivered"]["all"] == list(range(1, known["position"] + 1))
    assert result["ended"]["all"].startswith("HistoryUnavailableError"), result["ended"]
