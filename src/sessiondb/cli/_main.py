"""The ``sessiondb`` command line: the argument parser and ``main`` (commands: ``_inspect.py``, ``_maintain.py``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import os
import re
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, ClassVar, NoReturn, TextIO

from .._backends._listing import MAX_PAGE
from .._errors import SessionDBError
from .._search import MAX_LIMIT as MAX_SEARCH_LIMIT
from ._context import (
    DEFAULT_POLL_INTERVAL,
    PROG,
    CommandError,
    _describe,
    _Output,
)
from ._inspect import cmd_ls, cmd_show, cmd_stats, cmd_tail
from ._label_cmds import cmd_pin, cmd_tag, cmd_title
from ._maintain import cmd_compact, cmd_export, cmd_import, cmd_repair, cmd_verify
from ._search import cmd_search
from ._web import cmd_serve


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return value


def _limit(maximum: int) -> Callable[[str], int]:
    """A ``--limit`` of 1..maximum (0 listed nothing and looked like an empty store), checked by argparse."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if not 1 <= value <= maximum:
            raise argparse.ArgumentTypeError(f"expected a number from 1 to {maximum:,}, got {value}")
        return value

    return parse


def _port(text: str) -> int:
    value = _non_negative(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"expected a port number in 0..65535, got {value}")
    return value


def _positive(text: str) -> int:
    value = _non_negative(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 0 < value <= 60:
        raise argparse.ArgumentTypeError(f"expected seconds in (0, 60], got {value}")
    return value


_EXPECTED_ONE = re.compile(r"argument (\S+): expected one argument")


class _Parser(argparse.ArgumentParser):
    """argparse, with a way out added to its errors about values that start with '-'.

    Claude project keys (``-home-me-app``) and titles like ``-draft-`` start with '-', so
    argparse takes them for options: ``--scope -home-me-app`` "expected one argument",
    ``title STORE SID -draft-`` is an "unrecognized argument". The message says how.
    """

    argv: ClassVar[list[str]] = []  # the command line being parsed (set by ``_parse``)

    def error(self, message: str) -> NoReturn:
        super().error(message + _dash_hint(message, self.argv))


def _dash_hint(message: str, argv: Sequence[str]) -> str:
    expected = _EXPECTED_ONE.search(message)
    if expected is not None:
        for option in expected.group(1).split("/"):
            if option in argv:
                following = argv.index(option) + 1
                if following < len(argv) and argv[following].startswith("-"):
                    long = expected.group(1).split("/")[-1]
                    return f"; for a value that starts with '-', write {long}={argv[following]}"
        return ""
    if "unrecognized arguments: -" in message:
        value = message.split("unrecognized arguments: ", 1)[1].split()[0]
        return f"; for a value that starts with '-' (a title, say), put -- before it: ... -- {value}"
    return ""


class _IntermixedParser(_Parser):
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
    from .. import __version__  # the package is fully imported by the time a parser is built

    parser = _Parser(
        prog=PROG,
        description="Look at, follow, check and move sessiondb stores. STORE is a store directory "
        "(or a postgresql:// URL). Reading commands open the store read-only and work while "
        "another process writes to it.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_IntermixedParser)

    ls = sub.add_parser("ls", help="list sessions, most recently updated first (filters: scope, tag, title)")
    ls.add_argument("store", metavar="STORE")
    ls.add_argument("--json", action="store_true", help="a JSON array, for scripts")
    ls.add_argument(
        "--limit",
        type=_limit(MAX_PAGE),
        metavar="N",
        help=f"only the first N sessions of the order (1 to {MAX_PAGE:,})",
    )
    ls.add_argument(
        "--scope", metavar="SCOPE", help="only sessions of this scope (--scope=-key for one starting with -)"
    )
    ls.add_argument("--tag", metavar="TAG", help="only sessions with this tag")
    ls.add_argument("--title", metavar="TEXT", help="only sessions whose title contains TEXT (any case)")
    pinned = ls.add_mutually_exclusive_group()
    pinned.add_argument("--pinned", dest="pinned", action="store_const", const=True, help="only pinned sessions")
    pinned.add_argument("--unpinned", dest="pinned", action="store_const", const=False, help="only unpinned ones")
    ls.add_argument(
        "--sort",
        choices=("updated", "created", "title", "version"),
        default="updated",
        help="order (default: updated); newest, last or highest first",
    )
    ls.add_argument("--asc", action="store_true", help="ascending: oldest, first or lowest first")
    ls.set_defaults(run=cmd_ls)

    title = sub.add_parser("title", help="set a session's title (or --clear it); the history keeps old titles")
    title.add_argument("store", metavar="STORE")
    title.add_argument("session", metavar="SESSION")
    title.add_argument("text", metavar="TEXT", nargs="?", help="the new title (one line, at most 500 characters)")
    title.add_argument("--clear", action="store_true", help="remove the title")
    title.add_argument("--json", action="store_true")
    title.set_defaults(run=cmd_title)

    tag = sub.add_parser(
        "tag",
        help="add (+TAG or TAG) and remove (-TAG) a session's tags",
        description="Add tags with +TAG (or a bare TAG) and remove them with -TAG, in any mix: "
        "`sessiondb tag STORE SESSION +urgent -triage`. --add/--remove do the same.",
    )
    tag.add_argument("store", metavar="STORE")
    tag.add_argument("session", metavar="SESSION")
    tag.add_argument("changes", metavar="+TAG|-TAG", nargs="*", help="tags to add (+) or remove (-)")
    tag.add_argument("--add", action="append", metavar="TAG", help="add TAG")
    tag.add_argument("--remove", action="append", metavar="TAG", help="remove TAG")
    tag.add_argument("--json", action="store_true")
    tag.set_defaults(run=cmd_tag, removals=[])

    pin = sub.add_parser("pin", help="pin a session (--off unpins it); ls --pinned lists pinned sessions")
    pin.add_argument("store", metavar="STORE")
    pin.add_argument("session", metavar="SESSION")
    pin.add_argument("--off", action="store_true", help="unpin")
    pin.add_argument("--json", action="store_true")
    pin.set_defaults(run=cmd_pin)

    show = sub.add_parser("show", help="a session's conversation, readably (or its raw events)")
    show.add_argument("store", metavar="STORE")
    show.add_argument("session", metavar="SESSION")
    show.add_argument("--at", type=_non_negative, metavar="VERSION", help="as it was at this version")
    show.add_argument("--raw", action="store_true", help="the recorded events, one per line")
    show.add_argument("--json", action="store_true", help="JSON: the session state (with --raw: JSON lines)")
    show.add_argument("--thinking", action="store_true", help="unfold thinking blocks")
    show.add_argument("--full", action="store_true", help="do not fold long tool inputs and results")
    show.set_defaults(run=cmd_show)

    search = sub.add_parser("search", help="find messages, tool calls and results across sessions (best first)")
    search.add_argument("store", metavar="STORE")
    search.add_argument("query", metavar="QUERY", help='words (all must match), "a phrase", prefix*')
    search.add_argument("--newest", action="store_true", help="newest first instead of best first")
    search.add_argument(
        "--limit",
        type=_limit(MAX_SEARCH_LIMIT),
        default=20,
        metavar="N",
        help=f"hits per page (20; 1 to {MAX_SEARCH_LIMIT:,})",
    )
    search.add_argument("--session", metavar="SESSION", help="only events recorded in this session")
    search.add_argument("--scope", metavar="SCOPE", help="only sessions of this scope")
    search.add_argument("--tag", metavar="TAG", help="only sessions with this tag")
    search.add_argument("--cursor", metavar="CURSOR", help="the next page (printed after a full page)")
    search.add_argument("--json", action="store_true", help="hits with snippet, highlights and score as JSON")
    search.set_defaults(run=cmd_search)

    tail = sub.add_parser("tail", help="follow new events live, like tail -f (Ctrl-C stops)")
    tail.add_argument("store", metavar="STORE")
    tail.add_argument("session", metavar="SESSION", nargs="?", help="only this session (default: every session)")
    tail.add_argument("-n", "--lines", type=_non_negative, default=10, metavar="N", help="recent events first (10)")
    tail.add_argument("--json", action="store_true", help="one JSON object per event")
    tail.add_argument("--count", type=_positive, metavar="N", help="exit after printing N events")
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
    compact.add_argument(
        "--purge",
        action="store_true",
        help="remove deleted data from disk now: seal the active segment and delete every sealed segment "
        "snapshots cover (time travel below them is lost)",
    )
    compact.add_argument(
        "--forget-projection",
        action="append",
        default=[],
        metavar="NAME",
        help="remove the store's record of a projection no application registers any more (renamed or "
        "dropped), so retention stops keeping the log history its state needs; repeatable",
    )
    compact.add_argument("--json", action="store_true")
    compact.set_defaults(run=cmd_compact)

    export = sub.add_parser("export", help="write a session as a claw-code JSONL file (or one HTML page: --html)")
    export.add_argument("store", metavar="STORE")
    export.add_argument("session", metavar="SESSION", help="the session (with --all: the target directory)")
    export.add_argument(
        "file",
        metavar="FILE",
        nargs="?",
        help="the file to write, or a directory (an existing one, or DIR/ to create it)",
    )
    export.add_argument("--at", type=_non_negative, metavar="VERSION", help="the session as it was at this version")
    export.add_argument("--all", action="store_true", help="every session, into a directory")
    export.add_argument(
        "--html", action="store_true", help="one self-contained HTML page of the session (needs the web extra)"
    )
    export.set_defaults(run=cmd_export)

    serve = sub.add_parser(
        "serve", help="a read-only web viewer of the store on 127.0.0.1 (needs the web extra; docs/viewer.md)"
    )
    serve.add_argument("store", metavar="STORE")
    serve.add_argument("--port", type=_port, default=8765, metavar="N", help="port (8765; 0: any free port)")
    serve.add_argument("--host", default="127.0.0.1", metavar="ADDRESS", help="address to listen on (127.0.0.1)")
    serve.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a non-loopback --host; every request must then carry the access token",
    )
    serve.add_argument(
        "--token",
        metavar="TOKEN",
        help="the access token (default: $SESSIONDB_VIEWER_TOKEN, or a new one printed with the URL when remote)",
    )
    serve.set_defaults(run=cmd_serve)

    imp = sub.add_parser(
        "import",
        help="import claw-code session files or Claude Code transcripts (files or trees; creates STORE if new)",
    )
    imp.add_argument("store", metavar="STORE")
    imp.add_argument("files", metavar="FILE", nargs="+")
    imp.add_argument("--skip-bad-lines", action="store_true", help="leave malformed JSONL lines out, and list them")
    imp.add_argument("--skip-existing", action="store_true", help="leave sessions already in the store alone")
    imp.add_argument("--json", action="store_true")
    imp.set_defaults(run=cmd_import)
    return parser


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


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse ``argv``; for ``tag``, arguments like ``-urgent`` are removals, not unknown options."""
    _Parser.argv = list(argv) if argv is not None else sys.argv[1:]
    args, extras = parser.parse_known_args(argv)
    if extras:
        if getattr(args, "run", None) is cmd_tag and all(_is_removal(extra) for extra in extras):
            args.removals = [extra[1:] for extra in extras]
        else:
            parser.parse_args(argv)  # reports the unrecognized arguments and exits 2
    return args


def _is_removal(text: str) -> bool:
    return len(text) > 1 and text[0] == "-" and text[1] != "-"


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run the command line; return the exit status (0 ok, 1 error, 2 usage, 130 interrupted)."""
    stdout = stdout if stdout is not None else sys.stdout
    stderr = stderr if stderr is not None else sys.stderr
    parser = build_parser()
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            args = _parse(parser, argv)
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
