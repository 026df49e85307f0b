"""The commands that check or change a store: verify, repair, compact, export, import."""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import msgspec

from .._backends._base import AppendRequest
from .._backends.local import repair_store, verify_store
from .._errors import ExportError, InvalidInputError, SessionDeletedError, SessionExistsError
from .._interop import ClawImportReport, export_claw_session, export_claw_sessions, import_claw_files
from .._interop._claw_store import select_files
from .._paths import names_directory
from .._projection import Projection
from .._threads import run_to_completion
from ..integrations._claude_entries import TRANSCRIPT_PROJECTION
from ..integrations._langgraph_state import PROJECTION as LANGGRAPH_PROJECTION
from ._context import (
    CommandError,
    _describe,
    _existing_store,
    _Output,
    _reading,
    _session_info,
    _writing,
    shown_store,
)
from ._progress import Progress
from ._render import (
    format_bytes,
    format_count,
)


async def _with_ticker(label: str, function: Callable[[], Any], stream: TextIO) -> Any:
    """Run blocking ``function`` in a thread with an elapsed-time indicator (work of unknown size)."""
    with Progress(label, None, stream=stream) as progress:
        if not progress.enabled:
            return await run_to_completion(function)
        task = asyncio.ensure_future(run_to_completion(function))
        while not task.done():
            progress.advance(0)
            await asyncio.wait({task}, timeout=0.1)
        return task.result()


async def cmd_verify(args: argparse.Namespace, out: _Output) -> int:
    path = _existing_store(args.store)
    report = await _with_ticker("verifying", lambda: verify_store(path), out.stderr)
    if args.json:
        out.json(report.to_dict())
    else:
        out.line(report.format())
    if not report.ok:
        fatal = report.first_fatal
        verdict = "is corrupt" if fatal is not None and fatal.kind == "corruption" else "lost history"
        raise CommandError(f"store {shown_store(args.store)} {verdict}: {fatal}")
    return 0


async def cmd_repair(args: argparse.Namespace, out: _Output) -> int:
    path = _existing_store(args.store)
    report = await _with_ticker("repairing", lambda: repair_store(path), out.stderr)
    if args.json:
        out.json(report.to_dict())
    else:
        out.line(report.format())
    return 0


def _integration_projections() -> tuple[Projection[Any], ...]:
    """The integrations' projections: compact computes their states so its snapshots hold them.

    Retention relies only on snapshots holding every projection recorded in the
    store. They are registered without being recorded: a store that never used an
    integration must not start keeping history for it.
    """
    # Imported here: the module tries the OpenAI Agents SDK, which every other command can do without.
    from ..integrations.openai_agents import ITEMS_PROJECTION

    return (LANGGRAPH_PROJECTION, TRANSCRIPT_PROJECTION, ITEMS_PROJECTION)


async def cmd_compact(args: argparse.Namespace, out: _Output) -> int:
    async with _writing(args.store) as store:
        recorded = store.recorded_projections()
        unknown = sorted(set(args.forget_projection) - recorded)
        if unknown:
            raise CommandError(
                f"no projection named {', '.join(map(repr, unknown))} is recorded in store {shown_store(args.store)} "
                f"(recorded: {', '.join(map(repr, sorted(recorded))) or 'none'}); nothing was forgotten or compacted"
            )
        forgotten = [name for name in args.forget_projection if await store.forget_projection(name)]
        for projection in _integration_projections():
            if projection.name not in store._projections:
                store._register_projection(projection, record=False)
        with Progress("compacting", None, stream=out.stderr):
            result = await store.compact(purge=args.purge)
        statistics = store.statistics()
    kept = list(result.get("projections_not_registered", ()))
    if args.json:
        out.json({"result": result, "statistics": statistics, "forgotten_projections": forgotten})
        return 0
    seconds = float(result.get("seconds", 0.0))
    out.line(
        f"compacted store {shown_store(args.store)} in {seconds:.2f} s: "
        f"{format_count(int(result.get('snapshots_written', 0)))} snapshot(s) written, "
        f"{format_count(int(result.get('segments_deleted', 0)))} segment(s) deleted, "
        f"{format_bytes(int(result.get('bytes_reclaimed', 0)))} reclaimed"
    )
    out.line(
        f"now {format_bytes(statistics.get('log_bytes', 0))} in {statistics.get('segments', 0)} segment(s), "
        f"{format_count(statistics.get('snapshots', 0))} snapshot(s)"
    )
    for name in forgotten:
        out.line(f"forgot projection {name!r}: retention no longer keeps history for its state")
    if kept:
        out.line(
            f"kept the history of projection(s) {', '.join(map(repr, kept))}: "
            f"recorded in store {shown_store(args.store)} by "
            "an application, but unknown to sessiondb compact, so its snapshots cannot hold their state. "
            "Compaction in the application (which registers them) removes that history; "
            "--forget-projection NAME drops a projection no application registers any more"
        )
    return 0


async def cmd_export(args: argparse.Namespace, out: _Output) -> int:
    if args.html:
        from ._web import export_html

        return await export_html(args, out)
    async with _reading(args.store) as store:
        if args.all:
            if args.at is not None:
                raise CommandError("--at needs one session, not --all")
            directory = args.session  # with --all the one positional argument is the directory
            if args.file is not None:
                raise CommandError("export --all takes one directory: sessiondb export STORE --all DIRECTORY")
            directory = os.path.expanduser(directory)
            if os.path.exists(directory) and not os.path.isdir(directory):
                raise CommandError(f"{directory} is a file; export --all needs a directory")
            sessions = await store.list_sessions()
            with Progress("exporting", len(sessions), unit="sessions", stream=out.stderr) as progress:
                failures: list[str] = []
                for info in sessions:  # one at a time for the progress; failures are listed at the end
                    try:
                        await export_claw_sessions(store, directory, [info.session_id])
                    except ExportError as exc:
                        failures += [f"  {sid}: {_describe(error)}" for sid, error in exc.failures]
                    progress.advance()
            if failures:
                raise CommandError(
                    f"{len(failures)} of {len(sessions)} session(s) were not exported to {directory} "
                    f"(the other {len(sessions) - len(failures)} were):\n" + "\n".join(failures)
                )
            out.note(f"exported {len(sessions)} session(s) to {directory}")
            return 0
        if args.file is None:
            raise CommandError("export needs a session and a file: sessiondb export STORE SESSION FILE")
        await _session_info(store, args)
        target = os.path.expanduser(args.file)
        # "newdir/" names a directory (created if missing); otherwise the file's directory must exist.
        if not names_directory(target):
            parent = os.path.dirname(os.path.abspath(target))
            if not os.path.isdir(parent):
                raise CommandError(f"cannot write {args.file}: directory {parent} does not exist")
        written = await export_claw_session(store, args.session, target, at_version=args.at)
    out.note(f"exported session {args.session} to {written}")
    return 0


async def cmd_import(args: argparse.Namespace, out: _Output) -> int:
    if await run_to_completion(_claude_code_dialect, args.files):
        return await _import_claude_code(args, out)
    total = len(await run_to_completion(select_files, args.files, ClawImportReport()))
    progress = Progress("importing", total, unit="sessions", stream=out.stderr)

    def count_created(batch: Sequence[AppendRequest]) -> None:
        progress.advance(sum(1 for request in batch if request.creates and request.error is None))

    async with _writing(args.store, create=True) as store:
        store.add_batch_listener(count_created)
        with progress:
            try:
                report = await import_claw_files(
                    store,
                    *args.files,
                    skip_bad_lines=args.skip_bad_lines,
                    if_exists="skip" if args.skip_existing else "error",
                )
            except SessionDeletedError as exc:
                raise CommandError(f"{exc}; nothing was imported (--skip-existing imports the others)") from None
            except SessionExistsError as exc:
                raise CommandError(
                    f"session {exc.session_id!r} is already in store {shown_store(args.store)}; nothing was imported "
                    "(--skip-existing imports the others)"
                ) from None
    if args.json:
        out.json(
            {
                "imported": [msgspec.to_builtins(vars(item)) for item in report.imported],
                "skipped_lines": [msgspec.to_builtins(vars(item)) for item in report.skipped_lines],
                "superseded": report.superseded,
                "skipped_sessions": report.skipped_sessions,
                "ignored_files": report.ignored_files,
                "notes": report.notes,
            }
        )
    else:
        out.line(str(report))
    return 0


def _claude_code_dialect(paths: Sequence[str]) -> bool:
    """Whether ``paths`` hold Claude Code transcripts (else: claw-code session files)."""
    try:
        from ..integrations.claude_code_files import looks_like_claude_code
    except ImportError:  # the SDK is not installed: these are claw-code files, or the import says why not
        return False
    try:
        return looks_like_claude_code(paths)
    except InvalidInputError:
        return False  # a missing path: the claw-code import reports it


async def _import_claude_code(args: argparse.Namespace, out: _Output) -> int:
    from ..integrations.claude_code_files import import_claude_code_files

    async with _writing(args.store, create=True) as store:
        report = await import_claude_code_files(
            store, *args.files, skip_bad_lines=args.skip_bad_lines, skip_existing=args.skip_existing
        )
    if args.json:
        out.json(
            {
                "dialect": "claude-code",
                "imported": [vars(item) for item in report.imported],
                "skipped_lines": report.skipped_lines,
                "skipped_files": report.skipped_files,
            }
        )
    else:
        out.line(str(report))
    return 0


# ---------------------------------------------------------------- parsing and errors
