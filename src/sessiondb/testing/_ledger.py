"""The crash workloads' ledger: what was attempted and acknowledged, and the markers events carry.

Children print one line per fact (``T`` attempt, ``A`` acknowledgement; ``TK``/``AK``
for the logical appends of the multi-process workload); the parent feeds the
lines it received completely into a ``Ledger``, which ``check_store`` then
verifies against the recovered store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .._events import Compacted, Message, PromptRecorded, Text, ToolResult


@dataclass
class SessionLedger:
    """What one session was asked to do and what was acknowledged."""

    base: int = 0  # verified head from an earlier check (or a fork's parent version)
    acked: int = 0  # highest acknowledged version
    boundaries: set[int] = field(default_factory=set)  # last versions of attempted appends
    created_acked: bool = False
    fork: tuple[str, int] | None = None  # (parent, at_version) when it is a fork


@dataclass
class Ledger:
    sessions: dict[str, SessionLedger] = field(default_factory=dict)
    acks: int = 0
    attempts: int = 0
    # Logical appends named by a token (the multi-process workload, ``_mpwork``): every try of
    # a token as (session, first version, event count), and the version its acknowledgement returned.
    token_tries: dict[str, set[tuple[str, int, int]]] = field(default_factory=dict)
    token_acks: dict[str, tuple[str, int]] = field(default_factory=dict)

    def session(self, session_id: str) -> SessionLedger:
        entry = self.sessions.get(session_id)
        if entry is None:
            entry = self.sessions[session_id] = SessionLedger()
        return entry

    def feed(self, line: str) -> None:
        """Apply one line of a child's output (``T`` attempt, ``A`` acknowledgement)."""
        parts = line.split()
        if not parts:
            return
        if parts[0] == "T":
            _, session_id, kind, last = parts[:4]
            entry = self.session(session_id)
            entry.boundaries.add(int(last))
            self.attempts += 1
            if kind == "fork":
                entry.fork = (parts[4], int(parts[5]))
                entry.base = int(parts[5])
        elif parts[0] == "A":
            _, session_id, last = parts
            entry = self.session(session_id)
            entry.acked = max(entry.acked, int(last))
            entry.created_acked = True
            self.acks += 1
        elif parts[0] == "TK":  # TK token session first count [ids]
            self.token_tries.setdefault(parts[1], set()).add((parts[2], int(parts[3]), int(parts[4])))
        elif parts[0] == "AK":  # AK token session last
            self.token_acks[parts[1]] = (parts[2], int(parts[3]))


def marker(session_id: str, version: int) -> str:
    return f"{session_id}|{version}"


def event_marker(event: Any) -> str | None:
    """The marker an event carries (None for events the workload does not mark)."""
    if isinstance(event, Message):
        for block in event.blocks:
            if isinstance(block, Text):
                return block.text
            if isinstance(block, ToolResult):
                return block.output
        return None
    if isinstance(event, PromptRecorded):
        return event.text
    if isinstance(event, Compacted):
        return event.summary
    return None
