"""Every command on a real store, in-process and as ``python -m sessiondb``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

import sessiondb
from sessiondb.cli._progress import Progress

from ._helpers import FakeTTY, build_sample_store, run_in_process, run_subprocess


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "store"
    build_sample_store(path)
    return path


def test_ls_newest_first_with_fork_and_model(sample: Path) -> None:
    result = run_in_process("ls", str(sample))
    assert result.code == 0 and result.err == ""
    lines = result.out.splitlines()
    assert lines[0].split() == ["SESSION", "UPDATED", "HOLDS", "TOKENS", "MODEL", "FORK", "OF"]
    assert [line.split()[0] for line in lines[1:]] == ["other", "chat-fork", "chat"]
    fork_line = lines[2]
    assert "chat@3 (try-2)" in fork_line and "claude-test" in fork_line
    chat = lines[3].split()
    assert chat[3:7] == ["4", "messages", "275", "claude-test"]  # holds, tokens (100+20+150+5), model
    assert "\x1b[" not in result.out  # plain when not a terminal


def test_ls_aligns_wide_characters_and_cuts_long_ids(tmp_path: Path) -> None:
    """Columns line up on screen (a CJK character or an emoji takes two columns) and a 224-byte id is cut with
    an ellipsis in the middle, in the table only (``--json`` has it whole)."""
    path = tmp_path / "store"
    long_id = "cc~-home-me-app~" + "a" * 200 + "-end-1234"  # 225 bytes: one too many, then cut to fit
    long_id = long_id[:224]

    async def build() -> None:
        async with sessiondb.open_store(path) as store:
            await store.create_session(session_id="plain", model="m")
            await store.create_session(session_id="日本語のセッション", model="模型")
            await store.create_session(session_id="party-🎉-❤️-done", model="m")
            await store.create_session(session_id=long_id)
            await store.fork(long_id, session_id="child", branch_name="ветка-分支")

    asyncio.run(build())
    from sessiondb.cli._render import display_width

    result = run_in_process("ls", str(path), "--sort", "created", "--asc")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert len(lines) == 6
    # Where the UPDATED column starts, in terminal columns: the same on every line.
    starts = {display_width(line[: line.index("UPDATED" if n == 0 else "20")]) for n, line in enumerate(lines)}
    assert len(starts) == 1, result.out
    models = {
        display_width(line[: line.index("MODEL") if n == 0 else line.rindex(f" {line.split()[-2]} ") + 1])
        for n, line in enumerate(lines[:4])
    }
    assert len(models) == 1, result.out
    # Sessions created in the same millisecond may list in either order: find the rows by their start.
    (long_row,) = [line for line in lines if line.startswith("cc~-home-me-app~aaa")]
    (child_row,) = [line for line in lines if line.startswith("child ")]
    assert long_id not in result.out and "…" in long_row
    assert "-end-1234"[: len(long_id) - 216] in long_row  # the end of the id is kept too
    assert "…" in child_row and "ветка-分支" in child_row  # the fork's parent, cut the same way
    assert max(display_width(line) for line in lines) < 180  # not the 224-byte id twice over
    rows = json.loads(run_in_process("ls", str(path), "--json").out)
    assert long_id in {row["session_id"] for row in rows}


def test_display_width_and_cuts() -> None:
    from sessiondb.cli._render import cut, display_width

    assert [display_width(text) for text in ("abc", "测试", "🎉", "❤️", "e\u0301", "a\u200db")] == [3, 4, 2, 2, 1, 2]
    assert cut("测试测试测试", 7) == "测试测…" and display_width(cut("测试测试测试", 7)) == 7
    assert cut("abcdefghij", 7, middle=True) == "abc…hij"
    assert cut("short", 7, middle=True) == "short"


def test_ls_json_and_limit(sample: Path) -> None:
    rows = json.loads(run_in_process("ls", str(sample), "--json").out)
    assert [row["session_id"] for row in rows] == ["other", "chat-fork", "chat"]
    fork = rows[1]
    assert (fork["parent_session_id"], fork["parent_version"], fork["branch_name"]) == ("chat", 3, "try-2")
    assert rows[2]["usage"] == {
        "input_tokens": 250,
        "output_tokens": 25,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }
    assert rows[2]["updated_at"].endswith("+00:00")
    limited = json.loads(run_in_process("ls", str(sample), "--json", "--limit", "1").out)
    assert [row["session_id"] for row in limited] == ["other"]


def test_ls_empty_store_says_so_on_stderr(tmp_path: Path) -> None:
    asyncio.run(_create_empty(tmp_path / "empty"))
    result = run_in_process("ls", str(tmp_path / "empty"))
    assert (result.code, result.out) == (0, "")
    assert "no sessions" in result.err


async def _create_empty(path: Path) -> None:
    async with sessiondb.open_store(path):
        pass


def test_show_renders_the_conversation(sample: Path) -> None:
    result = run_in_process("show", str(sample), "chat")
    assert result.code == 0
    text = result.out
    assert "session  chat" in text and "claude-test" in text and "version 5" in text
    assert "--- user" in text and "List the files" in text
    assert "--- assistant (in 100 / out 20)" in text
    assert "[thinking: 85 characters, folded; --thinking shows it]" in text
    assert "secret reasoning" not in text
    assert "[tool call] bash (call-1)" in text and '"cmd": "ls"' in text
    assert "[tool result] bash (call-1)" in text
    assert "  f11\n" in text and "  f12\n" not in text and "28 more line(s) (--full)" in text
    assert "in 250 / out 25 (total 275)" in text
    unfolded = run_in_process("show", str(sample), "chat", "--thinking", "--full").out
    assert "secret reasoning" in unfolded and "  f39\n" in unfolded


def test_show_time_travel_fork_and_compaction(sample: Path) -> None:
    early = run_in_process("show", str(sample), "chat", "--at", "2").out
    assert "version 2" in early and "1 message(s)" in early and "40 files." not in early
    fork = run_in_process("show", str(sample), "chat-fork").out
    assert "fork of  chat@3 (try-2)" in fork and "2 message(s)" in fork
    other = run_in_process("show", str(sample), "other").out
    assert "compacted 1 time(s)" in other and "1 in the prompt history" in other
    assert "they said two things" in other


def test_show_raw_and_json(sample: Path) -> None:
    raw = run_in_process("show", str(sample), "chat", "--raw").out.splitlines()
    assert len(raw) == 5
    assert "v1  p1  session started (model claude-test)" in raw[0]
    assert "assistant: [thinking 85 chars] Looking. [tool call bash] (in 100 / out 20)" in raw[2]
    raw_lines = run_in_process("show", str(sample), "chat", "--raw", "--json").out.splitlines()
    raw_json = [json.loads(line) for line in raw_lines]
    assert [event["version"] for event in raw_json] == [1, 2, 3, 4, 5]
    assert raw_json[1]["event"] == {
        "type": "message",
        "role": "user",
        "blocks": [{"type": "text", "text": "List the files"}],
        "usage": None,
    }
    at = run_in_process("show", str(sample), "chat", "--raw", "--at", "2").out.splitlines()
    assert len(at) == 2
    fork_raw = run_in_process("show", str(sample), "chat-fork", "--raw").out.splitlines()
    assert [line.split()[2] for line in fork_raw] == ["chat", "chat", "chat", "chat-fork"]
    state = json.loads(run_in_process("show", str(sample), "chat", "--json").out)
    assert state["session_id"] == "chat" and state["version"] == 5 and len(state["messages"]) == 4
    assert state["usage"]["input_tokens"] == 250


def test_stats(sample: Path) -> None:
    result = run_in_process("stats", str(sample))
    assert result.code == 0
    assert "3 (1 fork(s))" in result.out
    assert "events" in result.out and "in 1 segment(s)" in result.out
    data = json.loads(run_in_process("stats", str(sample), "--json").out)
    assert (data["sessions"], data["forks"], data["events"], data["segments"]) == (3, 1, 11, 1)
    assert data["log_bytes"] == (sample / "0000000001.seg").stat().st_size
    assert data["torn_tail"] == []


def test_tail_prints_recent_events_then_stops_at_count(sample: Path) -> None:
    result = run_in_process("tail", str(sample), "-n", "3", "--count", "2")
    lines = result.out.splitlines()
    assert result.code == 0 and len(lines) == 2
    assert "other" in lines[0] and "p9" in lines[0] and "p10" in lines[1]
    one = run_in_process("tail", str(sample), "chat", "-n", "2", "--count", "2", "--json").out.splitlines()
    assert [json.loads(line)["version"] for line in one] == [4, 5]


def test_export_and_import_round_trip(sample: Path, tmp_path: Path) -> None:
    target = tmp_path / "chat.jsonl"
    result = run_in_process("export", str(sample), "chat", str(target))
    assert result.code == 0 and "exported session chat" in result.err
    assert target.read_text().count("\n") >= 5
    directory = tmp_path / "all"
    assert run_in_process("export", str(sample), "--all", str(directory)).code == 0
    assert sorted(p.name for p in directory.iterdir()) == ["chat-fork.jsonl", "chat.jsonl", "other.jsonl"]
    new_store = tmp_path / "imported"
    imported = run_in_process("import", str(new_store), str(directory))
    assert imported.code == 0 and "imported 3 session(s)" in imported.out
    rows = json.loads(run_in_process("ls", str(new_store), "--json").out)
    assert {row["session_id"] for row in rows} == {"chat", "chat-fork", "other"}
    again = run_in_process("import", str(new_store), str(target), "--skip-existing", "--json")
    assert again.code == 0 and json.loads(again.out)["skipped_sessions"][0][1] == "chat"
    early = tmp_path / "early.jsonl"
    assert run_in_process("export", str(sample), "chat", str(early), "--at", "2").code == 0
    assert early.read_text().count('"role":"assistant"') == 0 and "List the files" in early.read_text()


def test_verify_and_repair_a_healthy_store(sample: Path) -> None:
    result = run_in_process("verify", str(sample))
    assert result.code == 0 and result.out.strip().endswith("OK")
    assert json.loads(run_in_process("verify", str(sample), "--json").out)["ok"] is True


def test_repair_and_verify_a_damaged_store(tmp_path: Path) -> None:
    path = tmp_path / "store"
    build_sample_store(path)
    segment = path / "0000000001.seg"
    data = bytearray(segment.read_bytes())
    middle = data.index(b"List the files")
    data[middle : middle + 4] = b"XXXX"  # an interior record: corruption, valid frames follow
    segment.write_bytes(bytes(data))
    verify = run_in_process("verify", str(path))
    assert verify.code == 1 and "CORRUPT" in verify.out
    assert verify.err.count("\n") == 1 and "is corrupt" in verify.err
    listing = run_in_process("ls", str(path))
    assert listing.code == 1 and "corrupt data in" in listing.err and "Traceback" not in listing.err
    repaired = run_in_process("repair", str(path))
    assert repaired.code == 0 and "dropped" in repaired.out
    assert run_in_process("verify", str(path)).code == 0
    assert run_in_process("ls", str(path)).code == 0


def test_compact(tmp_path: Path) -> None:
    path = tmp_path / "store"
    build_sample_store(path)
    result = run_in_process("compact", str(path))
    assert result.code == 0, result
    assert result.out.startswith(f"compacted store {path} in ") and "snapshot(s) written" in result.out
    data = json.loads(run_in_process("compact", str(path), "--json").out)
    assert set(data["result"]) >= {"snapshots_written", "segments_deleted", "bytes_reclaimed"}
    assert data["statistics"]["sessions"] == 3
    assert run_in_process("show", str(path), "chat").code == 0  # compaction never changes what load returns


def test_progress_bar_only_on_a_terminal(sample: Path, tmp_path: Path) -> None:
    tty = FakeTTY()
    with Progress("work", 4, stream=tty) as progress:
        for _ in range(4):
            progress.advance()
    assert "work [" in tty.getvalue() and tty.getvalue().endswith("\r\x1b[K")
    piped = FakeTTY()
    piped.isatty = lambda: False  # type: ignore[method-assign]
    with Progress("work", 4, stream=piped) as progress:
        progress.advance()
    assert piped.getvalue() == ""
    # A real command draws it on a terminal's stderr (and only there).
    err = FakeTTY()
    run_in_process("export", str(sample), "--all", str(tmp_path / "out"), stderr=err)
    assert "exporting [" in err.getvalue() and "sessions" in err.getvalue()
    err = FakeTTY()
    assert run_in_process("import", str(tmp_path / "again"), str(tmp_path / "out"), stderr=err).code == 0
    assert "importing [" in err.getvalue() and "3/3 sessions" in err.getvalue()
    err = FakeTTY()
    assert run_in_process("verify", str(sample), stderr=err).code == 0
    assert "verifying" in err.getvalue()


def test_python_dash_m_runs_each_command(sample: Path, tmp_path: Path) -> None:
    assert run_subprocess("ls", str(sample)).out.splitlines()[1].startswith("other")
    show = run_subprocess("show", str(sample), "chat")
    assert show.code == 0 and "[tool call] bash" in show.out
    assert run_subprocess("stats", str(sample), "--json").code == 0
    assert run_subprocess("verify", str(sample)).code == 0
    assert run_subprocess("tail", str(sample), "--count", "1").code == 0
    assert run_subprocess("export", str(sample), "chat", str(tmp_path / "c.jsonl")).code == 0
    assert run_subprocess("import", str(tmp_path / "new"), str(tmp_path / "c.jsonl")).code == 0
    help_text = run_subprocess("--help")
    assert help_text.code == 0 and "tail" in help_text.out


def test_compact_names_recorded_projections_it_cannot_compute_and_forgets_one(tmp_path: Path) -> None:
    path = tmp_path / "store"

    async def fill() -> None:
        settings = sessiondb.CompactionSettings(background=False)
        async with sessiondb.open_store(path, segment_bytes=2048, compaction=settings) as store:
            store.register_projection(
                sessiondb.Projection("app.count", lambda sid: 0, lambda n, e: n + 1, state_type=int)
            )
            sid = await store.create_session(session_id="chat")
            for turn in range(60):
                await store.append(sid, sessiondb.Message.user(f"turn {turn} " + "z" * 60))

    asyncio.run(fill())
    segments = len([name for name in path.iterdir() if name.suffix == ".seg"])
    kept = run_in_process("compact", str(path), "--purge")
    assert kept.code == 0, kept
    assert "kept the history of projection(s) 'app.count'" in kept.out and "--forget-projection" in kept.out
    assert len([name for name in path.iterdir() if name.suffix == ".seg"]) >= segments
    wrong = run_in_process("compact", str(path), "--forget-projection", "app.cuont")
    assert wrong.code != 0 and "'app.cuont'" in wrong.err and "'app.count'" in wrong.err
    forgot = run_in_process("compact", str(path), "--purge", "--forget-projection", "app.count")
    assert forgot.code == 0, forgot
    assert "forgot projection 'app.count'" in forgot.out and "kept the history" not in forgot.out
    assert json.loads(run_in_process("compact", str(path), "--json").out)["result"]["segments_deleted"] == 0
    assert len([name for name in path.iterdir() if name.suffix == ".seg"]) < segments
