"""The invariant checker of the crash tests: reopen a store and compare it with a ``Ledger``.

It verifies: acknowledged => recovered (with its version and content);
recovered => attempted; versions gapless from 1; multi-event appends whole or
absent; forks point where they were made; positions gapless store-wide (or
strictly increasing, for PostgreSQL); ``load`` replays every session; logical
appends named by tokens stored at most once and whole (``_mpcheck``); the store
accepts appends again.
"""

from __future__ import annotations

import os
from typing import Any

from .._errors import HistoryUnavailableError, SessionDBError
from .._events import Message, RecordedEvent, SessionStarted
from .._projection import replay_session
from ._ledger import Ledger, event_marker, marker
from ._mpcheck import check_tokens


async def check_store(
    path: str | os.PathLike[str],
    ledger: Ledger,
    *,
    probe: bool = True,
    full: bool = True,
    stats: dict[str, int] | None = None,
    gapless_positions: bool = True,
    **options: Any,
) -> list[str]:
    """Reopen the store at ``path`` and return every invariant violation found (empty: all good).

    On success the ledger's bases move to the recovered heads, so a later
    check (after more work and another crash) verifies only what is new.
    With ``probe`` one more event is appended to prove the store accepts writes.
    ``gapless_positions=False`` (PostgreSQL, whose sequence skips the positions
    of rolled-back batches) checks store positions strictly increasing instead
    of gapless. A full check also checks every logical append named by a token
    (``check_tokens``): stored at most once, whole, acknowledged ones present.
    """
    from .._store import open_store

    problems: list[str] = []
    window: dict[str, list[RecordedEvent]] | None = None
    replays = 0
    async with open_store(path, **options) as store:
        infos = {info.session_id: info for info in await store.list_sessions()}
        if stats is not None:
            recovery = getattr(store.backend, "recovery", {})
            stats["torn_tails_cut"] = stats.get("torn_tails_cut", 0) + len(recovery.get("truncated_tails", ()))
            stats["temp_files_removed"] = stats.get("temp_files_removed", 0) + len(
                recovery.get("removed_temp_files", ())
            )
            stats["events"] = store.backend.last_position
            stats["sessions"] = len(infos)
            stats["segments"] = store.statistics().get("segments", 0)
        for session_id, entry in ledger.sessions.items():
            info = infos.get(session_id)
            if info is None:
                if entry.created_acked:
                    problems.append(f"session {session_id}: acknowledged but missing after recovery")
                continue
            head = info.version
            if head < entry.acked:
                problems.append(f"session {session_id}: recovered version {head} < acknowledged {entry.acked}")
            if head != entry.base and head not in entry.boundaries:
                problems.append(
                    f"session {session_id}: recovered version {head} is not the end of any attempted append "
                    f"(a batch was recovered partially?)"
                )
        for session_id, info in infos.items():
            found_entry = ledger.sessions.get(session_id)
            if found_entry is None:
                problems.append(f"session {session_id}: recovered but never attempted")
                continue
            entry = found_entry
            if entry.fork is not None:
                fork = info.fork
                if fork is None or (fork.parent_session_id, fork.parent_version) != entry.fork:
                    problems.append(f"session {session_id}: fork {fork} recovered, {entry.fork} attempted")
            own_from = entry.fork[1] if entry.fork is not None else 0
            after = own_from if full else max(entry.base, own_from)
            try:
                events = [r async for r in store.read(session_id, after=after)]
            except HistoryUnavailableError:
                # Retention removed the start of this history (snapshots cover it): check what is kept.
                if window is None:
                    window = await _available_window(store, problems, gapless_positions)
                events = [r for r in window.get(session_id, []) if r.version > after]
                after = events[0].version - 1 if events else info.version
                if stats is not None:
                    stats["histories_cut_by_retention"] = stats.get("histories_cut_by_retention", 0) + 1
            expected_version = after
            for recorded in events:
                if recorded.session_id != session_id:
                    continue
                expected_version += 1
                if recorded.version != expected_version:
                    problems.append(
                        f"session {session_id}: version {recorded.version} where {expected_version} was due"
                    )
                    break
                if isinstance(recorded.event, SessionStarted):
                    if recorded.version != own_from + 1:
                        problems.append(f"session {session_id}: session_started at version {recorded.version}")
                    continue
                found = event_marker(recorded.event)
                wanted = marker(session_id, recorded.version)
                if found is None or found.split(" ", 1)[0].split("\n", 1)[0] != wanted:
                    problems.append(
                        f"session {session_id} v{recorded.version}: content {found!r:.60}, expected {wanted}"
                    )
                    break
            if expected_version != info.version:
                problems.append(f"session {session_id}: read ended at {expected_version}, info says {info.version}")
            if full:
                try:
                    session = await store.load(session_id)
                except SessionDBError as exc:
                    problems.append(f"session {session_id}: load() fails: {exc}")
                    continue
                if session.version != info.version:
                    problems.append(f"session {session_id}: load() at version {session.version}, info {info.version}")
                if replays < 40:
                    # Snapshot + tail (what load may use) must equal a replay of the full history.
                    try:
                        history = [r async for r in store.read(session_id)]
                    except HistoryUnavailableError:
                        history = None
                    if history is not None:
                        replays += 1
                        if replay_session(session_id, history) != session:
                            problems.append(f"session {session_id}: load() differs from a full replay")
        if full:
            if window is None:
                window = await _available_window(store, problems, gapless_positions)
            problems += check_tokens(ledger, window, infos)
            if stats is not None:
                stats["replays_compared"] = stats.get("replays_compared", 0) + replays
        if not problems:
            for session_id, info in infos.items():
                entry = ledger.sessions[session_id]
                entry.base = info.version
                entry.acked = info.version
                entry.boundaries.clear()
                entry.created_acked = True
            if probe and infos:
                session_id = sorted(infos)[0]
                head = infos[session_id].version
                version = await store.append(
                    session_id, Message.user(marker(session_id, head + 1)), expected_version=head
                )
                if version != head + 1:
                    problems.append(f"probe append to {session_id} returned {version}, expected {head + 1}")
                ledger.sessions[session_id].base = ledger.sessions[session_id].acked = version
    return problems


async def _available_window(store: Any, problems: list[str], gapless: bool = True) -> dict[str, list[RecordedEvent]]:
    """Every event still in the log (retention may have removed the oldest), by session; positions checked."""
    first = getattr(store.backend, "first_available_position", lambda: 1)()
    position = first - 1
    by_session: dict[str, list[RecordedEvent]] = {}
    while True:
        page = await store.read_all(after=position, limit=5000)
        if not page:
            break
        for recorded in page:
            if (recorded.position != position + 1) if gapless else (recorded.position <= position):
                problems.append(f"store positions jump from {position} to {recorded.position}")
                return by_session
            position = recorded.position
            by_session.setdefault(recorded.session_id, []).append(recorded)
    if position != store.backend.last_position:
        problems.append(f"read_all ended at position {position}, the store's last is {store.backend.last_position}")
    return by_session
