"""The CLI against a real PostgreSQL store: reading, and ``tail`` following another process's appends."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

import sessiondb
from sessiondb import Message

from ._helpers import environment, run_in_process

pytestmark = pytest.mark.postgres


async def _append(url: str, *texts: str) -> None:
    async with sessiondb.open_store(url) as store:
        if await store.backend.info("pg") is None:
            await store.create_session(session_id="pg", model="m")
        for text in texts:
            await store.append("pg", Message.user(text))


def test_ls_show_stats_on_postgres(pg_url: str) -> None:
    asyncio.run(_append(pg_url, "hello"))
    rows = json.loads(run_in_process("ls", pg_url, "--json").out)
    assert [row["session_id"] for row in rows] == ["pg"]
    assert "hello" in run_in_process("show", pg_url, "pg").out
    stats = run_in_process("stats", pg_url)
    assert stats.code == 0 and "segment" not in stats.out
    missing = run_in_process("show", pg_url, "nope")
    assert missing.code == 1 and "no session 'nope'" in missing.err


def test_tail_follows_another_process_on_postgres(pg_url: str) -> None:
    asyncio.run(_append(pg_url, "before"))
    tail = subprocess.Popen(
        [sys.executable, "-m", "sessiondb", "tail", pg_url, "pg", "-n", "1", "--json", "--count", "4"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(),
    )
    try:
        assert tail.stdout is not None and tail.stderr is not None
        assert json.loads(tail.stdout.readline())["version"] == 2  # following now
        asyncio.run(_append(pg_url, "a", "b", "c"))  # this process is not the tail's
        lines = [json.loads(line) for line in tail.stdout.read().splitlines()]
        assert [line["version"] for line in lines] == [3, 4, 5]
        assert tail.wait(timeout=30) == 0, tail.stderr.read()
    finally:
        if tail.poll() is None:
            tail.kill()
            tail.wait()
        assert tail.stdout is not None and tail.stderr is not None
        tail.stdout.close()
        tail.stderr.close()


@pytest.mark.parametrize("command", [["ls"], ["show", "x"], ["stats"], ["export", "x"], ["tail", "x", "-n", "0"]])
def test_reading_commands_never_create_a_schema(pg_url: str, command: list[str]) -> None:
    """`ls URL?schema=missing` said "no sessions" and created the schema with every table."""
    import asyncpg

    result = run_in_process(command[0], pg_url, *command[1:])
    schema = pg_url.rsplit("schema=", 1)[1]
    assert result.code == 1, result.out
    assert f"no sessiondb store in schema {schema}" in result.err and "opening it for writing" in result.err

    async def exists() -> bool:
        conn = await asyncpg.connect(pg_url.rsplit("?", 1)[0])
        try:
            return bool(await conn.fetchval("select exists (select 1 from pg_namespace where nspname = $1)", schema))
        finally:
            await conn.close()

    assert not asyncio.run(exists())


SECRET = "hunter2-secret"


def _with_password(url: str) -> str:
    """The URL with a password (trust auth takes any): no message may show it."""
    scheme, rest = url.split("://", 1)
    user, host = rest.split("@", 1)
    return f"{scheme}://{user.split(':')[0]}:{SECRET}@{host}"


def test_no_message_shows_the_password_of_a_store_url(pg_url: str, tmp_path: Path) -> None:
    asyncio.run(_append(pg_url, "hello"))
    url = _with_password(pg_url)
    results = {
        "search": run_in_process("search", url, "nothingmatchesthis"),
        "show": run_in_process("show", url, "nope"),
        "ls": run_in_process("ls", url, "--tag", "nope"),
        "title": run_in_process("title", url, "pg", " "),
        "export": run_in_process("export", "--html", url, "nope", str(tmp_path / "x.html")),
    }
    assert "no match for 'nothingmatchesthis' in" in results["search"].err + results["search"].out
    assert "no session 'nope'" in results["export"].err and "sessiondb ls" in results["export"].err
    for command, result in results.items():
        shown = result.out + result.err
        assert SECRET not in shown, (command, shown)
        assert ":***@" in shown, (command, shown)
