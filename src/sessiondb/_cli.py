"""The ``sessiondb`` command line: look at a store, follow it live, check, repair, compact, import and export."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any, TextIO

import anyio
import msgspec

from ._backends._base import AppendRequest
from ._backends._local import LocalBackend
from ._backends._local_compaction import CHECKPOINT_NAME, SNAPSHOT_PREFIX, SNAPSHOT_SUFFIX
from ._backends._segment import segment_number
from ._cli_progress import Progress
from ._cli_render import (
    SESSION_HEADER,
    Style,
    event_json,
    event_line,
    format_bytes,
    format_count,
    format_time,
    info_json,
    iso_time,
    render_session,
    session_rows,
    table,
)
from ._cli_tail import LogFollower
from ._errors import SessionDBError, SessionExistsError, SessionNotFoundError
from ._events import RecordedEvent, SessionDeleted
from ._interop import ClawImportReport, export_claw_session, import_claw_files
from ._interop._claw_store import select_files
from ._store import Store, open_store
from ._verify import repair_store, verify_store

PROG = "sessiondb"
# Seconds between looks at the files when following a store another process writes.
DEFAULT_POLL_INTERVAL = 0.2


class CommandError(Exception):
    """A problem to report as one line on stderr, with exit status 1."""


# ---------------------------------------------------------------- opening stores


def _is_url(target: str) -> bool:
    return target.startswith(("postgresql://", "postgres://"))


def _existing_store(target: str) -> str:
    """The store directory (or URL) a read command may open, or a clear error."""
    if _is_url(target):
        return target
    if target == ":memory:":
        raise CommandError("':memory:' is a store inside one process; give the path of a store directory")
    path = os.path.abspath(target)
    if not os.path.exists(path):
        raise CommandError(f"no store at {target}: no such directory")
    if not os.path.isdir(path):
        raise CommandError(f"{target} is a file, not a store directory")
    if not any(segment_number(name) is not None for name in os.listdir(path)):
        raise CommandError(f"{target} is not a sessiondb store (it holds no segment files)")
    return path


def _writable_store(target: str, *, create: bool) -> str:
    """A store directory to open for writing; a new one only where ``create`` allows it."""
    if _is_url(target):
        return target
    if create and target != ":memory:":
        path = os.path.abspath(target)
        if not os.path.exists(path):
            return path
        if os.path.isdir(path) and not os.listdir(path):
            return path
    return _existing_store(target)


@contextlib.asynccontextmanager
async def _reading(target: str) -> AsyncIterator[Store]:
    """A store opened read-only: no lock, nothing changed on disk, works beside a writing process."""
    path = _existing_store(target)
    async with open_store(path, read_only=not _is_url(path)) as store:
        yield store


@contextlib.asynccontextmanager
async def _writing(target: str, *, create: bool = False) -> AsyncIterator[Store]:
    async with open_store(_writable_store(target, create=create)) as store:
        yield store


# ---------------------------------------------------------------- commands


class _Output:
    def __init__(self, stdout: TextIO, stderr: TextIO) -> None:
        self.stdout = stdout
        self.stderr = stderr
        self.style = Style(stdout)

    def line(self, text: str = "") -> None:
        self.stdout.write(text + "\n")

    def lines(self, texts: Sequence[str]) -> None:
        if texts:
            self.stdout.write("\n".join(texts) + "\n")

    def json(self, value: Any) -> None:
        self.stdout.write(msgspec.json.format(msgspec.json.encode(value), indent=2).decode() + "\n")

    def note(self, text: str) -> None:
        """Side remarks for a person, on stderr, so piped stdout stays data only."""
        self.stderr.write(text + "\n")


async def cmd_ls(args: argparse.Namespace, out: _Output) -> int:
    async with _reading(args.store) as store:
        sessions = await store.list_sessions()
    if args.limit is not None:
        sessions = sessions[: args.limit]
    if args.json:
        out.json([info_json(info) for info in sessions])
    elif not sessions:
        out.note(f"no sessions in {args.store}")
    else:
        out.lines(table(session_rows(sessions), SESSION_HEADER, out.style, right={2, 3}))
    return 0


async def cmd_show(args: argparse.Namespace, out: _Output) -> int:
    async with _reading(args.store) as store:
        info = await _session_info(store, args)
        if args.raw:
            if args.at is not None:
                store._check_version(info, args.at)
            events = [event async for event in store.read(args.session, up_to=args.at)]
            if args.json:
                out.lines([event_json(event) for event in events])
            else:
                out.lines([event_line(event, out.style, with_session=info.fork is not None) for event in events])
            return 0
        session = await store.load(args.session, at_version=args.at)
    if args.json:
        out.json(msgspec.to_builtins(session))
    else:
        out.lines(render_session(session, out.style, thinking=args.thinking, full=args.full))
    return 0


async def _session_info(store: Store, args: argparse.Namespace) -> Any:
    try:
        return await store.session_info(args.session)
    except SessionNotFoundError as exc:
        detail = " (it was deleted)" if "deleted" in str(exc) else ""
        raise CommandError(
            f"no session {args.session!r} in store {args.store}{detail}; `sessiondb ls {args.store}` lists them"
        ) from None


async def cmd_tail(args: argparse.Namespace, out: _Output) -> int:
    printed = 0

    def emit(event: RecordedEvent) -> bool:
        """Print one event; True when tail should stop."""
        nonlocal printed
        if args.json:
            out.line(event_json(event))
        else:
            out.line(event_line(event, out.style, with_session=args.session is None))
        printed += 1
        ended = args.session is not None and type(event.event) is SessionDeleted and event.session_id == args.session
        return ended or (args.count is not None and printed >= args.count)

    if args.count is not None and args.count <= 0:
        return 0
    path = _existing_store(args.store)
    if _is_url(path):
        return await _tail_subscription(path, args, emit, out)
    async with _reading(path) as store:
        backend = store.backend
        assert isinstance(backend, LocalBackend)
        if args.session is not None:
            info = await _session_info(store, args)
            recent = [e async for e in store.read(args.session, after=max(0, info.version - args.lines))]
        else:
            after = max(0, backend.last_position - args.lines)
            recent = await store.read_all(after=after, limit=args.lines) if args.lines else []
        # Where the read-only open's view of the log ends: following starts there.
        last_segment = backend._segments[-1]
        follower = LogFollower(path, last_segment.number, last_segment.size, backend.last_position + 1)
    for event in recent:
        if emit(event):
            return 0
    out.stdout.flush()
    while True:
        events = await anyio.to_thread.run_sync(follower.poll)
        for event in events:
            if (args.session is None or event.session_id == args.session) and emit(event):
                return 0
        if events:
            out.stdout.flush()
        else:
            await anyio.sleep(args.interval)


async def _tail_subscription(
    target: str, args: argparse.Namespace, emit: Callable[[RecordedEvent], bool], out: _Output
) -> int:
    """Follow a shared-database store through the store's own subscriptions (they poll the database)."""
    async with open_store(target) as store:
        if args.session is not None:
            info = await _session_info(store, args)
            subscription = store.subscribe(args.session, after=max(0, info.version - args.lines))
        else:
            subscription = store.subscribe_all(after=max(0, store.backend.last_position - args.lines))
        async with subscription:
            async for event in subscription:
                stop = emit(event)
                out.stdout.flush()
                if stop:
                    break
    return 0


async def cmd_stats(args: argparse.Namespace, out: _Output) -> int:
    async with _reading(args.store) as store:
        sessions = await store.list_sessions()
        statistics = store.statistics()
        backend = store.backend
        recovery = backend.recovery if isinstance(backend, LocalBackend) else {}
    path = _existing_store(args.store)
    last_snapshot, checkpoint = _compactor_files(path) if not _is_url(path) else (0, 0)
    torn = [
        {"file": file, "offset": offset, "bytes": size, "reason": reason}
        for file, offset, size, reason in recovery.get("truncated_tails", [])
    ]
    summary = {
        "store": path,
        "sessions": len(sessions),
        "forks": sum(1 for info in sessions if info.fork is not None),
        "events": statistics.get("last_position", 0),
        "log_bytes": statistics.get("log_bytes", 0),
        "segments": statistics.get("segments", 0),
        "snapshots": statistics.get("snapshots", 0),
        "snapshot_bytes": statistics.get("snapshot_bytes", 0),
        "first_available_position": statistics.get("first_available_position", 1),
        "last_snapshot": iso_time(last_snapshot),
        "checkpoint": iso_time(checkpoint),
        "last_update": iso_time(sessions[0].updated_at_ms) if sessions else None,
        "torn_tail": torn,
    }
    if args.json:
        out.json(summary)
        return 0
    rows = [
        ("store", path),
        ("sessions", f"{format_count(len(sessions))} ({format_count(summary['forks'])} fork(s))"),
        ("events", format_count(summary["events"])),
    ]
    if not _is_url(path):  # files: the database reports none of these
        rows += [
            ("log", f"{format_bytes(summary['log_bytes'])} in {summary['segments']} segment(s)"),
            ("snapshots", f"{format_count(summary['snapshots'])} ({format_bytes(summary['snapshot_bytes'])})"),
            ("last snapshot", format_time(last_snapshot) if last_snapshot else "never"),
            ("checkpoint", format_time(checkpoint) if checkpoint else "none (open scans every segment)"),
        ]
    rows.append(("last update", format_time(sessions[0].updated_at_ms) if sessions else "-"))
    if summary["first_available_position"] > 1:
        rows.append(("history from", f"position {summary['first_available_position']} (older removed by retention)"))
    for tail in torn:
        rows.append(
            (
                "torn tail",
                f"{tail['bytes']} byte(s) at the end of {tail['file']} ({tail['reason']}): "
                "a write in progress, or a crash; never acknowledged",
            )
        )
    width = max(len(name) for name, _ in rows)
    out.lines([f"{out.style.bold(name.ljust(width))}  {value}" for name, value in rows])
    return 0


def _compactor_files(path: str) -> tuple[int, int]:
    """When the compactor last wrote a snapshot, and the index checkpoint (file mtimes, ms; 0 if none)."""
    snapshot = checkpoint = 0.0
    for entry in os.scandir(path):
        if entry.name == CHECKPOINT_NAME:
            checkpoint = entry.stat().st_mtime
        elif entry.name.startswith(SNAPSHOT_PREFIX) and entry.name.endswith(SNAPSHOT_SUFFIX):
            snapshot = max(snapshot, entry.stat().st_mtime)
    return int(snapshot * 1000), int(checkpoint * 1000)


async def _with_ticker(label: str, function: Callable[[], Any], stream: TextIO) -> Any:
    """Run blocking ``function`` in a thread with an elapsed-time indicator (work of unknown size)."""
    with Progress(label, None, stream=stream) as progress:
        if not progress.enabled:
            return await anyio.to_thread.run_sync(function)
        task = asyncio.ensure_future(anyio.to_thread.run_sync(function))
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
        raise CommandError(f"store {args.store} {verdict}: {fatal}")
    return 0


async def cmd_repair(args: argparse.Namespace, out: _Output) -> int:
    path = _existing_store(args.store)
    report = await _with_ticker("repairing", lambda: repair_store(path), out.stderr)
    if args.json:
        out.json(report.to_dict())
    else:
        out.line(report.format())
    return 0


async def cmd_compact(args: argparse.Namespace, out: _Output) -> int:
    async with _writing(args.store) as store:
        with Progress("compacting", None, stream=out.stderr):
            result = await store.compact()
        statistics = store.statistics()
    if args.json:
        out.json({"result": result, "statistics": statistics})
        return 0
    seconds = float(result.get("seconds", 0.0))
    out.line(
        f"compacted store {args.store} in {seconds:.2f} s: "
        f"{format_count(int(result.get('snapshots_written', 0)))} snapshot(s) written, "
        f"{format_count(int(result.get('segments_deleted', 0)))} segment(s) deleted, "
        f"{format_bytes(int(result.get('bytes_reclaimed', 0)))} reclaimed"
    )
    out.line(
        f"now {format_bytes(statistics.get('log_bytes', 0))} in {statistics.get('segments', 0)} segment(s), "
        f"{format_count(statistics.get('snapshots', 0))} snapshot(s)"
    )
    return 0


async def cmd_export(args: argparse.Namespace, out: _Output) -> int:
    async with _reading(args.store) as store:
        if args.all:
            if args.at is not None:
                raise CommandError("--at needs one session, not --all")
            directory = args.session  # with --all the one positional argument is the directory
            if args.file is not None:
                raise CommandError("export --all takes one directory: sessiondb export STORE --all DIRECTORY")
            sessions = await store.list_sessions()
            if os.path.exists(directory) and not os.path.isdir(directory):
                raise CommandError(f"{directory} is a file; export --all needs a directory")
            with Progress("exporting", len(sessions), unit="sessions", stream=out.stderr) as progress:
                for info in sessions:
                    await export_claw_session(
                        store, info.session_id, os.path.join(directory, f"{info.session_id}.jsonl")
                    )
                    progress.advance()
            out.note(f"exported {len(sessions)} session(s) to {directory}")
            return 0
        if args.file is None:
            raise CommandError("export needs a session and a file: sessiondb export STORE SESSION FILE")
        await _session_info(store, args)
        parent = os.path.dirname(os.path.abspath(args.file))
        if not os.path.isdir(parent):
            raise CommandError(f"cannot write {args.file}: directory {parent} does not exist")
        written = await export_claw_session(store, args.session, args.file, at_version=args.at)
    out.note(f"exported session {args.session} to {written}")
    return 0


async def cmd_import(args: argparse.Namespace, out: _Output) -> int:
    total = len(await anyio.to_thread.run_sync(select_files, args.files, ClawImportReport()))
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
            except SessionExistsError as exc:
                raise CommandError(
                    f"session {exc.session_id!r} is already in store {args.store}; nothing was imported "
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


# ---------------------------------------------------------------- parsing and errors


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return value


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 0 < value <= 60:
        raise argparse.ArgumentTypeError(f"expected seconds in (0, 60], got {value}")
    return value


class _IntermixedParser(argparse.ArgumentParser):
    """A subcommand parser that takes options anywhere between its positionals.

    Plain ``parse_args`` binds an optional positional (``export STORE SESSION [FILE]``)
    before it sees a later option, so ``export s chat --at 4 out.jsonl`` failed with
    "unrecognized arguments". ``parse_known_intermixed_args`` itself calls
    ``parse_known_args``, hence the re-entry guard.
    """

    _intermixing = False

    def parse_known_args(  # type: ignore[override]
        self, args: Any = None, namespace: Any = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if self._intermixing:
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


def build_parser() -> argparse.ArgumentParser:
    from . import __version__  # the package is fully imported by the time a parser is built

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Look at, follow, check and move sessiondb stores. STORE is a store directory "
        "(or a postgresql:// URL). Reading commands open the store read-only and work while "
        "another process writes to it.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_IntermixedParser)

    ls = sub.add_parser("ls", help="list sessions, most recently updated first")
    ls.add_argument("store", metavar="STORE")
    ls.add_argument("--json", action="store_true", help="a JSON array, for scripts")
    ls.add_argument("--limit", type=_non_negative, metavar="N", help="only the N most recent sessions")
    ls.set_defaults(run=cmd_ls)

    show = sub.add_parser("show", help="a session's conversation, readably (or its raw events)")
    show.add_argument("store", metavar="STORE")
    show.add_argument("session", metavar="SESSION")
    show.add_argument("--at", type=_non_negative, metavar="VERSION", help="as it was at this version")
    show.add_argument("--raw", action="store_true", help="the recorded events, one per line")
    show.add_argument("--json", action="store_true", help="JSON: the session state (with --raw: JSON lines)")
    show.add_argument("--thinking", action="store_true", help="unfold thinking blocks")
    show.add_argument("--full", action="store_true", help="do not fold long tool inputs and results")
    show.set_defaults(run=cmd_show)

    tail = sub.add_parser("tail", help="follow new events live, like tail -f (Ctrl-C stops)")
    tail.add_argument("store", metavar="STORE")
    tail.add_argument("session", metavar="SESSION", nargs="?", help="only this session (default: every session)")
    tail.add_argument("-n", "--lines", type=_non_negative, default=10, metavar="N", help="recent events first (10)")
    tail.add_argument("--json", action="store_true", help="one JSON object per event")
    tail.add_argument("--count", type=_non_negative, metavar="N", help="exit after printing N events")
    tail.add_argument(
        "--interval", type=_interval, default=DEFAULT_POLL_INTERVAL, metavar="SECONDS", help="poll interval (0.2)"
    )
    tail.set_defaults(run=cmd_tail)

    stats = sub.add_parser("stats", help="sessions, events, bytes, segments, snapshots, last compaction")
    stats.add_argument("store", metavar="STORE")
    stats.add_argument("--json", action="store_true")
    stats.set_defaults(run=cmd_stats)

    verify = sub.add_parser(
        "verify",
        help="check every checksum and record, snapshots and checkpoint; exit status 1 if corrupt or history lost",
    )
    verify.add_argument("store", metavar="STORE")
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(run=cmd_verify)

    repair = sub.add_parser("repair", help="keep everything before the first damage, move the rest aside")
    repair.add_argument("store", metavar="STORE")
    repair.add_argument("--json", action="store_true")
    repair.set_defaults(run=cmd_repair)

    compact = sub.add_parser("compact", help="run one storage compaction pass now")
    compact.add_argument("store", metavar="STORE")
    compact.add_argument("--json", action="store_true")
    compact.set_defaults(run=cmd_compact)

    export = sub.add_parser("export", help="write a session as a claw-code JSONL file")
    export.add_argument("store", metavar="STORE")
    export.add_argument("session", metavar="SESSION", help="the session (with --all: the target directory)")
    export.add_argument("file", metavar="FILE", nargs="?", help="the file to write (or an existing directory)")
    export.add_argument("--at", type=_non_negative, metavar="VERSION", help="the session as it was at this version")
    export.add_argument("--all", action="store_true", help="every session, into a directory")
    export.set_defaults(run=cmd_export)

    imp = sub.add_parser("import", help="import claw-code session files or directories (creates STORE if new)")
    imp.add_argument("store", metavar="STORE")
    imp.add_argument("files", metavar="FILE", nargs="+")
    imp.add_argument("--skip-bad-lines", action="store_true", help="leave malformed JSONL lines out, and list them")
    imp.add_argument("--skip-existing", action="store_true", help="leave sessions already in the store alone")
    imp.add_argument("--json", action="store_true")
    imp.set_defaults(run=cmd_import)
    return parser


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror or exc}"
    text = str(exc)
    return text if text else type(exc).__name__


def _single(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one error inside (nested) task-group wrappers, so it is reported like any other."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


async def _interruptible(command: Coroutine[Any, Any, int]) -> int:
    """Run ``command``; the first Ctrl-C stops it cleanly, later ones are ignored while it stops.

    With Python's default handler a second SIGINT raised KeyboardInterrupt inside the
    cleanup (closing the store, the event loop's signal wakeup fd), printing "Exception
    ignored ... Invalid file descriptor". After an interrupt SIGINT stays ignored: the
    process is exiting with status 130.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    interrupted = False

    def on_interrupt() -> None:
        nonlocal interrupted
        if not interrupted:
            interrupted = True
            task.cancel()

    try:
        loop.add_signal_handler(signal.SIGINT, on_interrupt)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread: no signals to handle
        return await command
    try:
        return await command
    except asyncio.CancelledError:
        if interrupted:
            raise KeyboardInterrupt from None
        raise
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        if interrupted:
            signal.signal(signal.SIGINT, signal.SIG_IGN)


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run the command line; return the exit status (0 ok, 1 error, 2 usage, 130 interrupted)."""
    stdout = stdout if stdout is not None else sys.stdout
    stderr = stderr if stderr is not None else sys.stderr
    parser = build_parser()
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse printed usage and the reason
        return int(exc.code) if isinstance(exc.code, int) else 2
    out = _Output(stdout, stderr)
    try:
        try:
            status: int = asyncio.run(_interruptible(args.run(args, out)))
            return status
        except BaseExceptionGroup as group:
            raise _single(group) from None
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (``sessiondb ls STORE | head``): stop quietly, like other tools.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), stdout.fileno())
        return 141
    except (CommandError, SessionDBError) as exc:
        stderr.write(f"{PROG}: error: {_describe(exc)}\n")
    except OSError as exc:
        if exc.errno == errno.EPIPE:
            return 141
        stderr.write(f"{PROG}: error: {_describe(exc)}\n")
    except Exception as exc:  # a bug: still one line, never a traceback
        stderr.write(f"{PROG}: internal error: {type(exc).__name__}: {_describe(exc)}\n")
    return 1


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


__all__ = ["build_parser", "main", "run"]
