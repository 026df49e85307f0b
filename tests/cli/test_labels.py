"""``sessiondb title``, ``tag``, ``pin`` and the filters of ``ls``, on a real store (in-process and as a program)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

import sessiondb

from ._helpers import run_in_process, run_subprocess


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "store"

    async def build() -> None:
        async with sessiondb.open_store(path) as opened:
            await opened.create_session(session_id="alpha", scope="web")
            await opened.create_session(session_id="beta", scope="web")
            await opened.create_session(session_id="gamma", scope="api")
            await opened.create_session(session_id="plain")

    asyncio.run(build())
    return path


def ids(path: Path, *options: str) -> list[str]:
    result = run_in_process("ls", str(path), "--json", *options)
    assert result.code == 0, result.err
    return [row["session_id"] for row in json.loads(result.out)]


def test_title_tag_pin_then_filter(store: Path) -> None:
    done = run_in_process("title", str(store), "alpha", "Flaky LOGIN test")
    assert done.code == 0 and "alpha (version 2): title 'Flaky LOGIN test'" in done.out
    # +TAG and a bare TAG add, -TAG removes, in one command.
    assert run_in_process("tag", str(store), "alpha", "+bug", "ci", "-nothing").code == 0
    assert run_in_process("tag", str(store), "beta", "--add", "ci").code == 0
    done = run_in_process("tag", str(store), "alpha", "-ci", "--json")
    assert json.loads(done.out) == {
        "session_id": "alpha",
        "version": 4,
        "title": "Flaky LOGIN test",
        "tags": ["bug"],
        "pinned": False,
    }
    assert run_in_process("pin", str(store), "gamma").code == 0
    assert sorted(ids(store, "--scope", "web")) == ["alpha", "beta"]
    assert ids(store, "--tag", "bug") == ["alpha"]
    assert ids(store, "--tag", "ci") == ["beta"]
    assert ids(store, "--title", "login") == ["alpha"]
    assert ids(store, "--pinned") == ["gamma"]
    assert sorted(ids(store, "--unpinned")) == ["alpha", "beta", "plain"]
    assert ids(store, "--sort", "created", "--asc") == ["alpha", "beta", "gamma", "plain"]
    assert ids(store, "--sort", "created", "--limit", "2") == ["plain", "gamma"]
    assert ids(store, "--sort", "title", "--asc", "--limit", "1") == ["beta"]  # untitled first, then by id
    rows = json.loads(run_in_process("ls", str(store), "--json", "--scope", "api").out)
    assert (rows[0]["scope"], rows[0]["title"], rows[0]["tags"], rows[0]["pinned"]) == ("api", None, [], True)
    table = run_in_process("ls", str(store)).out.splitlines()
    assert table[0].split()[-3:] == ["TITLE", "TAGS", "SCOPE"]
    alpha = next(line for line in table if line.startswith("alpha"))
    assert "Flaky LOGIN test" in alpha and "bug" in alpha and "web" in alpha
    assert "*" in next(line for line in table if line.startswith("gamma"))  # pinned
    assert run_in_process("pin", str(store), "gamma", "--off").code == 0
    assert ids(store, "--pinned") == []
    assert run_in_process("title", str(store), "alpha", "--clear").code == 0
    assert ids(store, "--title", "login") == []
    # The history keeps the old labels.
    shown = run_in_process("show", str(store), "alpha", "--at", "2").out
    assert "Flaky LOGIN test" in shown
    raw = run_in_process("show", str(store), "alpha", "--raw").out
    assert "title: Flaky LOGIN test" in raw and "tags +bug +ci" in raw and "title cleared" in raw


def test_no_match_and_bad_input_are_one_line_errors(store: Path) -> None:
    empty = run_in_process("ls", str(store), "--tag", "none")
    assert empty.code == 0 and empty.out == "" and "no sessions match" in empty.err
    for argv, complaint in [
        (("tag", str(store), "alpha", "+bad tag"), "is not allowed"),
        (("tag", str(store), "alpha", "+x", "-x"), "both added and removed"),
        (("title", str(store), "alpha"), "--clear"),
        (("title", str(store), "alpha", "two\nlines"), "one line"),
        (("title", str(store), "nobody", "x"), "no session 'nobody'"),
        (("ls", str(store), "--tag=-x"), "is not allowed"),
    ]:
        result = run_in_process(*argv)
        assert result.code == 1, argv
        assert result.err.startswith("sessiondb: error:") and complaint in result.err, result.err
        assert len(result.err.splitlines()) == 1
    assert run_in_process("ls", str(store), "--bogus").code == 2
    assert run_in_process("pin", str(store), "alpha", "-x").code == 2  # removals belong to tag only
    assert ids(store, "--tag", "x") == []


def test_as_a_program(store: Path) -> None:
    assert run_subprocess("tag", str(store), "beta", "+urgent", "-missing").code == 0
    result = run_subprocess("ls", str(store), "--tag", "urgent", "--json")
    assert [row["session_id"] for row in json.loads(result.out)] == ["beta"]


def test_values_starting_with_a_dash_say_how(store: Path) -> None:
    """Claude project keys start with '-': `ls --scope -home-me-app` failed with argparse's bare complaint."""
    for argv, hint in [
        (("ls", str(store), "--scope", "-home-me-app"), "write --scope=-home-me-app"),
        (("ls", str(store), "--title", "-draft"), "write --title=-draft"),
        (("ls", str(store), "--tag", "-x"), "write --tag=-x"),
        (("title", str(store), "alpha", "-draft-"), "put -- before it: ... -- -draft-"),
    ]:
        result = run_in_process(*argv)
        assert result.code == 2 and hint in result.err, (argv, result.err)
    assert run_in_process("ls", str(store), "--scope", "-home-me-app").err.count("expected one argument") == 1

    async def scoped() -> None:
        async with sessiondb.open_store(store) as opened:
            await opened.create_session(session_id="claude", scope="-home-me-app")

    asyncio.run(scoped())
    assert ids(store, "--scope=-home-me-app") == ["claude"]
    assert run_in_process("title", str(store), "claude", "--", "-draft-").code == 0
    assert ids(store, "--title=-draft") == ["claude"]
    # In `tag`, -TAG removes wherever it stands, after -- too (no tag starts with '-').
    assert run_in_process("tag", str(store), "claude", "+ci").code == 0
    assert run_in_process("tag", str(store), "claude", "--", "-ci").code == 0
    assert ids(store, "--tag", "ci") == []


def test_errors_speak_command_line(store: Path) -> None:
    """Library advice ("clear it with None", "pass None") leaked into CLI errors; a clash did not name the session."""
    for argv, complaint in [
        (("title", str(store), "alpha", ""), "--clear"),
        (("title", str(store), "alpha", "   "), "--clear"),
        (("ls", str(store), "--scope", ""), "leave --scope out"),
        (("ls", str(store), "--scope", "  "), "leave --scope out"),
        (("ls", str(store), "--title", ""), "leave --title out"),
        (("tag", str(store), "alpha", "+1x", "-1x"), "for session 'alpha'"),
    ]:
        result = run_in_process(*argv)
        assert result.code == 1 and complaint in result.err, (argv, result.err)
        assert "None" not in result.err, result.err


@pytest.mark.parametrize("limit", ["0", "-1", "10001"])
def test_ls_limit_outside_a_page_is_a_usage_error(store: Path, limit: str) -> None:
    """`ls --limit 0` printed "no sessions in STORE" for a store with sessions."""
    result = run_in_process("ls", str(store), "--limit", limit)
    assert result.code == 2 and "--limit" in result.err and "no sessions" not in result.err
    assert run_in_process("tail", str(store), "--count", "0").code == 2
    assert len(ids(store, "--limit", "10000")) == 4


def test_ls_truncates_long_titles_and_shows_bidi_controls_escaped(store: Path) -> None:
    """`ls` printed a 500-character title whole, and a title with U+202E raw (it reorders the terminal line)."""
    long = "word " * 99 + "end!"
    assert run_in_process("title", str(store), "alpha", long).code == 0
    line = next(line for line in run_in_process("ls", str(store)).out.splitlines() if line.startswith("alpha"))
    assert "…" in line and "end!" not in line and len(line) < 200
    assert json.loads(run_in_process("ls", str(store), "--json", "--title", "end!").out)[0]["title"] == long
    refused = run_in_process("title", str(store), "beta", "evil\u202egnp.exe")
    assert refused.code == 1 and "bidirectional" in refused.err

    async def old_log_title() -> None:  # a title stored before the rule: it loads, and shows escaped
        async with sessiondb.open_store(store) as opened:
            await opened._submit(
                sessiondb._backends._base.AppendRequest(
                    "beta", (sessiondb.TitleChanged("evil\u202egnp.exe"),), timestamp_ms=1
                )
            )

    asyncio.run(old_log_title())

    async def bidi_id() -> None:  # ids and models may hold them: the other columns show them escaped too
        async with sessiondb.open_store(store) as opened:
            await opened.create_session(session_id="id\u2067x", model="m\u202a")

    asyncio.run(bidi_id())
    table = run_in_process("ls", str(store)).out
    assert "\u202e" not in table and "evil\\u202egnp.exe" in table
    assert "\u2067" not in table and "id\\u2067x" in table and "m\\u202a" in table
    shown = run_in_process("show", str(store), "beta").out + run_in_process("show", str(store), "beta", "--raw").out
    assert "\u202e" not in shown and "\\u202e" in shown
