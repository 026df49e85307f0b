"""Claude Code's own transcript files as sessiondb sessions: import a tree, export a transcript byte for byte.

Claude Code keeps ``<projects>/<project>/<session>.jsonl`` and, beside it, subagent
transcripts ``<project>/<session>/subagents/[…/]agent-<id>.jsonl``. Each file becomes
the session of the SDK key its path names (the key ``file_path_to_session_key`` of the
Claude Agent SDK gives), written through ``SessionDBSessionStore``, so an imported
transcript is the same as a mirrored one: ``load``, listings, summaries, resume,
and the sessiondb messages projected from it.

Fidelity: every line of a file is read and checked before anything is written; a
line that is not a JSON object with a str ``type`` (or is torn, or not UTF-8) is an
``ImportFormatError`` naming the file and line, unless ``skip_bad_lines`` (then the
report lists it). A file is ONE atomic append: imported whole or not at all. A line
that would not serialize back to the same bytes is kept verbatim too, so
``export_claude_code_transcript`` writes the file back byte for byte (blank lines,
which Claude Code does not write, are not kept).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._errors import ImportFormatError, InvalidInputError, SessionNotFoundError
from .._files import write_private_file
from .._store import Store
from .._threads import run_to_completion
from ._claude_entries import check_entry, decode_entry
from ._claude_keys import encode_key
from .claude_agent_sdk import SessionDBSessionStore


@dataclass
class ImportedTranscript:
    """One transcript file imported: its key, the sessiondb session holding it, how many lines."""

    path: str
    key: dict[str, str]
    session_id: str
    entries: int


@dataclass
class ClaudeCodeImportReport:
    """What ``import_claude_code_files`` did, and what it left out and why."""

    imported: list[ImportedTranscript] = field(default_factory=list)
    # (path, line number, reason) of lines left out with skip_bad_lines
    skipped_lines: list[tuple[str, int, str]] = field(default_factory=list)
    # (path, reason): files not imported (already in the store, not a transcript's place)
    skipped_files: list[tuple[str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        parts = [f"imported {len(self.imported)} Claude Code transcript(s)"]
        if self.skipped_lines:
            parts.append(f"skipped {len(self.skipped_lines)} bad line(s)")
        if self.skipped_files:
            parts.append(f"{len(self.skipped_files)} file(s) not imported")
        lines = [", ".join(parts)]
        lines += [f"  skipped {path}:{line}: {reason}" for path, line, reason in self.skipped_lines]
        lines += [f"  not imported {path}: {reason}" for path, reason in self.skipped_files]
        return "\n".join(lines)


def key_for_path(path: Path) -> dict[str, str] | None:
    """The SDK key a transcript file's place names, or None if it is not where Claude Code keeps one."""
    if path.suffix != ".jsonl":
        return None
    parts = path.parts
    if "subagents" in parts[:-1]:
        at = len(parts) - 1 - parts[::-1].index("subagents")
        if at < 2:
            return None
        subpath = "/".join((*parts[at:-1], path.stem))
        return {"project_key": parts[at - 2], "session_id": parts[at - 1], "subpath": subpath}
    if len(parts) < 2:
        return None
    return {"project_key": parts[-2], "session_id": path.stem}


def looks_like_claude_code(paths: Iterable[str | os.PathLike[str]]) -> bool:
    """Whether the first transcript line found under ``paths`` is Claude Code's (not claw-code's)."""
    for path in _files(paths):
        try:
            with open(path, "rb") as file:
                for raw in file:
                    if not raw.strip():
                        continue
                    try:
                        first = json.loads(raw)
                    except ValueError:
                        return False
                    return isinstance(first, dict) and ("sessionId" in first or "parentUuid" in first)
        except OSError:
            continue
    return False


def _files(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    found: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            for root, dirs, names in os.walk(path):
                dirs.sort()
                found.extend(Path(root) / name for name in sorted(names) if name.endswith(".jsonl"))
        elif path.exists():
            found.append(path)
        else:
            raise InvalidInputError(f"cannot import {path}: no such file or directory")
    return found


def _parse(path: Path, key: dict[str, str], skip_bad_lines: bool, report: ClaudeCodeImportReport) -> Any:
    """The file's entries and the source lines to keep (id(entry) -> line); errors name file and line."""
    data = path.read_bytes()
    entries: list[dict[str, Any]] = []
    kept: dict[int, str] = {}
    raw_lines = data.split(b"\n")
    torn_tail = raw_lines[-1] != b""
    if not torn_tail:
        raw_lines.pop()
    for number, raw in enumerate(raw_lines, 1):
        if not raw.strip():
            continue
        problem = None
        try:
            line = raw.decode("utf-8")
            entry = json.loads(line)
            check_entry(key, number, entry)
        except UnicodeDecodeError:
            problem = "not UTF-8"
        except ValueError as exc:  # json's errors and InvalidInputError
            problem = str(exc)
        if problem is not None:
            if number == len(raw_lines) and torn_tail:
                problem = f"torn last line (no newline, {problem})"
            if not skip_bad_lines:
                raise ImportFormatError(str(path), number, f"{problem} (--skip-bad-lines leaves such lines out)")
            report.skipped_lines.append((str(path), number, problem))
            continue
        if _render(entry) != line:
            kept[id(entry)] = line
        entries.append(entry)
    return entries, kept


def _render(entry: Any) -> str:
    """An entry as Claude Code writes a line (JavaScript's JSON.stringify: compact, non-ASCII raw)."""
    return json.dumps(entry, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


async def import_claude_code_files(
    store: Store,
    *paths: str | os.PathLike[str],
    skip_bad_lines: bool = False,
    skip_existing: bool = False,
) -> ClaudeCodeImportReport:
    """Import Claude Code transcript files and directory trees (such as ``~/.claude/projects``).

    Raises ``ImportFormatError`` (file and line) for a bad line unless ``skip_bad_lines``,
    and ``InvalidInputError`` for a transcript whose key already has a session unless
    ``skip_existing``; in both cases before that file writes anything.
    """
    adapter = SessionDBSessionStore(store)
    report = ClaudeCodeImportReport()
    files = await run_to_completion(_files, paths)
    for path in files:
        key = key_for_path(path)
        if key is None:
            report.skipped_files.append((str(path), "not <project>/<session>.jsonl nor a subagents/ transcript"))
            continue
        base = encode_key(key)
        entries, kept = await run_to_completion(_parse, path, key, skip_bad_lines, report)
        if await adapter.session_id_for(key) is not None:  # type: ignore[arg-type]
            if skip_existing:
                report.skipped_files.append((str(path), "its transcript is already in the store"))
                continue
            raise InvalidInputError(
                f"cannot import {path}: the store already holds the transcript of key {key}; nothing of it was "
                "imported (skip_existing / --skip-existing imports the others)"
            )
        if entries:
            await adapter._append_locked(key, base, entries, kept)  # type: ignore[arg-type]
        session_id = await adapter.session_id_for(key)  # type: ignore[arg-type]
        report.imported.append(ImportedTranscript(str(path), key, session_id or "", len(entries)))
    return report


async def export_claude_code_transcript(store: Store, key: dict[str, str], path: str | os.PathLike[str]) -> int:
    """Write ``key``'s transcript as Claude Code's JSONL (imported lines byte for byte); return the line count.

    Written to a temporary file, fsynced and renamed into place (its directory fsynced).
    """
    adapter = SessionDBSessionStore(store)
    session_id = await adapter.session_id_for(key)  # type: ignore[arg-type]
    if session_id is None:
        raise SessionNotFoundError(encode_key(key), f"no transcript for key {key}")
    fold = await adapter._fold(session_id)
    lines = [fold.lines.get(index) or _render(decode_entry(raw)) for index, raw in enumerate(fold.entries)]
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    await run_to_completion(write_private_file, Path(path), data)  # 0600, as the store's files
    return len(lines)
