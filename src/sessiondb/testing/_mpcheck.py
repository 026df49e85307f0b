"""The check of logical appends named by tokens: each stored at most once, whole, and present once acknowledged.

The multi-process workload (``_mpwork``) marks every event of an append with
``"<session>|<version> <token>"``; the token names the logical append and
stays the same over its retries (after a ``ConflictError``, or with the same
event ids after a kill). ``check_store`` already checks each event's
``<session>|<version>``; this adds what only the token shows: an append
recovered twice (an event-id retry stored again), split or partial, one
nobody tried, or an acknowledged one missing or at another version.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .._events import RecordedEvent
from ._ledger import Ledger, event_marker

TOKEN_PREFIX = "@"


def token_of(text: str | None) -> str | None:
    """The token in a marker text (``None`` for a marker without one)."""
    if text is None:
        return None
    parts = text.split(" ", 2)
    if len(parts) > 1 and parts[1].startswith(TOKEN_PREFIX):
        return parts[1].split("\n", 1)[0]
    return None


def check_tokens(ledger: Ledger, window: Mapping[str, Sequence[RecordedEvent]], infos: Mapping[str, Any]) -> list[str]:
    """Violations of the token invariants over ``window`` (every readable event, by session)."""
    problems: list[str] = []
    found: dict[str, list[tuple[str, int]]] = {}
    first_kept: dict[str, int] = {}
    for session_id, events in window.items():
        for recorded in events:
            if recorded.session_id != session_id:
                continue
            first_kept.setdefault(session_id, recorded.version)
            token = token_of(event_marker(recorded.event))
            if token is not None:
                found.setdefault(token, []).append((session_id, recorded.version))
    for token, places in found.items():
        tries = ledger.token_tries.get(token)
        if tries is None:
            problems.append(f"append {token}: recovered at {places[:3]} but never attempted")
            continue
        sessions = {session_id for session_id, _ in places}
        versions = sorted(version for _, version in places)
        session_id = places[0][0]
        run = (session_id, versions[0], len(versions))
        if len(sessions) > 1 or versions != list(range(versions[0], versions[0] + len(versions))):
            problems.append(f"append {token}: stored more than once or split: {sorted(places)[:6]}")
            continue
        if run not in tries:
            sizes = sorted({count for _, _, count in tries})
            what = (
                "stored more than once" if any(len(versions) == 2 * size for size in sizes) else "recovered partially"
            )
            problems.append(
                f"append {token}: {what}? {len(versions)} event(s) at {session_id} v{versions[0]}; "
                f"tried {sorted(tries)}"
            )
            continue
        acked = ledger.token_acks.get(token)
        if acked is not None and acked != (session_id, versions[-1]):
            problems.append(
                f"append {token}: acknowledged as {acked}, recovered ending at {session_id} v{versions[-1]}"
            )
    for token, (session_id, last) in ledger.token_acks.items():
        if token in found:
            continue
        if session_id in infos and last < first_kept.get(session_id, infos[session_id].version + 1):
            continue  # retention removed the segments that held it (snapshots cover them)
        problems.append(f"append {token}: acknowledged at {session_id} v{last} but not recovered")
    return problems
