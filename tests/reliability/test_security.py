"""What is stored is private: owner-only modes, an optional redaction hook, limits, and no file outside the store."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import anyio
import pytest

import sessiondb
from sessiondb import (
    Compacted,
    Custom,
    EventTooLargeError,
    InvalidInputError,
    InvalidSessionIdError,
    Message,
    PromptRecorded,
    SessionDBError,
    Text,
    Thinking,
    ToolUse,
    redact_api_keys,
)
from sessiondb._backends.local import repair_store

pytestmark = pytest.mark.anyio

SECRETS = {
    "openai": "sk-proj-Abc123def456GHI789jkl012MNO345pqr",
    "anthropic": "sk-ant-api03-abcdefghijklmnopqrstuvwxyz012345",
    "aws": "AKIAIOSFODNN7EXAMPLE",
    "github": "ghp_" + "a1B2c3D4e5" * 4,
    "slack": "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOp",
    "bearer": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
}


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _log_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(path.iterdir()) if p.suffix == ".seg")


async def test_store_directory_is_0700_and_files_0600(tmp_path: Path) -> None:
    old = os.umask(0)  # even with a permissive umask, nothing is group- or world-readable
    try:
        path = tmp_path / "store"
        async with sessiondb.open_store(path, segment_bytes=1024) as store:
            sid = await store.create_session()
            for i in range(20):
                await store.append(sid, Message.user(f"secret transcript {i} " + "x" * 100))
    finally:
        os.umask(old)
    assert _mode(path) == 0o700
    files = list(path.iterdir())
    assert sum(1 for f in files if f.suffix == ".seg") >= 3  # rotated segments too
    for file in files:
        assert _mode(file) == 0o600, file


async def test_modes_can_be_widened_on_request(tmp_path: Path) -> None:
    """``file_mode`` / ``dir_mode``: for a group that must read the transcripts (umask still applies)."""
    old = os.umask(0o022)
    try:
        path = tmp_path / "store"
        async with sessiondb.open_store(path, segment_bytes=1024, file_mode=0o640, dir_mode=0o750) as store:
            sid = await store.create_session()
            for i in range(20):
                await store.append(sid, Message.user(f"shared transcript {i} " + "x" * 100))
            await store.compact()
    finally:
        os.umask(old)
    assert _mode(path) == 0o750
    files = [f for f in path.iterdir() if f.name != "LOCK"]
    assert sum(1 for f in files if f.suffix == ".seg") >= 3 and (path / "CHECKPOINT").exists()
    for file in files:
        assert _mode(file) == 0o640, file
    # Defaults again on the next open: a reopened store writes owner-only files.
    async with sessiondb.open_store(path, segment_bytes=1024) as store:
        for i in range(20):
            await store.append(sid, Message.user(f"private {i} " + "x" * 100))
    newest = max(p for p in path.iterdir() if p.suffix == ".seg")
    assert _mode(newest) == 0o600


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"file_mode": 0o400}, "file_mode"),
        ({"file_mode": 0o1600}, "file_mode"),
        ({"dir_mode": 0o600}, "dir_mode"),
        ({"dir_mode": "0755"}, "dir_mode"),
    ],
)
def test_modes_that_would_lock_the_store_out_are_refused(
    tmp_path: Path, options: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        sessiondb.open_store(tmp_path / "s", **options)  # type: ignore[arg-type]
    assert not (tmp_path / "s").exists()


def test_modes_apply_to_directories_only() -> None:
    with pytest.raises(InvalidInputError, match="store directory only"):
        sessiondb.open_store(":memory:", file_mode=0o640)


async def test_repair_output_is_private(tmp_path: Path) -> None:
    path = tmp_path / "store"
    async with sessiondb.open_store(path, segment_bytes=1024) as store:
        sid = await store.create_session()
        for i in range(20):
            await store.append(sid, Message.user(f"m{i} " + "x" * 100))
    segment = sorted(path.glob("*.seg"))[1]
    data = bytearray(segment.read_bytes())
    data[len(data) // 2] ^= 0x20
    segment.write_bytes(bytes(data))
    report = repair_store(path)
    assert report.changed and report.saved_to is not None
    assert _mode(Path(report.saved_to)) == 0o700
    for file in Path(report.saved_to).iterdir():
        assert _mode(file) == 0o600


async def test_every_export_is_private(tmp_path: Path) -> None:
    """Exports hold what the agent saw, as the store does: files 0600 and the directories made for them 0700,
    whatever the umask, and a world-readable file they replace comes back private."""
    from sessiondb.cli import main

    path = tmp_path / "store"
    async with sessiondb.open_store(path) as store:
        sid = await store.create_session(session_id="chat")
        await store.append(sid, Message.user("secret transcript"))
    old = os.umask(0)
    try:
        replaced = tmp_path / "replaced.jsonl"
        replaced.write_text("old\n")
        os.chmod(replaced, 0o644)
        async with sessiondb.open_store(path) as store:
            written = [
                await sessiondb.export_claw_session(store, sid, replaced),
                await sessiondb.export_claw_session(store, sid, str(tmp_path / "new" / "deeper") + "/"),
                *await sessiondb.export_claw_sessions(store, tmp_path / "all"),
            ]
        for argv in (["chat", str(tmp_path / "cli.jsonl")], ["--all", str(tmp_path / "cli-all")]):
            assert await anyio.to_thread.run_sync(main, ["export", str(path), *argv]) == 0  # its own event loop
        written += [tmp_path / "cli.jsonl", tmp_path / "cli-all" / "chat.jsonl"]
        try:
            from sessiondb.web import export_session_html
        except ImportError:  # the web extra is not installed
            pass
        else:
            async with sessiondb.open_store(path) as store:
                await export_session_html(store, sid, tmp_path / "page.html")
            written.append(tmp_path / "page.html")
    finally:
        os.umask(old)
    assert replaced.read_text() != "old\n"
    for file in written:
        assert _mode(Path(file)) == 0o600, file
    for directory in (tmp_path / "new", tmp_path / "new" / "deeper", tmp_path / "all", tmp_path / "cli-all"):
        assert _mode(directory) == 0o700, directory
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]


async def test_redaction_is_off_by_default(tmp_path: Path) -> None:
    path = tmp_path / "store"
    async with sessiondb.open_store(path) as store:
        sid = await store.create_session()
        await store.append(sid, Message.user(f"my key is {SECRETS['openai']}"))
        assert SECRETS["openai"] in (await store.load(sid)).messages[0].text
    assert SECRETS["openai"].encode() in _log_bytes(path)


async def test_redact_api_keys_masks_every_field(tmp_path: Path) -> None:
    path = tmp_path / "store"
    leaky = " ".join(f"{kind}={value}" for kind, value in SECRETS.items() if kind != "bearer")
    leaky += f" Authorization: Bearer {SECRETS['bearer']}"
    async with sessiondb.open_store(path, redact=redact_api_keys) as store:
        sid = await store.create_session()
        await store.append(
            sid,
            Message.user(leaky),
            Message.assistant(
                [Thinking(leaky, signature="sig-kept"), Text(leaky), ToolUse("t1", "bash", json.dumps({"cmd": leaky}))]
            ),
            Message.tool_result("t1", "bash", leaky),
        )
        await store.record_prompt(sid, leaky)
        await store.record_compaction(sid, summary=leaky, removed_message_count=1)
        await store.append(sid, Custom("env", {"vars": [leaky, {"nested": leaky}], "n": 3}))
        events = [e.event async for e in store.read(sid)]
    stored = _log_bytes(path)
    for kind, value in SECRETS.items():
        assert value.encode() not in stored, kind
    text = repr(events)
    for kind in ("openai", "anthropic", "aws", "github", "slack", "bearer"):
        assert f"[REDACTED:{kind}]" in text, kind
    tool_use = events[2].blocks[2]  # type: ignore[union-attr]
    assert json.loads(tool_use.input)["cmd"].count("[REDACTED:") == 6  # tool input is still valid JSON
    assert events[2].blocks[0].signature == "sig-kept"  # type: ignore[union-attr]
    assert isinstance(events[4], PromptRecorded) and isinstance(events[5], Compacted)
    assert events[6].data["n"] == 3  # type: ignore[union-attr]


async def test_redact_api_keys_leaves_ordinary_text_alone() -> None:
    message = Message.user("ask the skeptic about task-force tokens; AKIA is a prefix; bearer of news")
    assert redact_api_keys(message) is message


async def test_custom_redaction_hook(tmp_path: Path) -> None:
    def hook(event: sessiondb.Event) -> sessiondb.Event:
        if isinstance(event, Message):
            return Message(event.role, [Text(event.text.replace("Alice", "[name]"))], event.usage)
        return event

    async with sessiondb.open_store(tmp_path / "store", redact=hook) as store:
        sid = await store.create_session()
        await store.append(sid, Message.user("Alice said hi"))
        assert (await store.load(sid)).messages[0].text == "[name] said hi"

    async with sessiondb.open_store(tmp_path / "bad", redact=lambda event: "not an event") as store:  # type: ignore[arg-type,return-value]
        sid = await store.create_session()
        with pytest.raises(InvalidInputError, match="redact hook"):
            await store.append(sid, Message.user("x"))
        assert (await store.session_info(sid)).version == 1  # nothing written


async def test_max_event_bytes(tmp_path: Path) -> None:
    path = tmp_path / "store"
    async with sessiondb.open_store(path, max_event_bytes=1000) as store:
        sid = await store.create_session()
        size = sum(p.stat().st_size for p in path.glob("*.seg"))
        with pytest.raises(EventTooLargeError) as caught:
            await store.append(sid, Message.user("x" * 2000))
        assert sid in str(caught.value) and "1000" in str(caught.value)
        with pytest.raises(EventTooLargeError):  # atomic: a small event beside a big one is not written either
            await store.append(sid, Message.user("small"), Message.user("y" * 2000))
        assert sum(p.stat().st_size for p in path.glob("*.seg")) == size  # nothing written
        assert (await store.session_info(sid)).version == 1
        assert await store.append(sid, Message.user("x" * 700)) == 2  # the store goes on


async def test_max_events_per_append(tmp_path: Path) -> None:
    async with sessiondb.open_store(tmp_path / "store", max_events_per_append=5) as store:
        sid = await store.create_session()
        with pytest.raises(InvalidInputError, match="limit"):
            await store.append(sid, *[Message.user(str(i)) for i in range(6)])
        assert (await store.session_info(sid)).version == 1
        assert await store.append(sid, *[Message.user(str(i)) for i in range(5)]) == 6


HOSTILE_IDS = [
    "../escape",
    "../../etc/passwd",
    "/abs",
    "a/b",
    "a\\b",
    "nul\x00byte",
    "x" * 10_240,
    "..",
    ".",
    "",
    "line\u2028sep",
    "tab\there",
    "\ud800lone",
    "new\nline",
]


@pytest.mark.parametrize("session_id", HOSTILE_IDS, ids=range(len(HOSTILE_IDS)))
async def test_hostile_session_ids(tmp_path: Path, session_id: str) -> None:
    path = tmp_path / "store"
    async with sessiondb.open_store(path) as store:
        parent = await store.create_session(session_id="parent")
        with pytest.raises(InvalidSessionIdError):
            await store.create_session(session_id=session_id)
        with pytest.raises(InvalidSessionIdError):
            await store.fork(parent, session_id=session_id)
        for call in (
            store.append(session_id, Message.user("x")),
            store.load(session_id),
            store.session_info(session_id),
            store.delete_session(session_id),
            store.fork(session_id),
        ):
            with pytest.raises(SessionDBError):
                await call
        assert [i.session_id for i in await store.list_sessions()] == [parent]
    assert sorted(os.listdir(tmp_path)) == ["store"]  # nothing outside the store directory
