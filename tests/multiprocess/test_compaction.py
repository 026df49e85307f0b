"""Storage compaction and retention in one process while others append, read and subscribe.

A compactor process runs ``compact()`` passes back to back (for at least
ten seconds, and until it has written a snapshot and, on a directory,
retention (its own pass or a writer's background one) has
deleted the first segment) with eager
settings (snapshots after 20 events, two sealed segments kept, 16 KiB
segments so retention has work), and appends a little itself (a
PostgreSQL store snapshots only the sessions its own process wrote). Meanwhile two writer processes run the
multi-process crash workload (shared sessions with expected versions,
own sessions, forks, event ids) and one is SIGKILLed and restarted
half-way; a reader process loads, reads, lists and pages ``read_all`` and
follows a live ``subscribe_all``. The reader must never see a raw error (a
clear ``HistoryUnavailableError`` for history retention removed is
allowed), its subscription must deliver positions in order without
duplicates, and afterwards ``check_store`` must find every acknowledged
append (those retention removed are covered by snapshots and checked up
to the retained window).
"""

from __future__ import annotations

import asyncio

import pytest

from sessiondb.testing._crashwork import KillResult, Ledger, check_store
from sessiondb.testing._mpcampaign import create_shared, feed_ledger, spawn_writer, wait_ready

from ._helpers import result_of, wait_line
from .conftest import Children, is_postgres

pytestmark = [pytest.mark.anyio, pytest.mark.crash, pytest.mark.timeout(300)]

SECONDS = 10.0
SEGMENT_BYTES = 16 * 1024


async def test_compaction_beside_writers_readers_and_subscribers(store_target: str, children: Children) -> None:
    ledger = Ledger()
    result = KillResult()
    await create_shared(store_target, 6, ledger)
    compactor = children.start("compactor", store_target, str(SECONDS), str(SEGMENT_BYTES))
    reader = children.start("reader", store_target, "300")
    await wait_line(compactor, "READY")
    await wait_line(reader, "READY")
    # Drain the compactor's output (its ledger lines) from the start, so it never blocks on a full pipe.
    compactor_lines: list[str] = []
    compacting = asyncio.create_task(result_of(compactor, timeout=240, skipped=compactor_lines))
    options = ["--shared", "6", "--tasks", "6", "--segment-bytes", str(SEGMENT_BYTES)]
    writers = [spawn_writer(store_target, slot, 0, 7 + slot, [], options) for slot in range(2)]
    try:
        for writer in writers:
            await wait_ready(writer, 60)
        await asyncio.sleep(SECONDS / 3)
        victim = writers[0]
        retries = victim.unacknowledged()
        await asyncio.to_thread(victim.stop)
        result.kills += 1
        feed_ledger(ledger, victim, result)
        writers[0] = spawn_writer(store_target, 0, 1, 70, retries, options)
        compacted = await compacting
        for line in compactor_lines:
            ledger.feed(line)
        assert reader.stdin is not None
        reader.stdin.write("STOP\n")
        reader.stdin.flush()
        read = await result_of(reader, timeout=120)
        if writers[0].process.poll() is not None:
            pytest.fail(writers[0].failure())
    finally:
        compacting.cancel()
        for writer in writers:
            writer.stop()
    for writer in writers:
        feed_ledger(ledger, writer, result)

    assert compacted["failures"] == [] and compacted["passes"] > 0, compacted
    assert compacted["totals"].get("snapshots_written", 0) > 0, compacted
    assert read["failures"] == [], read["failures"]
    assert read["loads"] > 0 and read["subscribed"] > 0
    assert result.acks > 20
    problems = await check_store(
        store_target, ledger, stats=result.stats, gapless_positions=not is_postgres(store_target)
    )
    assert problems == [], problems[:10]
    if not is_postgres(store_target):
        # Retention really ran under the readers: segments went and snapshots stood in for them.
        assert compacted["retention_ran"], compacted
