"""Real process kills: a writer child is SIGKILLed at random moments, the store is reopened and checked.

The child (``python -m sessiondb.testing._crashwork``) runs 24 concurrent session
drivers: single and three-event appends, prompts, conversation compactions,
forks and new sessions, with 64 KiB segments so rotation happens all the time.
It prints every attempt before it is made and every acknowledgement after it
returned. After each kill the parent reopens the store and checks: every
acknowledged event is there with its version and content; every recovered
session ends at an append boundary (nothing partial); versions and store
positions are gapless; ``load`` replays every session; an append succeeds.
The next child continues the same sessions, so each check covers all the
earlier runs too.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest

import sessiondb
from sessiondb import Message
from sessiondb.testing._crashwork import Ledger, check_store, kill_campaign

pytestmark = [pytest.mark.anyio, pytest.mark.crash]

KILLS = int(os.environ.get("SESSIONDB_TEST_KILLS", "52"))


async def test_sigkill_campaign(tmp_path: Path) -> None:
    seed = int(os.environ.get("SESSIONDB_CRASH_SEED", str(int(time.time()) % 100_000)))
    # Two stores of half the kills each: the checks stay quick as each store grows.
    for half, kills in enumerate((KILLS // 2, KILLS - KILLS // 2)):
        result = await kill_campaign(tmp_path / f"store{half}", kills, seed=seed + half, max_delay=0.25)
        assert result.violations == [], f"seed {seed + half}: {result.violations[:10]}"
        assert result.kills == kills
        # The kills landed while work was going on: most runs acknowledged appends, rotation happened.
        assert result.acks > 20 * kills, result
        assert result.stats["segments"] > 10


async def test_checker_sees_a_lost_acknowledgement(tmp_path: Path) -> None:
    """The checker is not vacuous: an acknowledged version that is missing, or a partial batch, is reported."""
    path = tmp_path / "store"
    async with sessiondb.open_store(path) as store:
        await store.create_session(session_id="s")
        await store.append("s", Message.user("s|2"))
    lost = Ledger()
    for line in ("T s create 1", "A s 1", "T s append 2", "A s 2", "T s append 3", "A s 3"):
        lost.feed(line)
    assert any("acknowledged 3" in p for p in await check_store(path, lost, probe=False))
    partial = Ledger()
    for line in ("T s create 1", "A s 1", "T s append 4"):  # a three-event append recovered as one event
        partial.feed(line)
    assert any("not the end of any attempted append" in p for p in await check_store(path, partial, probe=False))
    unknown = Ledger()
    assert any("never attempted" in p for p in await check_store(path, unknown, probe=False))
    wrong = Ledger()
    for line in ("T s create 1", "A s 1", "T s append 2", "A s 2"):
        wrong.feed(line)
    async with sessiondb.open_store(path) as store:
        await store.append("s", Message.user("not-a-marker"))  # content no attempt produced
    wrong.feed("T s append 3")
    assert any("content" in p for p in await check_store(path, wrong, probe=False))


@pytest.mark.slow
@pytest.mark.timeout(3600)
async def test_sigkill_campaign_long(tmp_path: Path) -> None:
    seed = random.randrange(100_000)
    for store in range(4):
        result = await kill_campaign(tmp_path / f"store{store}", 50, seed=seed + store, segment_bytes=16 * 1024)
        assert result.violations == [], f"seed {seed + store}: {result.violations[:10]}"
