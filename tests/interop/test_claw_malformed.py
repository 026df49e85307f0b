"""Every malformed claw-code file: a clear error with file and line, and nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

import sessiondb
from sessiondb import ImportFormatError, Message

pytestmark = pytest.mark.anyio

META = '{"created_at_ms":1,"session_id":"session-1-0","type":"session_meta","updated_at_ms":2,"version":1}'


def msg(message: str) -> str:
    return '{"type":"message","message":' + message + "}"


def text_msg(body: str = '"hi"') -> str:
    return msg('{"role":"user","blocks":[{"type":"text","text":' + body + "}]}")


# (second line of a JSONL file, fragment of the error)
BAD_LINES = [
    pytest.param('{"type":"bogus"}', "unsupported JSONL record type: bogus", id="unknown-type"),
    pytest.param('{"message":{"role":"user","blocks":[]}}', "missing type", id="missing-type"),
    pytest.param('{"type":7}', "missing type", id="type-not-string"),
    pytest.param('{"type":"message",', "invalid JSONL record", id="torn-json"),
    pytest.param("[1,2]", "must be an object", id="not-an-object"),
    pytest.param('"text"', "must be an object", id="string-record"),
    pytest.param(msg('{"role":"robot","blocks":[]}'), "unsupported message role: robot", id="unknown-role"),
    pytest.param(msg('{"blocks":[]}'), "missing role", id="missing-role"),
    pytest.param(msg('{"role":"user"}'), "missing blocks", id="missing-blocks"),
    pytest.param(msg('{"role":"user","blocks":{}}'), "missing blocks", id="blocks-not-list"),
    pytest.param(
        msg('{"role":"user","blocks":[{"type":"image","url":"x"}]}'),
        "unsupported block type: image",
        id="unknown-block",
    ),
    pytest.param(msg('{"role":"user","blocks":[{"text":"x"}]}'), "missing block type", id="missing-block-type"),
    pytest.param(msg('{"role":"user","blocks":["x"]}'), "block must be an object", id="block-not-object"),
    pytest.param(msg('{"role":"user","blocks":[{"type":"text"}]}'), "missing text", id="text-missing"),
    pytest.param(msg('{"role":"user","blocks":[{"type":"text","text":5}]}'), "missing text", id="text-not-string"),
    pytest.param(msg('{"role":"user","blocks":[{"type":"thinking"}]}'), "missing thinking", id="thinking-missing"),
    pytest.param(
        msg('{"role":"assistant","blocks":[{"type":"tool_use","id":"t","name":"n","input":{"a":1}}]}'),
        "missing input",
        id="tool-input-object",
    ),
    pytest.param(
        msg('{"role":"assistant","blocks":[{"type":"tool_use","id":"t","input":"{}"}]}'),
        "missing name",
        id="tool-use-name",
    ),
    pytest.param(
        msg('{"role":"tool","blocks":[{"type":"tool_result","tool_use_id":"t","tool_name":"n","output":"o"}]}'),
        "missing is_error",
        id="is-error-missing",
    ),
    pytest.param(
        msg(
            '{"role":"tool","blocks":[{"type":"tool_result","tool_use_id":"t","tool_name":"n","output":"o","is_error":"no"}]}'
        ),
        "missing is_error",
        id="is-error-string",
    ),
    pytest.param(msg('{"role":"user","blocks":[],"usage":null}'), "usage must be an object", id="usage-null"),
    pytest.param(
        msg('{"role":"user","blocks":[],"usage":{"input_tokens":1,"output_tokens":1,"cache_read_input_tokens":1}}'),
        "missing cache_creation_input_tokens",
        id="usage-field-missing",
    ),
    pytest.param(
        msg(
            '{"role":"user","blocks":[],"usage":{"input_tokens":4294967296,"output_tokens":1,'
            '"cache_creation_input_tokens":1,"cache_read_input_tokens":1}}'
        ),
        "input_tokens out of range",
        id="usage-over-u32",
    ),
    pytest.param(
        msg(
            '{"role":"user","blocks":[],"usage":{"input_tokens":1.0,"output_tokens":1,'
            '"cache_creation_input_tokens":1,"cache_read_input_tokens":1}}'
        ),
        "numbers must be integers; found 1.0",
        id="float",
    ),
    pytest.param(
        '{"type":"compaction","count":1e3,"removed_message_count":1,"summary":"s"}', "found 1e3", id="exponent"
    ),
    pytest.param(
        '{"type":"compaction","count":NaN,"removed_message_count":1,"summary":"s"}', "NaN is not JSON", id="nan"
    ),
    pytest.param(
        '{"type":"compaction","count":1,"removed_message_count":99999999999999999999,"summary":"s"}',
        "out of the 64-bit integer range",
        id="beyond-i64",
    ),
    pytest.param(
        '{"type":"compaction","count":1,"removed_message_count":1}', "missing summary", id="compaction-summary"
    ),
    pytest.param(
        '{"type":"compaction","count":-1,"removed_message_count":1,"summary":"s"}',
        "count out of range",
        id="negative-count",
    ),
    pytest.param('{"type":"message"}', "missing message", id="message-record-empty"),
    pytest.param('{"type":"session_meta","session_id":"s","updated_at_ms":1}', "missing version", id="meta-version"),
    pytest.param('{"type":"session_meta","version":1,"updated_at_ms":1}', "missing session_id", id="meta-id"),
    pytest.param('{"type":"session_meta","version":1,"session_id":"s"}', "missing updated_at_ms", id="meta-updated"),
    pytest.param(
        '{"type":"session_meta","version":1,"session_id":"s","updated_at_ms":1,"created_at_ms":-5}',
        "created_at_ms out of range",
        id="meta-negative-created",
    ),
    pytest.param(
        '{"type":"session_meta","version":1,"session_id":"s","updated_at_ms":1,"fork":{"branch_name":"b"}}',
        "missing parent_session_id",
        id="fork-parent",
    ),
    pytest.param(
        '{"type":"session_meta","version":1,"session_id":"s","updated_at_ms":1,"fork":"x"}',
        "fork metadata must be an object",
        id="fork-not-object",
    ),
    pytest.param(text_msg('"\\ud800"'), "lone surrogate", id="lone-surrogate"),
    pytest.param(text_msg('"\\x"'), "invalid JSONL record", id="bad-escape"),
]


def write(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


@pytest.mark.parametrize(("line", "fragment"), BAD_LINES)
async def test_bad_line_is_reported_with_file_and_line(
    store: sessiondb.Store, tmp_path: Path, line: str, fragment: str
) -> None:
    path = write(tmp_path, "s.jsonl", (META + "\n" + line + "\n" + text_msg() + "\n").encode())
    with pytest.raises(ImportFormatError) as caught:
        await sessiondb.import_claw_files(store, path)
    error = caught.value
    assert (error.path, error.line) == (str(path), 2)
    assert fragment in str(error)
    assert f"{path}:2" in str(error)
    assert isinstance(error, sessiondb.SessionDBError)
    assert await store.list_sessions() == []  # nothing half-imported


@pytest.mark.parametrize(("line", "fragment"), BAD_LINES)
async def test_skip_bad_lines_imports_the_rest(
    store: sessiondb.Store, tmp_path: Path, line: str, fragment: str
) -> None:
    path = write(tmp_path, "s.jsonl", (META + "\n" + line + "\n" + text_msg() + "\n").encode())
    report = await sessiondb.import_claw_files(store, path, skip_bad_lines=True)
    assert [(s.line, fragment in s.reason) for s in report.skipped_lines] == [(2, True)]
    session = await store.load("session-1-0")
    assert session.messages == [Message.user("hi")]


async def test_invalid_utf8_line(store: sessiondb.Store, tmp_path: Path) -> None:
    path = write(tmp_path, "s.jsonl", META.encode() + b"\n" + text_msg().encode() + b"\n" + b'{"type":"\xff"}\n')
    with pytest.raises(ImportFormatError, match=r"s\.jsonl:3: invalid UTF-8"):
        await sessiondb.import_claw_files(store, path)


async def test_torn_tail_after_crash_is_line_numbered_and_skippable(store: sessiondb.Store, tmp_path: Path) -> None:
    content = (META + "\n\n" + text_msg('"one"') + "\n" + text_msg('"two"') + "\n" + text_msg('"thr')).encode()
    path = write(tmp_path, "s.jsonl", content)
    with pytest.raises(ImportFormatError, match=r":5: invalid JSONL record"):
        await sessiondb.import_claw_files(store, path)
    report = await sessiondb.import_claw_files(store, path, skip_bad_lines=True)
    assert [s.line for s in report.skipped_lines] == [5]
    assert "skipped 1 bad line" in str(report)
    assert [m.text for m in (await store.load("session-1-0")).messages] == ["one", "two"]


async def test_skipped_meta_falls_back_to_the_file_name(store: sessiondb.Store, tmp_path: Path) -> None:
    path = write(tmp_path, "session-77-1.jsonl", ("{torn meta\n" + text_msg() + "\n").encode())
    report = await sessiondb.import_claw_files(store, path, skip_bad_lines=True)
    assert report.imported[0].session_id == "session-77-1"
    assert (await store.load("session-77-1")).created_at_ms == 77


async def test_unsafe_session_id(store: sessiondb.Store, tmp_path: Path) -> None:
    path = write(tmp_path, "s.jsonl", b'{"type":"session_meta","version":1,"session_id":"../x","updated_at_ms":1}\n')
    with pytest.raises(ImportFormatError, match="session id cannot be stored"):
        await sessiondb.import_claw_files(store, path)


LEGACY = [
    pytest.param('{"messages":[]}', None, "missing version", id="legacy-no-version"),
    pytest.param('{"version":-1,"messages":[]}', None, "version out of range", id="legacy-negative-version"),
    pytest.param('{"version":1,"messages":5}', None, "missing messages", id="legacy-messages-not-list"),
    pytest.param('{"version":1.5,"messages":[]}', None, "numbers must be integers", id="legacy-float"),
    pytest.param(
        '{"version":1,"messages":[{"role":"alien","blocks":[]}]}', None, "unsupported message role", id="legacy-role"
    ),
    pytest.param('{"version":1,"messages":[],"created_at_ms":"x"}', None, "missing created_at_ms", id="legacy-created"),
    pytest.param(
        '{"version":1,"messages":[],"compaction":{"count":1}}',
        None,
        "missing removed_message_count",
        id="legacy-compaction",
    ),
    # Without "messages" it is not a legacy object: upstream reads it as JSONL (one record, no type).
    pytest.param('{"version":1}', 1, "missing type", id="no-messages-is-jsonl"),
    # Pretty-printed but not one object: JSONL, and its first line is not JSON.
    pytest.param('{\n"version": 1,\n"messages": [] ]\n}', 1, "invalid JSONL record", id="legacy-broken"),
]


@pytest.mark.parametrize(("content", "line", "fragment"), LEGACY)
async def test_malformed_legacy_json(
    store: sessiondb.Store, tmp_path: Path, content: str, line: int | None, fragment: str
) -> None:
    path = write(tmp_path, "session-5-0.json", content.encode())
    with pytest.raises(ImportFormatError) as caught:
        await sessiondb.import_claw_files(store, path)
    assert caught.value.line == line
    assert fragment in str(caught.value)
    assert await store.list_sessions() == []


async def test_one_bad_file_among_many_writes_nothing(store: sessiondb.Store, tmp_path: Path) -> None:
    (tmp_path / "tree").mkdir()
    write(tmp_path / "tree", "session-1-0.jsonl", (META + "\n" + text_msg() + "\n").encode())
    write(
        tmp_path / "tree",
        "session-9-0.jsonl",
        b'{"type":"session_meta","version":1,"session_id":"session-9-0","updated_at_ms":1}\n{"type":"what"}\n',
    )
    with pytest.raises(ImportFormatError, match=r"session-9-0\.jsonl:2"):
        await sessiondb.import_claw_files(store, tmp_path / "tree")
    assert await store.list_sessions() == []


async def test_existing_session_and_duplicate_ids(store: sessiondb.Store, tmp_path: Path) -> None:
    path = write(tmp_path, "a.jsonl", (META + "\n" + text_msg() + "\n").encode())
    await sessiondb.import_claw_files(store, path)
    with pytest.raises(sessiondb.SessionExistsError):
        await sessiondb.import_claw_files(store, path)
    report = await sessiondb.import_claw_files(store, path, if_exists="skip")
    assert report.imported == [] and report.skipped_sessions[0][2] == "already in the store"
    copy = write(tmp_path, "b.jsonl", (META + "\n").encode())
    async with sessiondb.open_store(tmp_path / "fresh") as fresh:
        with pytest.raises(sessiondb.InvalidInputError, match="is in both"):
            await sessiondb.import_claw_files(fresh, path, copy)
        assert await fresh.list_sessions() == []
        report = await sessiondb.import_claw_files(fresh, path, copy, if_exists="skip")
        assert len(report.imported) == 1 and len(report.skipped_sessions) == 1


async def test_each_file_is_one_atomic_append(store: sessiondb.Store, tmp_path: Path) -> None:
    lines = [META] + [text_msg(f'"m{i}"') for i in range(12_000)]  # above the per-append event limit
    path = write(tmp_path, "big.jsonl", ("\n".join(lines) + "\n").encode())
    batches: list[int] = []
    store.add_batch_listener(lambda batch: batches.append(len(batch)))
    report = await sessiondb.import_claw_files(store, path)
    assert batches == [1]  # one request: SessionStarted and 12,000 messages together
    assert report.imported[0].version == 12_001
    events = [e async for e in store.read("session-1-0")]
    assert {e.timestamp_ms for e in events} == {2}  # the file's updated_at_ms
    assert isinstance(events[0].event, sessiondb.SessionStarted)


async def test_file_without_meta_gets_a_generated_id_like_upstream(store: sessiondb.Store, tmp_path: Path) -> None:
    path = write(tmp_path, "anon.jsonl", (text_msg() + "\n").encode())
    report = await sessiondb.import_claw_files(store, path)
    sid = report.imported[0].session_id
    assert sid.startswith("session-") and any("names no session id" in n for n in report.notes)
    session = await store.load(sid)
    assert session.created_at_ms == session.updated_at_ms > 0


async def test_missing_path(store: sessiondb.Store, tmp_path: Path) -> None:
    with pytest.raises(sessiondb.InvalidInputError, match="no such file"):
        await sessiondb.import_claw_files(store, tmp_path / "nope.jsonl")


async def test_store_refusal_names_the_file_and_keeps_other_sessions_whole(tmp_path: Path) -> None:
    small = write(tmp_path, "small.jsonl", (META + "\n" + text_msg() + "\n").encode())
    big_meta = META.replace("session-1-0", "session-2-0")
    big = write(tmp_path, "big.jsonl", (big_meta + "\n" + text_msg('"' + "x" * 5000 + '"') + "\n").encode())
    async with sessiondb.open_store(tmp_path / "store", max_event_bytes=2000) as store:
        with pytest.raises(sessiondb.EventTooLargeError) as caught:
            await sessiondb.import_claw_files(store, small, big)
        assert any("big.jsonl" in note for note in caught.value.__notes__)
        assert [info.session_id for info in await store.list_sessions()] == ["session-1-0"]
        with pytest.raises(sessiondb.SessionNotFoundError):
            await store.load("session-2-0")  # nothing of it was written


async def test_the_stores_redact_hook_applies_to_imported_history(tmp_path: Path) -> None:
    secret = "sk-ant-api03-" + "a" * 40
    path = write(tmp_path, "s.jsonl", (META + "\n" + text_msg(f'"my key is {secret}"') + "\n").encode())
    async with sessiondb.open_store(tmp_path / "store", redact=sessiondb.redact_api_keys) as store:
        await sessiondb.import_claw_files(store, path)
        text = (await store.load("session-1-0")).messages[0].text
    assert secret not in text and text.startswith("my key is ")
    assert secret.encode() not in b"".join(p.read_bytes() for p in (tmp_path / "store").rglob("*") if p.is_file())
