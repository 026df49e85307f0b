"""``tail`` follows a store that another process is writing, across segment roll-overs, read-only."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import sessiondb
from sessiondb.cli._tail import LogFollower

from ._helpers import build_sample_store, environment, run_in_process

CHILD = str(Path(__file__).with_name("_writer_child.py"))


class _Writer:
    def __init__(self, store: Path, segment_bytes: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, CHILD, str(store), str(segment_bytes)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=environment(),
        )
        assert self.readline() == "ready"

    def readline(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.readline().strip()

    def send(self, line: str) -> str:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        return self.readline()

    def close(self) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("quit\n")
        self.process.stdin.close()
        self.process.wait(timeout=30)
        self.process.stdout.close()
        assert self.process.returncode == 0


def _tail(*argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "sessiondb", "tail", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(),
    )


def test_tail_follows_another_process_across_segments(tmp_path: Path) -> None:
    store = tmp_path / "store"
    writer = _Writer(store, segment_bytes=2048)  # a small segment size: the writer rolls over often
    one = all_ = None
    try:
        one = _tail(str(store), "live", "-n", "1", "--json", "--interval", "0.02", "--count", "62")
        all_ = _tail(str(store), "-n", "1", "--interval", "0.02", "--count", "63")
        assert one.stdout is not None and all_.stdout is not None
        first = json.loads(one.stdout.readline())
        assert (first["session_id"], first["version"]) == ("live", 1)  # history printed: it is following now
        assert "session started" in all_.stdout.readline()
        for i in range(30):
            assert writer.send(f"append message {i}") == f"ok {i + 2}"
        assert writer.send("create someone-else") == "ok"
        for i in range(30, 60):
            assert writer.send(f"append message {i}") == f"ok {i + 2}"
        assert writer.send("append the end") == "ok 62"
        followed = [json.loads(line) for line in one.stdout.read().splitlines()]
        assert [event["version"] for event in followed] == list(range(2, 63))
        assert followed[0]["event"]["blocks"][0]["text"] == "message 0"
        assert followed[-1]["event"]["blocks"][0]["text"] == "the end"
        everything = all_.stdout.read().splitlines()
        assert len(everything) == 62
        assert "someone-else" in everything[30] and "session started" in everything[30]
        assert everything[-1].endswith("user: the end")
        assert one.wait(timeout=30) == 0 and all_.wait(timeout=30) == 0
        assert len(list(store.glob("*.seg"))) > 2  # it really crossed segments
    finally:
        for process in (one, all_):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
            if process is not None:
                assert process.stdout is not None and process.stderr is not None
                process.stdout.close()
                process.stderr.close()
        writer.close()


def test_tail_in_process_while_a_writer_appends(tmp_path: Path) -> None:
    store = tmp_path / "store"
    writer = _Writer(store, segment_bytes=64 * 1024)
    try:
        result: dict[str, object] = {}

        class Lines:
            def __init__(self) -> None:
                self.lines: list[str] = []
                self.partial = ""
                self.seen = threading.Event()

            def write(self, text: str) -> int:
                self.partial += text
                *complete, self.partial = self.partial.split("\n")
                self.lines.extend(complete)
                if self.lines:
                    self.seen.set()
                return len(text)

            def flush(self) -> None:
                pass

        out = Lines()
        import io

        thread = threading.Thread(
            target=lambda: result.setdefault(
                "code",
                sessiondb.cli.main(
                    ["tail", str(store), "live", "-n", "1", "--count", "4", "--interval", "0.02"],
                    stdout=out,  # type: ignore[arg-type]
                    stderr=io.StringIO(),
                ),
            )
        )
        thread.start()
        assert out.seen.wait(timeout=30)  # the history line: tail is following
        for i in range(3):
            writer.send(f"append in-process {i}")
        thread.join(timeout=30)
        assert result["code"] == 0
        assert [line.rsplit("user: ", 1)[-1] for line in out.lines[1:]] == [f"in-process {i}" for i in range(3)]
    finally:
        writer.close()


def test_follower_waits_for_a_frame_being_written(tmp_path: Path) -> None:
    store = tmp_path / "store"
    build_sample_store(store)
    segment = store / "0000000001.seg"
    complete = segment.read_bytes()
    last_frame = complete.rindex(b'{"batch":')
    header = json.loads(complete[last_frame : complete.index(b"\n", last_frame)])
    follower = LogFollower(str(store), 1, last_frame, header["first"])
    segment.write_bytes(complete[: last_frame + 30])  # the writer is half-way through its write
    assert follower.poll() == []
    segment.write_bytes(complete[:-1])  # all but the last byte: the checksum cannot match yet
    assert follower.poll() == []
    segment.write_bytes(complete)
    events = follower.poll()
    assert [event.position for event in events] == list(range(header["first"], header["first"] + header["batch"]))
    assert follower.poll() == []
    # And the stats of a store with a frame being written report it as a torn tail, read-only.
    segment.write_bytes(complete + b'{"batch":1,"bytes":99,"crc":1,"first":99}\n{"s"')
    stats = json.loads(run_in_process("stats", str(store), "--json").out)
    assert stats["torn_tail"] and stats["torn_tail"][0]["offset"] == len(complete)


def test_ctrl_c_stops_tail_quietly(tmp_path: Path) -> None:
    store = tmp_path / "store"
    build_sample_store(store)
    process = _tail(str(store), "-n", "1", "--interval", "0.05")
    assert process.stdout is not None and process.stderr is not None
    assert "p11" in process.stdout.readline()  # following now
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 130
    assert process.stderr.read() == ""
    process.stdout.close()
    process.stderr.close()


def test_a_reader_that_goes_away_is_not_an_error(tmp_path: Path) -> None:
    store = tmp_path / "store"

    async def build() -> None:
        async with sessiondb.open_store(store) as opened:
            sid = await opened.create_session(session_id="long")
            for start in range(0, 3000, 500):
                batch = [sessiondb.Message.user(f"line {i} " + "x" * 80) for i in range(start, start + 500)]
                await opened.append(sid, *batch)

    asyncio.run(build())
    process = subprocess.Popen(
        [sys.executable, "-m", "sessiondb", "show", str(store), "long", "--raw"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environment(),
    )
    assert process.stdout is not None and process.stderr is not None
    assert b"session started" in process.stdout.readline()
    process.stdout.close()  # like `| head -1`
    code = process.wait(timeout=30)
    assert code in (0, 141)
    assert b"Traceback" not in process.stderr.read() and code != 1
    process.stderr.close()


def test_tail_of_a_session_ends_when_it_is_deleted(tmp_path: Path) -> None:
    store = tmp_path / "store"
    writer = _Writer(store, segment_bytes=64 * 1024)
    tail = None
    try:
        tail = _tail(str(store), "live", "-n", "1", "--interval", "0.02")
        assert tail.stdout is not None and tail.stderr is not None
        assert "session started" in tail.stdout.readline()
        assert writer.send("append bye") == "ok 2"
        assert writer.send("delete live") == "ok"
        rest = tail.stdout.read().splitlines()
        assert rest[0].endswith("user: bye") and rest[1].endswith("session deleted")
        assert tail.wait(timeout=30) == 0
    finally:
        if tail is not None:
            if tail.poll() is None:
                tail.kill()
                tail.wait()
            assert tail.stdout is not None and tail.stderr is not None
            tail.stdout.close()
            tail.stderr.close()
        writer.close()


async def _rolled_store(path: Path) -> None:
    """A store whose log rolled through several segments (2 KiB each)."""
    async with sessiondb.open_store(path, segment_bytes=2048) as store:
        await store.create_session(session_id="s")
        for turn in range(40):
            await store.append("s", sessiondb.Message.user(f"turn {turn} " + "z" * 80))


async def _retain(path: Path, keep_segments: int) -> int:
    settings = sessiondb.CompactionSettings(
        background=False, min_tail_events=5, min_tail_bytes=10**9, keep_segments=keep_segments
    )
    async with sessiondb.open_store(path, segment_bytes=2048, compaction=settings) as store:
        deleted: int = (await store.compact())["segments_deleted"]
    return deleted


def _header(segment: Path) -> dict[str, int]:
    data = segment.read_bytes()
    return dict(json.loads(data[: data.index(b"\n")]))


def test_a_tail_whose_segment_retention_removed_says_what_is_gone(tmp_path: Path) -> None:
    """Stopped (Ctrl-Z) in segment 1 while retention removed it and more: an error naming the positions."""
    store = tmp_path / "store"
    asyncio.run(_rolled_store(store))
    first = store / "0000000001.seg"
    start = first.read_bytes().index(b"\n") + 1
    follower = LogFollower(str(store), 1, start, 1)  # it has read nothing of segment 1 yet
    assert asyncio.run(_retain(store, keep_segments=0)) > 1 and not first.exists()
    left = min(name for name in os.listdir(store) if name.endswith(".seg"))
    gone_until = _header(store / left)["first_position"] - 1
    with pytest.raises(sessiondb.HistoryUnavailableError, match=f"positions 1..{gone_until} of store"):
        follower.poll()


def test_a_tail_that_read_a_removed_segment_to_its_end_goes_on(tmp_path: Path) -> None:
    store = tmp_path / "store"
    asyncio.run(_rolled_store(store))
    first, second = store / "0000000001.seg", store / "0000000002.seg"
    next_position = _header(second)["first_position"]
    follower = LogFollower(str(store), 1, first.stat().st_size, next_position)  # segment 1 read whole
    sealed = len([name for name in os.listdir(store) if name.endswith(".seg")]) - 1
    assert asyncio.run(_retain(store, keep_segments=sealed - 1)) == 1 and not first.exists() and second.exists()
    events = follower.poll()
    assert events and [event.position for event in events] == list(range(next_position, next_position + len(events)))
    assert events[-1].version == 41  # on to the end of the log, nothing skipped
