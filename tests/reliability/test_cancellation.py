"""Cancellation at every await point: an append lands whole or not at all, and reading tells which."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

import sessiondb
from sessiondb import Message

pytestmark = pytest.mark.anyio


async def test_cancel_at_every_await_point(tmp_path: Path) -> None:
    rng = random.Random(5)
    outcomes = {"landed": 0, "absent": 0, "returned": 0}
    async with sessiondb.open_store(tmp_path / "store") as store:
        sids = [await store.create_session(session_id=f"s{i}") for i in range(8)]
        attempts: dict[str, list[tuple[str, ...]]] = {sid: [] for sid in sids}
        for trial in range(400):
            sid = sids[trial % len(sids)]
            texts = tuple(f"{trial}.{k}" for k in range(rng.randint(1, 4)))
            attempts[sid].append(texts)
            # Noise from other sessions so the cancelled append shares batches.
            noise = [asyncio.ensure_future(store.append(s, Message.user("noise"))) for s in sids if s != sid]
            task = asyncio.ensure_future(store.append(sid, *(Message.user(t) for t in texts)))
            for _ in range(trial % 6):  # cancel at the 0th ... 5th await point
                await asyncio.sleep(0)
            task.cancel()
            try:
                await task
                outcomes["returned"] += 1
            except asyncio.CancelledError:
                pass
            await asyncio.gather(*noise)
        # Every append has settled once a later append to the same session returned.
        for sid in sids:
            await store.append(sid, Message.user("final"))
        for sid in sids:
            events = [e async for e in store.read(sid)]
            assert [e.version for e in events] == list(range(1, len(events) + 1))  # nothing skipped or reused
            texts = [e.event.text for e in events[1:] if e.event.text not in ("noise", "final")]  # type: ignore[union-attr]
            stored = {t.split(".")[0] for t in texts}
            for attempt in attempts[sid]:
                present = [t for t in attempt if t in texts]
                assert present in ([], list(attempt)), attempt  # whole or nothing
                if present:
                    start = texts.index(attempt[0])
                    assert texts[start : start + len(attempt)] == list(attempt)  # contiguous, in order
                    outcomes["landed"] += 1
                else:
                    outcomes["absent"] += 1
            assert len(stored) <= len(attempts[sid])
    # Both outcomes happen: cancellation really interrupts some appends and not others.
    assert outcomes["absent"] > 0 and outcomes["landed"] > outcomes["returned"], outcomes
