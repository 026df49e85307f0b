"""Subscriptions across processes: every process's subscribers see every process's events exactly once, in order.

Three processes each open ``subscribe_all`` and ``subscribe(sid)`` for every
shared session, then (all started together) append to those sessions. When
every process has written, the test tells each what the store holds; each
waits (bounded) until its subscribers have it all and reports what they saw.
The test checks, per process: ``subscribe_all`` delivered exactly the
store's events (``read_all``), no gap, no duplicate, in position order;
``subscribe(sid)`` delivered versions 1..head of its session; everything
acknowledged anywhere was seen. Delivery latency (append time to delivery,
of other processes' events) is printed, not asserted.
"""

from __future__ import annotations

import json

import pytest

import sessiondb

from ._helpers import create_sessions, percentile, result_of, wait_line
from .conftest import Children, is_postgres

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(300)]

SESSIONS = [f"sub-{n}" for n in range(4)]
PROCESSES = 3
APPENDS = 150  # per process


async def _store_contents(target: str) -> tuple[dict[str, int], list[tuple[int, str, int]]]:
    async with sessiondb.open_store(target) as store:
        heads = {info.session_id: info.version for info in await store.list_sessions()}
        events: list[tuple[int, str, int]] = []
        while page := await store.read_all(after=events[-1][0] if events else 0):
            events += [(r.position, r.session_id, r.version) for r in page]
    return heads, events


async def test_every_process_sees_every_event_once_in_order(
    store_target: str, children: Children, capsys: pytest.CaptureFixture[str]
) -> None:
    await create_sessions(store_target, SESSIONS)
    processes = [
        children.start("subscribe", store_target, f"p{n}", str(APPENDS), ",".join(SESSIONS)) for n in range(PROCESSES)
    ]
    for process in processes:
        await wait_line(process, "READY")
    for process in processes:
        assert process.stdin is not None
        process.stdin.write("GO\n")
        process.stdin.flush()
    acked = {(sid, version) for process in processes for sid, version in json.loads(await wait_line(process, "WROTE "))}
    assert len(acked) == PROCESSES * APPENDS
    heads, events = await _store_contents(store_target)
    for process in processes:
        assert process.stdin is not None
        process.stdin.write("END " + json.dumps(heads) + "\n")
        process.stdin.flush()
    results = [await result_of(process) for process in processes]

    stored = [(sid, version) for _, sid, version in events]
    assert len(stored) == sum(heads.values()) and acked <= set(stored)
    latencies: list[float] = []
    for n, result in enumerate(results):
        assert result["failures"] == [], f"process {n}: {result['failures']}"
        seen = [(position, sid, version) for position, sid, version, _ in result["all"]]
        assert seen == events, f"process {n}: subscribe_all differs from read_all"
        for sid in SESSIONS:
            assert result["one"][sid] == list(range(1, heads[sid] + 1)), f"process {n}: subscribe({sid})"
        # Only what other processes appended: delivery across processes.
        latencies += [
            latency
            for latency, (_, _, _, text) in zip(result["latency_ms"], result["all"], strict=True)
            if text is not None and not text.startswith(f"p{n}:")
        ]
    with capsys.disabled():
        print(
            f"\ncross-process delivery ({'PostgreSQL' if is_postgres(store_target) else 'directory'}): "
            f"{len(latencies)} deliveries, p50 {percentile(latencies, 0.5):.1f} ms, "
            f"p99 {percentile(latencies, 0.99):.1f} ms"
        )
