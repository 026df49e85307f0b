"""Four writer processes on one store, random SIGKILLs and restarts while the others carry on.

Each child (``python -m sessiondb.testing._mpwork``) appends to eight shared
sessions with ``expected_version`` (retrying on ``ConflictError``) and to
sessions of its own, one or three events at a time, some with event ids,
and creates and forks sessions. The test SIGKILLs a random child at a random
moment (sometimes while it starts or retries what its predecessor left) and
starts a new incarnation that first retries its predecessor's unacknowledged
event-id appends with the same ids. With every child stopped, ``check_store``
verifies: every session gapless and ending at an append boundary; every
acknowledged append there exactly once, whole, with its content; no event-id
retry stored twice; positions gapless (directory) or strictly increasing
(PostgreSQL); ``load`` equals a full replay; an append succeeds.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

import sessiondb
from sessiondb import Message
from sessiondb.testing._crashwork import Ledger, check_store
from sessiondb.testing._mpcampaign import multi_kill_campaign

pytestmark = [pytest.mark.anyio, pytest.mark.crash]

KILLS = int(os.environ.get("SESSIONDB_TEST_MP_KILLS", "52"))


@pytest.mark.timeout(600)
async def test_four_writers_survive_random_sigkills(store_target: str) -> None:
    seed = int(os.environ.get("SESSIONDB_CRASH_SEED", str(int(time.time()) % 100_000)))
    result = await multi_kill_campaign(store_target, KILLS, processes=4, seed=seed, segment_bytes=32 * 1024)
    assert result.violations == [], f"seed {seed}: {result.violations[:10]}"
    assert result.kills == KILLS
    # The kills landed while work was going on, across many sessions.
    assert result.acks > 5 * KILLS, result
    assert result.stats["sessions"] > 8


async def test_token_checker_reports_planted_violations(tmp_path: Path) -> None:
    """The multi-process checks are not vacuous: a retry stored twice, a partial append, a lost one are reported."""
    path = tmp_path / "store"
    token = "@p0i0n1"
    async with sessiondb.open_store(path) as store:
        await store.create_session(session_id="s")
        # The same logical append stored twice (what a failed event-id dedupe would leave).
        await store.append("s", Message.user(f"s|2 {token}"))
        await store.append("s", Message.user(f"s|3 {token}"))
    twice = Ledger()
    for line in (
        "T s create 1",
        "A s 1",
        "T s append 2",
        f"TK {token} s 2 1 ids",
        "T s append 3",
        f"TK {token} s 3 1 ids",
        "A s 2",
        f"AK {token} s 2",
    ):
        twice.feed(line)
    assert any("more than once" in p for p in await check_store(path, twice, probe=False))
    # A three-event append of which only two events are stored.
    partial = Ledger()
    for line in ("T s create 1", "A s 1", "T s append 4", f"TK {token} s 2 3"):
        partial.feed(line)
    assert any("partially" in p for p in await check_store(path, partial, probe=False))
    # An acknowledged append that is not in the store.
    lost = Ledger()
    for line in (
        "T s create 1",
        "A s 1",
        "T s append 2",
        f"TK {token} s 2 1",
        "T s append 3",
        f"TK {token} s 3 1",
        "T s append 4",
        "TK @p1i0n1 s 4 1",
        "AK @p1i0n1 s 4",
    ):
        lost.feed(line)
    problems = await check_store(path, lost, probe=False)
    assert any("@p1i0n1" in p and "not recovered" in p for p in problems)
    # A token nobody tried.
    unknown = Ledger()
    for line in ("T s create 1", "A s 1", "T s append 2", "T s append 3"):
        unknown.feed(line)
    assert any("never attempted" in p for p in await check_store(path, unknown, probe=False))


@pytest.mark.slow
@pytest.mark.timeout(7200)
async def test_four_writers_many_kills(store_target: str) -> None:
    result = await multi_kill_campaign(store_target, 500, processes=4, seed=int(time.time()) % 100_000)
    assert result.violations == [], result.violations[:10]
