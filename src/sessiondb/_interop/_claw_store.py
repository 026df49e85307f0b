"""Importing claw-code session files into a store and exporting sessions back to files.

Discovery: files, or directory trees such as ``.claw/sessions``. A session's
live file is ``<stem>.jsonl`` (or a legacy ``<stem>.json``); rotated copies
``<stem>.rot-<millis>.jsonl`` are older snapshots of the same session and are
only read when no live file exists (the newest one then). Leftover temp files
``<name>.tmp-<millis>-<n>`` of interrupted upstream writes are never read.

Every file is parsed and checked before anything is written; each session is
then created with ONE atomic append, so nothing is ever half-imported.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import aiofiles
import anyio

from .._backends._base import SessionInfo
from .._errors import ExportError, InvalidInputError, SessionDBError, SessionDeletedError, SessionExistsError
from .._files import make_private_directories, write_private_file
from .._ids import EXPORT_SUFFIX, validate_session_id
from .._paths import names_directory, not_a_directory, user_path
from .._store import Store
from .._threads import run_to_completion
from ._claw import ClawFile, SkippedLine, parse_claw_file, render_claw_session

_ROTATED = re.compile(r"^(?P<stem>.+)\.rot-(?P<millis>\d+)\.jsonl$")
_TEMP = re.compile(r"\.tmp-\d+-\d+$")
# Sessions submitted at once: they share the writer's batches (one fsync for many files).
_IMPORT_CONCURRENCY = 64


@dataclass
class ImportedSession:
    """One session created by an import."""

    session_id: str
    path: str
    version: int
    message_count: int


@dataclass
class ClawImportReport:
    """What ``import_claw_files`` did: sessions created, and everything it left out, with reasons."""

    imported: list[ImportedSession] = field(default_factory=list)
    skipped_lines: list[SkippedLine] = field(default_factory=list)
    # (older copy, the file imported instead): rotated copies and legacy twins of a live file.
    superseded: list[tuple[str, str]] = field(default_factory=list)
    # (path, session id, reason): sessions not imported (already in the store, duplicates).
    skipped_sessions: list[tuple[str, str, str]] = field(default_factory=list)
    ignored_files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        parts = [f"imported {len(self.imported)} session(s)"]
        if self.skipped_lines:
            parts.append(f"skipped {len(self.skipped_lines)} bad line(s)")
        if self.superseded:
            parts.append(f"{len(self.superseded)} older copie(s) not imported")
        if self.skipped_sessions:
            parts.append(f"{len(self.skipped_sessions)} session(s) skipped")
        lines = [", ".join(parts)]
        lines += [f"  skipped {s.path}:{s.line}: {s.reason}" for s in self.skipped_lines]
        lines += [f"  older copy {old} (imported {kept})" for old, kept in self.superseded]
        lines += [f"  not imported {path} ({sid}): {why}" for path, sid, why in self.skipped_sessions]
        lines += [f"  ignored temp file {path}" for path in self.ignored_files]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


# ---------------------------------------------------------------- discovery


def _candidates(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    found: list[Path] = []
    for item in paths:
        path = Path(user_path(item, what="a file or directory to import"))
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs.sort()
                found.extend(
                    Path(root) / name
                    for name in sorted(files)
                    if name.endswith((".jsonl", ".json")) or _TEMP.search(name)
                )
        elif path.exists():
            found.append(path)
        else:
            raise InvalidInputError(f"cannot import {path}: no such file or directory")
    return found


def select_files(paths: Iterable[str | os.PathLike[str]], report: ClawImportReport) -> list[tuple[Path, str]]:
    """The newest copy of each session among ``paths``, with its stem; older copies go to the report."""
    groups: dict[tuple[Path, str], list[tuple[tuple[int, int], Path]]] = {}
    seen: set[Path] = set()
    for path in _candidates(paths):
        resolved = path.resolve()
        if resolved in seen:
            continue
        seen.add(resolved)
        name = path.name
        if _TEMP.search(name):
            report.ignored_files.append(str(path))
            continue
        rotated = _ROTATED.match(name)
        if rotated is not None:
            stem, rank = rotated["stem"], (0, int(rotated["millis"]))
        elif name.endswith(".jsonl"):
            stem, rank = name[: -len(".jsonl")], (2, 0)
        elif name.endswith(".json"):
            stem, rank = name[: -len(".json")], (1, 0)
        else:
            stem, rank = path.stem, (2, 0)
        groups.setdefault((path.parent, stem), []).append((rank, path))
    chosen: list[tuple[Path, str]] = []
    for (_, stem), copies in sorted(groups.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])):
        copies.sort(key=lambda entry: entry[0], reverse=True)
        newest = copies[0][1]
        chosen.append((newest, stem))
        report.superseded.extend((str(path), str(newest)) for _, path in copies[1:])
    return chosen


async def _read_file(path: Path) -> bytes:
    """A whole file, read without blocking the event loop (aiofiles: off the append path)."""
    try:
        async with aiofiles.open(path, "rb") as file:
            data: bytes = await file.read()
    except OSError as exc:  # unreadable, or gone since it was listed: nothing was written yet
        raise InvalidInputError(f"cannot import {path}: {exc.strerror or exc}; nothing was imported") from None
    return data


def _parse(data: bytes, path: Path, stem: str, skip_bad_lines: bool) -> ClawFile:
    try:
        fallback: str | None = validate_session_id(stem)
    except InvalidInputError:
        fallback = None
    return parse_claw_file(data, str(path), skip_bad_lines=skip_bad_lines, fallback_id=fallback)


# ---------------------------------------------------------------- import


async def import_claw_files(
    store: Store,
    *paths: str | os.PathLike[str],
    skip_bad_lines: bool = False,
    if_exists: Literal["error", "skip"] = "error",
) -> ClawImportReport:
    """Import claw-code session files (or directory trees of them) into ``store``.

    Each session is created with its file's id, timestamps, messages,
    compaction, fork, model, workspace root and prompt history, in one atomic
    append. Every file is parsed first: a malformed one raises
    ``ImportFormatError`` (file and line) before anything is written, unless
    ``skip_bad_lines=True``, which leaves bad JSONL lines out and lists them in
    the report. ``if_exists="skip"`` leaves sessions already in the store alone
    (re-running an import is then harmless); ``"error"`` raises
    ``SessionExistsError`` before anything is written.
    """
    if if_exists not in ("error", "skip"):
        raise InvalidInputError(f"if_exists must be 'error' or 'skip', got {if_exists!r}")
    if not paths:
        raise InvalidInputError("import_claw_files needs at least one file or directory")
    report = ClawImportReport()
    selected = await run_to_completion(select_files, paths, report)
    parsed: list[ClawFile] = []
    for path, stem in selected:
        data = await _read_file(path)
        parsed.append(await run_to_completion(_parse, data, path, stem, skip_bad_lines))
    by_id: dict[str, ClawFile] = {}
    to_write: list[ClawFile] = []
    for claw in parsed:
        report.skipped_lines.extend(claw.skipped)
        report.notes.extend(claw.notes)
        if claw.generated_id:
            report.notes.append(f"{claw.path} names no session id; imported as {claw.session_id!r}")
        first = by_id.get(claw.session_id)
        if first is not None:
            if if_exists == "error":
                raise InvalidInputError(
                    f"session {claw.session_id!r} is in both {first.path} and {claw.path}; "
                    "import one of them, or pass if_exists='skip' to keep the first"
                )
            report.skipped_sessions.append((claw.path, claw.session_id, f"same session id as {first.path}"))
            continue
        by_id[claw.session_id] = claw
        existing = await _existing(store, claw.session_id)
        if existing is not None:
            if if_exists == "error":
                # A deleted session's id stays taken in the log: say so, as create_session does.
                raise SessionDeletedError(claw.session_id) if existing.deleted else SessionExistsError(claw.session_id)
            report.skipped_sessions.append((claw.path, claw.session_id, "already in the store"))
            continue
        to_write.append(claw)
    for start in range(0, len(to_write), _IMPORT_CONCURRENCY):
        chunk = to_write[start : start + _IMPORT_CONCURRENCY]
        outcomes: list[int | BaseException] = [0] * len(chunk)

        async def write(index: int, claw: ClawFile, outcomes: list[int | BaseException] = outcomes) -> None:
            try:
                outcomes[index] = await store._import_session(
                    claw.session_id, claw.started, claw.events, timestamp_ms=claw.updated_at_ms
                )
            except Exception as exc:  # reported below, per file, without cancelling the others
                outcomes[index] = exc

        async with anyio.create_task_group() as group:
            for index, claw in enumerate(chunk):
                group.start_soon(write, index, claw)
        failed: list[tuple[ClawFile, BaseException]] = []
        for claw, outcome in zip(chunk, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                failed.append((claw, outcome))
            else:
                report.imported.append(ImportedSession(claw.session_id, claw.path, outcome, len(claw.messages)))
        if failed:
            claw, error = failed[0]
            error.add_note(f"while importing {claw.path} (session {claw.session_id!r})")
            error.add_note(
                f"{len(report.imported)} other session(s) were imported, each whole; "
                f"{len(failed)} failed; {len(to_write) - start - len(chunk)} were not tried. "
                "Run the import again with if_exists='skip' to finish it"
            )
            raise error
    return report


async def _existing(store: Store, session_id: str) -> SessionInfo | None:
    # A deleted session's id stays taken in the log: its summary says so (``deleted``).
    return await store._lookup(session_id)


# ---------------------------------------------------------------- export


def workspace_fingerprint(workspace_root: str) -> str:
    """Upstream's 16-hex FNV-1a-64 of a workspace path (the UTF-8 of its lossy string form)."""
    value = 0xCBF29CE484222325
    for byte in os.fsencode(workspace_root).decode("utf-8", "replace").encode("utf-8"):
        value = ((value ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{value:016x}"


def claw_sessions_directory(workspace: str | os.PathLike[str]) -> Path:
    """Where claw-code keeps a workspace's sessions: ``<workspace>/.claw/sessions/<fingerprint>``.

    Export there (``export_claw_session(store, sid, claw_sessions_directory(ws))``)
    and claw-code, started in that workspace, can resume the session.
    """
    root = Path(user_path(workspace, what="a workspace")).resolve()
    return root / ".claw" / "sessions" / workspace_fingerprint(str(root))


def write_file_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (mode 0600: a transcript holds what the agent saw), creating its directory (0700).

    Temp file, fsync, rename over, fsync the directory (``_files.write_private_file``).
    """
    make_private_directories(path.parent)
    write_private_file(path, data)


async def export_claw_session(
    store: Store,
    session_id: str,
    destination: str | os.PathLike[str],
    *,
    at_version: int | None = None,
) -> Path:
    """Write a session's live context as a claw-code JSONL file that claw-code loads unchanged.

    ``destination`` is a file path, or a directory: an existing one, or any ``str``
    ending in a separator (``"out/"``), which is created if missing. The file is then
    ``<session_id>.jsonl`` inside it. ``~`` is expanded. The file is replaced atomically
    (temp file, fsync, rename, directory fsync). Returns its path.

    Raises ``SessionNotFoundError``, and ``InvalidInputError`` when a part of the
    destination's directory is a file.
    """
    text = user_path(destination, what="an export destination")
    path = Path(text)
    if names_directory(text) or path.is_dir():
        path = path / f"{session_id}{EXPORT_SUFFIX}"
    return await _export_to_file(store, session_id, path, at_version)


async def _export_to_file(store: Store, session_id: str, path: Path, at_version: int | None = None) -> Path:
    session = await store.load(session_id, at_version=at_version)
    data = render_claw_session(session)
    try:
        await run_to_completion(write_file_atomically, path, data)
    except NotADirectoryError:
        raise InvalidInputError(
            f"cannot export session {session_id!r} to {path}: " + not_a_directory(str(path.parent), "a directory")
        ) from None
    return path


async def export_claw_sessions(
    store: Store, directory: str | os.PathLike[str], session_ids: Sequence[str] | None = None
) -> list[Path]:
    """Export several sessions (default: all) as ``<directory>/<session_id>.jsonl`` files.

    The directory is created if missing (``~`` expanded). A session that fails does not
    stop the others: after trying every one, ``ExportError`` lists each failure (its
    ``failures``: session id and exception; ``exported``: the files written). Returns the
    files written, in the order of ``session_ids`` (default: newest first).
    """
    target = Path(user_path(directory, what="an export directory"))
    try:
        await run_to_completion(make_private_directories, target)
    except (FileExistsError, NotADirectoryError):
        raise InvalidInputError(not_a_directory(str(target), "a directory to export into")) from None
    if not target.is_dir():
        raise InvalidInputError(not_a_directory(str(target), "a directory to export into"))
    ids = [info.session_id for info in await store.list_sessions()] if session_ids is None else list(session_ids)
    exported: list[Path] = []
    failures: list[tuple[str, Exception]] = []
    for sid in ids:
        try:
            exported.append(await _export_to_file(store, sid, target / f"{sid}{EXPORT_SUFFIX}"))
        except (SessionDBError, OSError) as exc:  # an id or a file that fails: report it, carry on
            failures.append((sid, exc))
    if failures:
        raise ExportError(exported, failures, len(ids))
    return exported
