"""A fork made while a storage-compaction pass runs must stay loadable.

Found by the power-loss sweep with compaction on. A pass decides which sealed
segments its snapshots cover, a fork of a session is created meanwhile, and the
pass deletes segments holding the parent history the new fork reads; the fork's
``load`` then raised HistoryUnavailableError, live and after reopen. Fixed by
making ``fork`` and a compaction pass mutually exclusive (the compactor's pass lock).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from pathlib import Path

import pytest

import sessiondb
from sessiondb import Message
from sessiondb.testing._crashwork import eager_compaction

pytestmark = pytest.mark.anyio


async def _trial(path: Path, seed: int) -> list[str]:
    rng = random.Random(seed)
    forks: list[str] = []
    failures: list[str] = []
    async with sessiondb.open_store(path, segment_bytes=2048, **eager_compaction()) as store:
        parent = await store.create_session(session_id="p")
        stop = False

        async def compact_loop() -> None:
            while not stop:
                await store.compact()
                for _ in range(rng.randint(0, 5)):
                    await asyncio.sleep(0)

        compactor = asyncio.ensure_future(compact_loop())
        for i in range(60):
            head = await store.append(parent, Message.user(f"p{i} " + "x" * 150))
            if rng.random() < 0.2:
                with contextlib.suppress(sessiondb.HistoryUnavailableError):
                    forks.append(await store.fork(parent, at_version=rng.randint(max(1, head - 6), head)))
            for _ in range(rng.randint(0, 3)):
                await asyncio.sleep(0)
        stop = True
        await compactor
        for fork in forks:
            try:
                await store.load(fork)
            except sessiondb.SessionDBError as exc:
                failures.append(f"{fork}: {exc}")
    return failures


@pytest.mark.slow
async def test_forks_made_during_compaction_stay_loadable(tmp_path: Path) -> None:
    failures: list[str] = []
    for seed in range(100):
        failures += await _trial(tmp_path / str(seed), seed)
    assert failures == []
