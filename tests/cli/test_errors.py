"""Every bad path, bad id, bad argument, locked store and corrupt file: one line on stderr, non-zero status."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from ._helpers import Result, build_sample_store, environment, run_in_process, run_subprocess

RUNNERS: dict[str, Callable[..., Result]] = {"in-process": run_in_process, "subprocess": run_subprocess}


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("errors")
    build_sample_store(root / "store")
    (root / "plain-file").write_text("not a store")
    (root / "not-a-store").mkdir()
    (root / "not-a-store" / "notes.txt").write_text("hello")
    (root / "bad.jsonl").write_text('{"type":"session_meta","version":1,"session_id":"x"\n')
    corrupt = root / "corrupt"
    build_sample_store(corrupt)
    segment = corrupt / "0000000001.seg"
    data = bytearray(segment.read_bytes())
    at = data.index(b"List the files")
    data[at : at + 4] = b"ZZZZ"
    segment.write_bytes(bytes(data))
    return root


CASES: list[tuple[str, list[str], str]] = [
    ("missing store", ["ls", "{root}/nowhere"], "no store at {root}/nowhere: no such directory"),
    ("file as store", ["stats", "{root}/plain-file"], "is a file, not a store directory"),
    ("directory without segments", ["show", "{root}/not-a-store", "x"], "is not a sessiondb store"),
    ("memory store", ["ls", ":memory:"], "':memory:' is a store inside one process"),
    ("unknown session", ["show", "{root}/store", "nope"], "no session 'nope' in store"),
    ("unsafe session id", ["show", "{root}/store", "a/b"], "session id 'a/b' contains '/'"),
    ("version past the end", ["show", "{root}/store", "chat", "--at", "99"], "has versions 0..5; got 99"),
    ("raw version past the end", ["show", "{root}/store", "chat", "--raw", "--at", "99"], "has versions 0..5"),
    ("tail unknown session", ["tail", "{root}/store", "nope"], "no session 'nope'"),
    ("export unknown session", ["export", "{root}/store", "nope", "{root}/x.jsonl"], "no session 'nope'"),
    ("export into missing dir", ["export", "{root}/store", "chat", "{root}/no/dir/x.jsonl"], "does not exist"),
    ("export without a file", ["export", "{root}/store", "chat"], "export needs a session and a file"),
    ("export all onto a file", ["export", "{root}/store", "--all", "{root}/plain-file"], "is a file"),
    ("import missing file", ["import", "{root}/new-store", "{root}/absent.jsonl"], "no such file or directory"),
    ("import malformed file", ["import", "{root}/new-store-2", "{root}/bad.jsonl"], "cannot import {root}/bad.jsonl"),
    ("import into a non-store", ["import", "{root}/not-a-store", "{root}/bad.jsonl"], "is not a sessiondb store"),
    ("corrupt store", ["ls", "{root}/corrupt"], "corrupt data in {root}/corrupt/0000000001.seg at byte offset"),
    ("corrupt store show", ["show", "{root}/corrupt", "chat"], "corrupt data in"),
    ("verify corrupt", ["verify", "{root}/corrupt"], "is corrupt: corruption in"),
    ("verify missing", ["verify", "{root}/nowhere"], "no store at"),
    ("repair non-store", ["repair", "{root}/not-a-store"], "is not a sessiondb store"),
]


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize(("argv", "message"), [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_error_is_one_line(place: Path, runner: str, argv: list[str], message: str) -> None:
    root = str(place)
    result = RUNNERS[runner](*(arg.format(root=root) for arg in argv))
    assert result.code == 1, result
    assert result.err.startswith("sessiondb: error: "), result.err
    assert result.err.count("\n") == 1, result.err
    assert message.format(root=root) in result.err
    assert "Traceback" not in result.err


USAGE_CASES = [
    ["nonsense"],
    [],
    ["ls"],
    ["show", "store"],
    ["show", "store", "id", "--at", "-1"],
    ["show", "store", "id", "--at", "x"],
    ["tail", "store", "-n", "many"],
    ["tail", "store", "--interval", "0"],
    ["import", "store"],
]


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("argv", USAGE_CASES, ids=[" ".join(a) or "(nothing)" for a in USAGE_CASES])
def test_usage_errors_exit_2(runner: str, argv: list[str]) -> None:
    result = RUNNERS[runner](*argv)
    assert result.code == 2
    assert "usage: sessiondb" in result.err and "Traceback" not in result.err


def test_store_locked_by_a_writer_process(place: Path, tmp_path: Path) -> None:
    """Beside a writing process: repair refuses clearly, other writing commands work, reading commands too."""
    store = tmp_path / "busy"
    build_sample_store(store)
    child = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("_writer_child.py")), str(store)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=environment(),
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "ready"
        child.stdin.write("append hello from the writer\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "ok 2"
        for runner in RUNNERS.values():
            # Repair needs the directory alone: refused at once, saying why and what to do.
            result = runner("repair", str(store))
            assert result.code == 1, result
            assert result.err.count("\n") == 1 and "Traceback" not in result.err
            assert "open for writing" in result.err and str(store) in result.err, result.err
            # Several processes may write (docs/multiprocess.md): compact runs, a bad import names its line.
            assert runner("compact", str(store)).code == 0
            result = runner("import", str(store), str(place / "bad.jsonl"))
            assert result.code == 1 and "bad.jsonl:1" in result.err and "Traceback" not in result.err, result
        # Reading commands work beside the writer and see what it acknowledged.
        for runner in RUNNERS.values():
            listing = runner("ls", str(store), "--json")
            assert listing.code == 0, listing
            assert {row["session_id"] for row in json.loads(listing.out)} >= {"chat", "live"}
            shown = runner("show", str(store), "live")
            assert shown.code == 0 and "hello from the writer" in shown.out
            assert runner("stats", str(store)).code == 0
            assert runner("verify", str(store)).code == 0
            assert runner("export", str(store), "live", str(tmp_path / "live.jsonl")).code == 0
    finally:
        if child.stdin is not None:
            child.stdin.write("quit\n")
            child.stdin.close()
        child.wait(timeout=30)
        if child.stdout is not None:
            child.stdout.close()
    assert child.returncode == 0


def test_a_bad_search_cursor_names_the_option(place: Path) -> None:
    result = run_in_process("search", str(place / "store"), "files", "--cursor", "garbage")
    assert result.code == 1
    assert "--cursor 'garbage' is not one this search printed" in result.err
    assert "start again without --cursor" in result.err and "cursor=" not in result.err


@pytest.mark.parametrize("limit", ["0", "1001", "-1", "many"])
def test_search_limit_out_of_range_is_a_usage_error(place: Path, limit: str) -> None:
    result = run_in_process("search", str(place / "store"), "files", "--limit", limit)
    assert result.code == 2, result
    assert "argument --limit" in result.err


def test_search_limit_takes_the_whole_range(place: Path) -> None:
    for limit in ("1", "1000"):
        assert run_in_process("search", str(place / "store"), "files", "--limit", limit).code == 0


def test_a_missing_web_extra_says_how_to_install_it_from_the_checkout(place: Path) -> None:
    # Starlette hidden from this one process: the import fails as it does without the extra.
    code = (
        "import sys; sys.modules['starlette'] = None; from sessiondb.cli import main; "
        f"sys.exit(main(['serve', {str(place / 'store')!r}]))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment(), timeout=60)
    assert done.returncode == 1, done.stderr
    assert "needs the web extra (starlette" in done.stderr
    assert "pip install '.[web]' in the sessiondb checkout" in done.stderr and "sessiondb[" not in done.stderr
