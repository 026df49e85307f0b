"""Paths and names as the user means them: ``~``, trailing separators, ids that become file names,
bulk exports that carry on, and a store path that is a file."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import sessiondb
from sessiondb import ExportError, InvalidInputError, InvalidSessionIdError, Message
from sessiondb._backends._fs import FileSystem
from sessiondb._backends.local import LocalBackend, verify_store
from sessiondb._backends.local._checkpoint import CHECKPOINT_NAME

pytestmark = pytest.mark.anyio


def no_literal_tilde(cwd: Path) -> None:
    assert not (cwd / "~").exists(), "a literal ./~ directory was created"


@pytest.fixture
async def chat_store(tmp_path: Path) -> AsyncIterator[sessiondb.Store]:
    async with sessiondb.open_store(tmp_path / "store") as store:
        await store.create_session(session_id="chat")
        await store.append("chat", Message.user("hi"))
        yield store


async def test_readme_export_to_claw_sessions_directory_of_tilde_project(
    home: Path, chat_store: sessiondb.Store
) -> None:
    sid = "chat"
    directory = sessiondb.claw_sessions_directory("~/project")
    assert directory.is_relative_to(home / "project")
    written = await sessiondb.export_claw_session(chat_store, sid, directory / f"{sid}.jsonl")
    assert written.is_file() and written.is_relative_to(home)
    no_literal_tilde(Path.cwd())


async def test_import_from_tilde_path(home: Path, chat_store: sessiondb.Store, tmp_path: Path) -> None:
    await sessiondb.export_claw_session(chat_store, "chat", "~/project/.claw/sessions/")
    async with sessiondb.open_store(tmp_path / "other") as other:
        report = await sessiondb.import_claw_files(other, "~/project/.claw/sessions", skip_bad_lines=True)
        assert [item.session_id for item in report.imported] == ["chat"]


async def test_open_store_and_verify_expand_tilde(home: Path) -> None:
    async with sessiondb.open_store("~/sessions") as store:
        await store.create_session(session_id="a")
    assert (home / "sessions").is_dir()
    assert verify_store("~/sessions").ok
    async with sessiondb.open_store("~/sessions", read_only=True) as store:
        assert [info.session_id for info in await store.list_sessions()] == ["a"]
    no_literal_tilde(Path.cwd())


async def test_export_bulk_to_tilde_directory(home: Path, chat_store: sessiondb.Store) -> None:
    written = await sessiondb.export_claw_sessions(chat_store, "~/out")
    assert written == [home / "out" / "chat.jsonl"]
    no_literal_tilde(Path.cwd())


async def test_trailing_separator_means_a_directory_created_if_missing(
    tmp_path: Path, chat_store: sessiondb.Store
) -> None:
    target = tmp_path / "out"
    written = await sessiondb.export_claw_session(chat_store, "chat", str(target) + os.sep)
    assert target.is_dir()
    assert written == target / "chat.jsonl" and written.is_file()


async def test_relative_paths_and_pathlib_paths_name_the_same_place(
    tmp_path: Path, chat_store: sessiondb.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    first = await sessiondb.export_claw_session(chat_store, "chat", "rel/")
    second = await sessiondb.export_claw_session(chat_store, "chat", Path("rel"))
    assert first == Path("rel/chat.jsonl") and second == Path("rel/chat.jsonl")
    assert (tmp_path / "rel" / "chat.jsonl").is_file()


async def test_a_destination_under_a_file_is_a_clear_error(tmp_path: Path, chat_store: sessiondb.Store) -> None:
    (tmp_path / "plain").write_text("x")
    with pytest.raises(InvalidInputError, match=r"plain is a file"):
        await sessiondb.export_claw_session(chat_store, "chat", tmp_path / "plain" / "x.jsonl")
    with pytest.raises(InvalidInputError, match=r"plain is a file"):
        await sessiondb.export_claw_sessions(chat_store, tmp_path / "plain")


@pytest.mark.parametrize("session_id", ["b" * 224, "é" * 112, "€" * 74 + "bb"])
async def test_the_longest_valid_ids_export_to_file_names(tmp_path: Path, session_id: str) -> None:
    assert len(session_id.encode()) == 224
    async with sessiondb.open_store(tmp_path / "store") as store:
        await store.create_session(session_id=session_id)
        written = await sessiondb.export_claw_session(store, session_id, f"{tmp_path}/out/")
        assert written.name == f"{session_id}.jsonl"
        assert await sessiondb.export_claw_sessions(store, tmp_path / "all") == [tmp_path / "all" / written.name]


@pytest.mark.parametrize("session_id", ["b" * 230, "é" * 120, "é" * 113, "b" * 225])
async def test_ids_that_cannot_become_file_names_are_refused(tmp_path: Path, session_id: str) -> None:
    async with sessiondb.open_store(":memory:") as store:
        with pytest.raises(InvalidSessionIdError, match="bytes long in UTF-8; the limit is 224 bytes"):
            await store.create_session(session_id=session_id)
        with pytest.raises(InvalidSessionIdError):
            await store.append(session_id, Message.user("x"))


async def test_bulk_export_carries_on_and_reports_every_failure(tmp_path: Path) -> None:
    async with sessiondb.open_store(tmp_path / "store") as store:
        for sid in ("a", "b", "c", "d"):
            await store.create_session(session_id=sid)
        out = tmp_path / "out"
        # Two sessions whose files cannot be written: a directory holds their names.
        (out / "b.jsonl").mkdir(parents=True)
        (out / "d.jsonl").mkdir()
        with pytest.raises(ExportError) as caught:
            await sessiondb.export_claw_sessions(store, out)
    error = caught.value
    assert isinstance(error, sessiondb.SessionDBError)
    assert sorted(sid for sid, _ in error.failures) == ["b", "d"]
    assert sorted(path.name for path in error.exported) == ["a.jsonl", "c.jsonl"]
    assert (out / "a.jsonl").is_file() and (out / "c.jsonl").is_file()
    assert "2 of 4 session(s) were not exported" in str(error) and "'b'" in str(error) and "'d'" in str(error)


async def test_bulk_export_of_named_sessions_reports_a_missing_one(tmp_path: Path) -> None:
    async with sessiondb.open_store(tmp_path / "store") as store:
        await store.create_session(session_id="a")
        with pytest.raises(ExportError) as caught:
            await sessiondb.export_claw_sessions(store, tmp_path / "out", ["nope", "a"])
    assert [sid for sid, _ in caught.value.failures] == ["nope"]
    assert (tmp_path / "out" / "a.jsonl").is_file()


async def test_open_store_on_a_regular_file_says_it_is_a_file(tmp_path: Path) -> None:
    plain = tmp_path / "some-regular-file"
    plain.write_text("not a store")
    with pytest.raises(InvalidInputError, match="some-regular-file is a file, not a store directory"):
        async with sessiondb.open_store(plain):
            pass
    with pytest.raises(InvalidInputError, match="is a file, not a store directory"):
        async with sessiondb.open_store(plain, read_only=True):
            pass
    with pytest.raises(InvalidInputError, match="is a file, not a store directory"):
        verify_store(plain)
    with pytest.raises(InvalidInputError, match=r"cannot be a store directory: .*some-regular-file is a file"):
        async with sessiondb.open_store(plain / "below"):
            pass
    assert plain.read_text() == "not a store"


async def test_a_directory_holding_other_things_is_not_made_a_store(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "notes.txt").write_text("mine")
    (project / "src").mkdir()
    with pytest.raises(
        InvalidInputError, match=r"project is not a sessiondb store and is not empty \(it holds notes.txt, src\)"
    ):
        async with sessiondb.open_store(project):
            pass
    assert sorted(os.listdir(project)) == ["notes.txt", "src"]  # nothing of a store was left among the user's files
    # Hidden entries do not count, and an existing store stays a store whatever else it holds.
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    (hidden / ".keep").write_text("")
    async with sessiondb.open_store(hidden) as store:
        await store.create_session(session_id="x")
    (hidden / "README.txt").write_text("a store with a note beside it")
    async with sessiondb.open_store(hidden) as store:
        assert [info.session_id for info in await store.list_sessions()] == ["x"]


async def test_open_store_creates_missing_parents(tmp_path: Path) -> None:
    async with sessiondb.open_store(tmp_path / "a" / "b" / "store") as store:
        await store.create_session(session_id="x")
    async with sessiondb.open_store(str(tmp_path / "a" / "b" / "store")) as store:
        assert [info.session_id for info in await store.list_sessions()] == ["x"]


@pytest.mark.parametrize("target", [b"store", 42, ""])
async def test_a_store_path_that_is_not_a_path_is_refused(target: object) -> None:
    with pytest.raises(InvalidInputError, match="store path"):
        sessiondb.open_store(target)  # type: ignore[arg-type]


async def test_a_store_with_longer_ids_from_before_the_byte_limit_opens_and_bulk_export_reports_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sessiondb._ids

    long_ids = ["b" * 250, "é" * 120]  # accepted by the 256-character limit of earlier versions
    with monkeypatch.context() as patch:
        patch.setattr(sessiondb._ids, "MAX_SESSION_ID_BYTES", 1024)
        async with sessiondb.open_store(tmp_path / "store") as store:
            for sid in (long_ids[0], "ok-1", long_ids[1], "ok-2"):
                await store.create_session(session_id=sid)
                await store.append(sid, Message.user("hi"))
    assert verify_store(tmp_path / "store").ok
    # Without the close's checkpoint, open indexes every frame of the log (the path a crash takes).
    (tmp_path / "store" / CHECKPOINT_NAME).unlink()
    async with sessiondb.open_store(tmp_path / "store") as store:
        for sid in long_ids:  # still readable, appendable and followable
            assert await store.append(sid, Message.user("again")) == 3
            assert len((await store.load(sid)).messages) == 2
            async with store.subscribe(sid) as events:
                assert (await anext(events)).version == 1
        with pytest.raises(ExportError) as caught:
            await sessiondb.export_claw_sessions(store, tmp_path / "out")
    assert sorted(sid for sid, _ in caught.value.failures) == sorted(long_ids)
    assert all(isinstance(error, OSError) for _, error in caught.value.failures)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["ok-1.jsonl", "ok-2.jsonl"]


async def test_ids_another_writer_appended_are_checked_as_ids_read_from_a_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second writer learns the first one's frames through the same check as recovery on open:
    an id an earlier version stored (over 224 bytes, within 256 characters) is followed; an id
    that is not safe as a file name is corruption, named with its segment."""
    import sessiondb._ids
    import sessiondb._store

    quiet = sessiondb.CompactionSettings(background=False)
    long_id = "b" * 250
    async with (
        sessiondb.open_store(tmp_path / "s1", compaction=quiet) as first,
        sessiondb.open_store(tmp_path / "s1", compaction=quiet) as second,
    ):
        await second.create_session(session_id="known")  # the second has looked at the log
        with monkeypatch.context() as patch:  # the first writes as an earlier version would
            patch.setattr(sessiondb._ids, "MAX_SESSION_ID_BYTES", 1024)
            await first.create_session(session_id=long_id)
        assert await first.append(long_id, Message.user("hi")) == 2
        assert {info.session_id for info in await second.list_sessions()} == {"known", long_id}
        assert await second.append(long_id, Message.user("again")) == 3
        assert len((await first.load(long_id)).messages) == 2

    async with (
        sessiondb.open_store(tmp_path / "s2", compaction=quiet) as first,
        sessiondb.open_store(tmp_path / "s2", compaction=quiet) as second,
    ):
        await second.create_session(session_id="known")
        with monkeypatch.context() as patch:  # a crafted writer that skips the id check
            patch.setattr(sessiondb._store, "validate_session_id", lambda session_id, **_: session_id)
            await first.create_session(session_id="../escape")
        with pytest.raises(sessiondb.CorruptionError, match=r"\.seg.*'\.\./escape'"):
            await second.list_sessions()


class _DirectorySyncs(FileSystem):
    """The real file system, noting which directories were fsynced."""

    def __init__(self) -> None:
        super().__init__()
        self.synced: list[str] = []

    def fsync_directory(self, path: str) -> None:
        self.synced.append(os.path.abspath(path))
        super().fsync_directory(path)


async def test_every_directory_a_new_store_creates_is_made_durable_in_its_parent(tmp_path: Path) -> None:
    fs = _DirectorySyncs()
    backend = LocalBackend(tmp_path / "a" / "b" / "store", file_system=fs)
    async with sessiondb.open_store(backend) as store:
        await store.create_session(session_id="x")
    for created in ("a", "a/b", "a/b/store"):
        parent = os.path.dirname(str(tmp_path / created))
        assert parent in fs.synced, f"{created}'s entry in {parent} was never fsynced"


async def test_export_into_a_directory_path_that_is_a_file(tmp_path: Path, chat_store: sessiondb.Store) -> None:
    (tmp_path / "newdir").write_text("x")
    with pytest.raises(InvalidInputError, match="newdir is a file"):
        await sessiondb.export_claw_session(chat_store, "chat", f"{tmp_path}/newdir/")


async def test_an_unreadable_import_file_names_the_file(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads every file")
    path = tmp_path / "s.jsonl"
    path.write_text("{}\n")
    path.chmod(0)
    async with sessiondb.open_store(tmp_path / "store") as store:
        with pytest.raises(InvalidInputError, match=r"cannot import .*s\.jsonl: Permission denied"):
            await sessiondb.import_claw_files(store, path)
