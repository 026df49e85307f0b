"""The commands that look at a store: ls, show, tail, stats."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

import anyio
import msgspec

from .._backends.local import LocalBackend
from .._backends.local._checkpoint import CHECKPOINT_NAME
from .._backends.local._snapshot_files import SNAPSHOT_PREFIX, SNAPSHOT_SUFFIX
from .._events import RecordedEvent, SessionDeleted
from .._labels import MAX_TITLE_CHARS
from .._store import open_store
from .._threads import run_to_completion
from ._context import (
    CommandError,
    _existing_store,
    _is_url,
    _Output,
    _reading,
    _session_info,
    shown_store,
)
from ._render import (
    SESSION_HEADER,
    event_json,
    event_line,
    format_bytes,
    format_count,
    format_time,
    info_json,
    iso_time,
    label_columns,
    render_session,
    session_rows,
    table,
)
from ._tail import LogFollower


async def cmd_ls(args: argparse.Namespace, out: _Output) -> int:
    _check_filters(args)
    filters = {
        "scope": args.scope,
        "tag": args.tag,
        "title": args.title,
        "pinned": args.pinned,
        "order": args.sort,
        "descending": not args.asc,
    }
    async with _reading(args.store) as store:
        if args.limit is None:
            sessions = await store.list_sessions(**filters)
        else:  # one page from the index, not the whole listing (the parser keeps --limit in 1..MAX_PAGE)
            sessions = (await store.page_sessions(**filters, limit=args.limit)).sessions
    if args.json:
        out.json([info_json(info) for info in sessions])
    elif not sessions:
        filtered = any(filters[name] is not None for name in ("scope", "tag", "title", "pinned"))
        out.note(f"no sessions {'match' if filtered else 'in'} {shown_store(args.store)}")
    else:
        rows, header = label_columns(sessions, session_rows(sessions), SESSION_HEADER)
        out.lines(table(rows, header, out.style, right={2, 3}))
    return 0


def _check_filters(args: argparse.Namespace) -> None:
    """The filter values the library would refuse with its own advice ("pass None"), said for the command line."""
    for option, value in (("--scope", args.scope), ("--tag", args.tag), ("--title", args.title)):
        if value is not None and not value.strip():
            raise CommandError(f"{option} needs a value that is not empty or blank; leave {option} out not to filter")
    if args.title is not None and len(args.title) > MAX_TITLE_CHARS:
        raise CommandError(
            f"--title TEXT is at most {MAX_TITLE_CHARS} characters (a title is no longer); got {len(args.title)}"
        )


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
        last_segment = backend.segments.active
        follower = LogFollower(path, last_segment.number, last_segment.size, backend.last_position + 1)
    for event in recent:
        if emit(event):
            return 0
    out.stdout.flush()
    while True:
        events = await run_to_completion(follower.poll)
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
    async with open_store(target, read_only=True) as store:
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
