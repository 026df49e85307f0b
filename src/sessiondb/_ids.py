"""Session ids: generating them the way upstream does, and refusing unsafe ones."""

from __future__ import annotations

import itertools
import threading
import time

from ._errors import InvalidSessionIdError

MAX_SESSION_ID_LENGTH = 256
_counter = itertools.count()
_clock_lock = threading.Lock()
_last_ms = 0


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _monotonic_ms() -> int:
    """Wall-clock milliseconds, strictly increasing within the process (as upstream keeps them)."""
    global _last_ms
    with _clock_lock:
        current = max(now_ms(), _last_ms + 1)
        _last_ms = current
        return current


def generate_session_id() -> str:
    """An id of upstream's form ``session-<millis>-<counter>``."""
    return f"session-{_monotonic_ms()}-{next(_counter)}"


def validate_session_id(session_id: object) -> str:
    """Return ``session_id`` if it is safe to store and to use as a file name on export."""
    if not isinstance(session_id, str):
        raise InvalidSessionIdError(f"a session id must be a str, got {type(session_id).__name__}")
    if not session_id:
        raise InvalidSessionIdError("a session id must not be empty")
    if len(session_id) > MAX_SESSION_ID_LENGTH:
        raise InvalidSessionIdError(
            f"session id {session_id[:40]!r}... is {len(session_id)} characters long; "
            f"the limit is {MAX_SESSION_ID_LENGTH}"
        )
    if session_id in (".", ".."):
        raise InvalidSessionIdError(f"session id {session_id!r} is not allowed")
    for character in session_id:
        code = ord(character)
        if (
            character in "/\\"
            or code < 0x20
            or code == 0x7F
            or 0xD800 <= code <= 0xDFFF
            or code in (0x2028, 0x2029, 0x85)
        ):
            raise InvalidSessionIdError(
                f"session id {session_id!r} contains {character!r}; path separators, "
                "control and line-break characters are not allowed"
            )
    return session_id
