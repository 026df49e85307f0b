"""The index is derived data: rebuilt when deleted, damaged, stale or killed mid-way; shared between processes."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

import sessiondb
from sessiondb import Message, PromptRecorded, Text, ToolResult, ToolUse
from sessiondb._backends.local import repair_store, verify_store

from ._brute import expected_positions, words
from ._processes import environment, run_in_process, wait_line

pytestmark = pytest.mark.anyio

CHILD = str(Path(__file__).with_name("_child.py"))
WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]


def _text(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 6)))


async def _fill(store: sessiondb.Store, count: int, seed: int = 0) -> None:
    """``count`` events over a few sessions, appended in groups of up to 100."""
    rng = random.Random(seed)
    sessions = [await store.create_session(session_id=f"s{i}") for i in range(4)]
    left = count - len(sessions)
    while left > 0:
        group = min(100, left)
        events = []
        for _ in range(group):
            kind = rng.random()
            if kind < 0.6:
                events.append(Message.user(_text(rng)))
            elif kind < 0.8:
                events.append(Message.assistant([Text(_text(rng)), ToolUse("t", "bash", f'{{"cmd": "{_text(rng)}"}}')]))
            elif kind < 0.9:
                events.append(Message("tool", [ToolResult("t", "bash", _text(rng))]))
            else:
                events.append(PromptRecorded(_text(rng), 1))
        await store.append(rng.choice(sessions), *events)
        left -= group


async def _expected(store: sessiondb.Store, query: str) -> list[int]:
    events = [e for info in await store.list_sessions() async for e in store.read(info.session_id)]
    terms = [((word,), False) for word in words(query)]
    return sorted(expected_positions(events, terms), reverse=True)


async def _found(store: sessiondb.Store, query: str) -> list[int]:
    positions: list[int] = []
    cursor = None
    while True:
        page = await store.search(query, order="newest", limit=1000, cursor=cursor)
        positions += [hit.position for hit in page.hits]
        if page.next_cursor is None:
            return positions
        cursor = page.next_cursor


async def _assert_search_is_right(target: str | Path, *queries: str) -> None:
    async with sessiondb.open_store(target) as store:
        for query in queries or ("alpha beta", "gamma"):
            assert await _found(store, query) == await _expected(store, query), query


def _sidecar_position(directory: Path) -> int:
    conn = sqlite3.connect(directory / "search.sqlite")
    try:
        return int(conn.execute("select value from meta where key = 'position'").fetchone()[0])
    finally:
        conn.close()


async def test_the_sidecar_is_created_by_the_first_search_and_holds_only_owner_permissions(tmp_path: Path) -> None:
    async with sessiondb.open_store(tmp_path) as store:
        await _fill(store, 300)
        assert not (tmp_path / "search.sqlite").exists()  # nobody searched: no index, no cost
        assert (await store.search("alpha")).hits
        mode = stat.S_IMODE(os.stat(tmp_path / "search.sqlite").st_mode)
        assert mode == 0o600
    assert _sidecar_position(tmp_path) == 300
    report = verify_store(tmp_path)  # the sidecar is not the store's: verify ignores it
    assert not report.problems and not report.temp_files
    async with sessiondb.open_store(tmp_path) as store:  # the open's temp-file cleanup leaves it alone
        assert store.backend.recovery["removed_temp_files"] == []  # type: ignore[attr-defined]
    assert (tmp_path / "search.sqlite").exists()


@pytest.mark.parametrize("damage", ["delete", "truncate", "garbage", "zeroes", "half"])
async def test_a_missing_or_damaged_sidecar_is_rebuilt(tmp_path: Path, damage: str) -> None:
    async with sessiondb.open_store(tmp_path) as store:
        await _fill(store, 3_000)
        await store.search("alpha")
    sidecar = tmp_path / "search.sqlite"
    size = sidecar.stat().st_size
    if damage == "delete":
        sidecar.unlink()
    elif damage == "truncate":
        sidecar.write_bytes(b"")
    elif damage == "garbage":
        sidecar.write_bytes(random.Random(1).randbytes(size))
    elif damage == "zeroes":
        with open(sidecar, "r+b") as handle:
            handle.seek(4096)
            handle.write(b"\0" * (size - 4096))
    else:
        os.truncate(sidecar, size // 2)
    async with sessiondb.open_store(tmp_path) as store:
        # The store opens and appends whatever the sidecar holds; search rebuilds it from the log.
        await store.append("s0", Message.user("alpha beta after the damage"))
        assert await _found(store, "alpha beta") == await _expected(store, "alpha beta")
        assert await _found(store, "gamma") == await _expected(store, "gamma")
    await _assert_search_is_right(tmp_path)


async def test_an_index_of_another_log_is_rebuilt(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    async with sessiondb.open_store(first) as store:
        await _fill(store, 500, seed=1)
        await store.search("alpha")
    async with sessiondb.open_store(second) as store:
        await _fill(store, 700, seed=2)
    # The log is replaced under the index (a restored backup, a copied directory).
    shutil.copy(first / "search.sqlite", second / "search.sqlite")
    async with sessiondb.open_store(second) as store:
        assert await _found(store, "alpha") == await _expected(store, "alpha")
        assert store.statistics()["search_rebuilds"] == 1


async def test_repair_dropping_events_makes_the_index_start_over(tmp_path: Path) -> None:
    async with sessiondb.open_store(tmp_path) as store:
        await _fill(store, 400)
        await store.append("s1", Message.user("omega"))
        assert len((await store.search("omega")).hits) == 1
    segment = tmp_path / "0000000001.seg"
    data = bytearray(segment.read_bytes())
    data[-40] ^= 0xFF  # damage the last batch: repair cuts it
    data += b'{"batch":1,"bytes":3,"crc":0,"first":999}\nxyz\n'  # and something valid-looking after it
    segment.write_bytes(bytes(data))
    report = repair_store(tmp_path)
    assert report.dropped
    async with sessiondb.open_store(tmp_path) as store:
        assert (await store.search("omega")).hits == []
        await store.append("s2", Message.user("something else"))
        assert await _found(store, "alpha") == await _expected(store, "alpha")


async def test_an_index_from_a_newer_sessiondb_is_left_alone(tmp_path: Path) -> None:
    async with sessiondb.open_store(tmp_path) as store:
        await _fill(store, 200)
        await store.search("alpha")
    conn = sqlite3.connect(tmp_path / "search.sqlite")
    conn.execute("update meta set value = '99' where key = 'format'")
    conn.commit()
    conn.close()
    async with sessiondb.open_store(tmp_path) as store:
        assert await _found(store, "alpha") == await _expected(store, "alpha")  # from an index in memory
    conn = sqlite3.connect(tmp_path / "search.sqlite")
    assert conn.execute("select value from meta where key = 'format'").fetchone()[0] == "99"
    conn.close()


@pytest.mark.crash
@pytest.mark.parametrize("seed", range(3))
async def test_a_process_killed_while_indexing_leaves_a_usable_index(tmp_path: Path, seed: int) -> None:
    async with sessiondb.open_store(tmp_path) as store:
        await _fill(store, 20_000, seed=seed)
    with subprocess.Popen(
        [sys.executable, CHILD, "index", str(tmp_path), "alpha"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(),
    ) as child:
        try:
            await wait_line(child, "START")
            # Kill it at a random moment of its indexing (some runs before the first chunk, most in the middle).
            await anyio.sleep(random.Random(seed).uniform(0.05, 1.5))
            child.send_signal(signal.SIGKILL)
        finally:
            child.kill()
            child.wait(30)
    if (tmp_path / "search.sqlite").exists():
        position = _sidecar_position(tmp_path)
        assert 0 <= position <= 20_000
    await _assert_search_is_right(tmp_path, "alpha", "beta gamma", "theta")


async def test_a_search_sees_what_another_process_appended(store_target: str) -> None:
    async with sessiondb.open_store(store_target) as store:
        await _fill(store, 200)
        assert (await store.search("kumquat")).hits == []  # the index exists and is current
        child = subprocess.run(
            [sys.executable, CHILD, "append", store_target, "s3", "a kumquat from elsewhere"],
            capture_output=True,
            text=True,
            env=environment(),
            timeout=120,
        )
        assert child.returncode == 0, child.stderr
        version = int(child.stdout.split("ACK ")[1])
        hits = (await store.search("kumquat")).hits
        if store_target.startswith("postgresql"):
            # Another process's commit is readable once older transactions on the server have ended
            # (this process's own appends are waited for inside search()).
            with anyio.fail_after(60):
                while not hits:
                    await anyio.sleep(0.05)
                    hits = (await store.search("kumquat")).hits
        assert [(hit.session_id, hit.version) for hit in hits] == [("s3", version)]


async def test_a_read_only_store_searches(tmp_path: Path) -> None:
    async with sessiondb.open_store(tmp_path) as store:
        await _fill(store, 500)
    async with sessiondb.open_store(tmp_path, read_only=True) as store:
        assert await _found(store, "alpha") == await _expected(store, "alpha")
    assert _sidecar_position(tmp_path) == 500  # derived data: a read-only open may write the sidecar


def test_the_cli_searches_a_store(tmp_path: Path) -> None:
    async def build() -> None:
        async with sessiondb.open_store(tmp_path) as store:
            await store.create_session(session_id="chat")
            await store.append("chat", Message.user("deploy the service"), Message.assistant("deployed, all green"))
            await store.append("chat", Message.user("now deploy the docs"))

    anyio.run(build)
    result = run_in_process("search", str(tmp_path), "deploy")
    assert result.code == 0, result.err
    assert "chat@4  message" in result.out and "[deploy]" in result.out
    result = run_in_process("search", str(tmp_path), "deploy*", "--newest", "--limit", "1", "--json")
    assert result.code == 0
    page = json.loads(result.out)
    assert [hit["version"] for hit in page["hits"]] == [4]
    assert page["next_cursor"]
    result = run_in_process(
        "search", str(tmp_path), "deploy*", "--newest", "--limit", "1", "--cursor", page["next_cursor"]
    )
    assert "chat@3" in result.out
    result = run_in_process("search", str(tmp_path), "!!!")
    assert result.code == 1 and "no word to search for" in result.err
    result = run_in_process("search", str(tmp_path), "deploy", "--tag", "prod")
    assert result.code == 0 and result.out == "" and "no match" in result.err  # no session has that tag
    result = run_in_process("search", str(tmp_path), "nowhere")
    assert result.code == 0 and result.out == "" and "no match" in result.err


async def test_a_sidecar_damaged_while_another_store_has_it_open_is_not_deleted_under_it(tmp_path: Path) -> None:
    async with sessiondb.open_store(tmp_path) as first:
        await _fill(first, 1_000)
        assert await _found(first, "alpha") == await _expected(first, "alpha")  # first holds the sidecar open
        sidecar = tmp_path / "search.sqlite"
        size = sidecar.stat().st_size
        with open(sidecar, "r+b") as handle:
            handle.write(random.Random(2).randbytes(size))
        async with sessiondb.open_store(tmp_path) as second:
            # The file is damaged, but `first` has it open: `second` indexes in memory and still answers.
            assert await _found(second, "beta") == await _expected(second, "beta")
            assert sidecar.stat().st_size == size  # not deleted or rewritten under `first`
        await first.append("s0", Message.user("alpha again"))
        assert await _found(first, "alpha") == await _expected(first, "alpha")
    await _assert_search_is_right(tmp_path)


async def test_an_index_of_an_older_format_is_rebuilt(tmp_path: Path) -> None:
    """Format 1 kept a run of CJK characters as one word: such an index is emptied and rebuilt, not trusted."""
    async with sessiondb.open_store(tmp_path) as store:
        await store.create_session(session_id="s")
        await store.append("s", Message.user("这是一个测试"))
        assert [hit.version for hit in (await store.search("测试")).hits] == [2]
    conn = sqlite3.connect(tmp_path / "search.sqlite")
    conn.execute("update meta set value = '1' where key = 'format'")
    conn.execute("update fts set text = replace(text, char(31), '')")  # the text as format 1 indexed it
    conn.commit()
    conn.close()
    async with sessiondb.open_store(tmp_path) as store:
        assert [hit.version for hit in (await store.search("测试")).hits] == [2]


async def test_an_index_of_format_2_is_rebuilt(tmp_path: Path) -> None:
    """Format 2 indexed words with compatibility characters as written (no query found them): rebuilt."""
    async with sessiondb.open_store(tmp_path) as store:
        await store.create_session(session_id="s")
        await store.append("s", Message.user("the \ufb01nal report"))
        assert [hit.version for hit in (await store.search("final")).hits] == [2]
    conn = sqlite3.connect(tmp_path / "search.sqlite")
    conn.execute("update meta set value = '2' where key = 'format'")
    conn.execute("update fts set text = 'the \ufb01nal report'")  # as format 2 indexed it
    conn.execute("alter table docs drop column original")
    conn.commit()
    conn.close()
    async with sessiondb.open_store(tmp_path) as store:
        (hit,) = (await store.search("final")).hits
        assert (hit.version, hit.snippet) == (2, "the \ufb01nal report")


@pytest.mark.postgres
async def test_a_postgres_index_of_an_older_format_is_rebuilt(pg_url: str) -> None:
    asyncpg = pytest.importorskip("asyncpg")
    async with sessiondb.open_store(pg_url) as store:
        await store.create_session(session_id="s")
        await store.append("s", Message.user("这是一个测试"))
        assert [hit.version for hit in (await store.search("测试")).hits] == [2]
    dsn, schema = pg_url.split("?schema=")
    conn = await asyncpg.connect(dsn)
    try:  # the words as format 1 found them: a run of CJK characters is one
        await conn.execute(f"update {schema}.search_state set format = 1")
        await conn.execute(f"update {schema}.search_docs set tsv = array_to_tsvector(array['这是一个测试'])")
    finally:
        await conn.close()
    async with sessiondb.open_store(pg_url) as store:
        assert [hit.version for hit in (await store.search("测试")).hits] == [2]
