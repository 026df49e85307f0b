"""Session ids: generating them the way upstream does, and refusing unsafe ones."""

from __future__ import annotations

import itertools
import threading
import time

from ._errors import InvalidSessionIdError

# A session id becomes a file name on export: "<id>.jsonl", written through a temp file
# "<id>.jsonl.tmp-<13-digit millis>-<6-digit counter>". NAME_MAX is 255 bytes on Linux and
# macOS file systems, so the id may take what those suffixes leave: 255 - 6 - 25 = 224
# bytes of UTF-8. Checked on every backend, so every stored session can be exported.
NAME_MAX_BYTES = 255
EXPORT_SUFFIX = ".jsonl"
TEMP_SUFFIX_BYTES = len(".tmp-") + 13 + 1 + 6
MAX_SESSION_ID_BYTES = NAME_MAX_BYTES - len(EXPORT_SUFFIX) - TEMP_SUFFIX_BYTES
# Before the limit counted bytes it was 256 characters: logs written then may hold such ids,
# and they must keep opening (exporting one may then fail, and says so).
STORED_MAX_SESSION_ID_CHARACTERS = 256
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


def validate_session_id(session_id: object, *, stored: bool = False) -> str:
    """Return ``session_id`` if it is safe to store and to use as a file name on export.

    ``stored=True`` checks an id read from a log: safe as a path component, and within
    the limit of the version that may have written it (256 characters).
    """
    if not isinstance(session_id, str):
        raise InvalidSessionIdError(f"a session id must be a str, got {type(session_id).__name__}")
    if not session_id:
        raise InvalidSessionIdError("a session id must not be empty")
    if stored:
        if len(session_id) > STORED_MAX_SESSION_ID_CHARACTERS:
            raise InvalidSessionIdError(
                f"session id {session_id[:40]!r}... is {len(session_id)} characters long; "
                f"no version of sessiondb stored ids over {STORED_MAX_SESSION_ID_CHARACTERS}"
            )
    elif len(session_id) > MAX_SESSION_ID_BYTES // 4:  # shorter ids cannot exceed the limit: no need to encode
        size = len(session_id.encode("utf-8", "surrogatepass"))
        if size > MAX_SESSION_ID_BYTES:
            raise InvalidSessionIdError(
                f"session id {session_id[:40]!r}... is {size} bytes long in UTF-8; the limit is "
                f"{MAX_SESSION_ID_BYTES} bytes, so that '<id>.jsonl' (and its temp file) fits a file name"
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
