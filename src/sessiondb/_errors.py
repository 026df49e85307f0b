"""The error tree: every error sessiondb raises derives from ``SessionDBError``.

::

    SessionDBError
    ├── InvalidInputError          bad arguments or an invalid event; nothing was written
    │   ├── InvalidSessionIdError  a session id that is empty, too long or unsafe
    │   ├── EventTooLargeError     an encoded event above the configured limit
    │   └── ImportFormatError      an imported file (claw-code session) is malformed
    ├── ConflictError              expected_version did not match the session's version
    ├── SessionNotFoundError       no such session (or it was deleted)
    ├── SessionExistsError         create_session with an id already in use
    │   └── SessionDeletedError    the id belonged to a deleted session (also a SessionNotFoundError)
    ├── HistoryUnavailableError    load(at_version=...) of history that retention removed
    ├── StoreClosedError           the store was closed
    │   ├── StoreForkedError       used in a process forked after the store was opened
    │   └── StoreNotStartedError   opened but not started (also a StoreLoopError)
    ├── StoreLoopError             the store's event loop cannot take a call from another thread or loop
    ├── StoreBrokenError           a write or fsync failed; reopen the store
    │   └── DiskFullError          the failure was ENOSPC
    ├── StoreLockedError           another process owns the store directory
    ├── StorePermissionError       this user may not open the store's files so (also a PermissionError)
    ├── ResourceExhaustedError     the system refused a resource (open files, memory)
    ├── CorruptionError            a file failed its checksum or could not be decoded
    ├── SchemaVersionError         the store was written by a newer sessiondb
    ├── BackendUnavailableError    a remote backend is unreachable; safe to retry
    └── ExportError                a bulk export left sessions out; lists each failure

Every message says what happened, to which session or file, and what to do.
"""

from __future__ import annotations

from typing import Any


class SessionDBError(Exception):
    """Root of every error sessiondb raises."""


class InvalidInputError(SessionDBError, ValueError):
    """An argument or event was rejected before anything was written."""


class InvalidSessionIdError(InvalidInputError):
    """A session id that cannot be stored safely."""


class EventTooLargeError(InvalidInputError):
    """An encoded event is larger than the store's ``max_event_bytes``."""


class ImportFormatError(InvalidInputError):
    """A file being imported is malformed; names the file and, for JSONL, the line."""

    def __init__(self, path: str, line: int | None, detail: str) -> None:
        self.path = path
        self.line = line
        self.detail = detail
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"cannot import {where}: {detail}")


class ConflictError(SessionDBError):
    """An append's ``expected_version`` did not match the session's version.

    Only that append failed; reload the session, decide again and retry.
    """

    def __init__(self, session_id: str, expected_version: int, actual_version: int) -> None:
        self.session_id = session_id
        self.expected_version = expected_version
        self.actual_version = actual_version
        super().__init__(
            f"session {session_id!r} is at version {actual_version}, "
            f"but the append expected version {expected_version}; "
            "reload the session and retry with its current version"
        )


class SessionNotFoundError(SessionDBError, KeyError):
    """No session with this id exists in the store (or it was deleted)."""

    def __init__(self, session_id: str, detail: str = "") -> None:
        self.session_id = session_id
        message = f"no session {session_id!r} in this store"
        if detail:
            message += f" ({detail})"
        super().__init__(message + "; create it first or check the id")

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class SessionExistsError(SessionDBError):
    """``create_session`` was given an id that is already in use."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        super().__init__(
            f"session {session_id!r} already exists; choose another id or omit session_id to have one generated"
        )


class SessionDeletedError(SessionNotFoundError, SessionExistsError):
    """The id belongs to a deleted session: it cannot be read, appended to, or created again.

    The rule on every backend and adapter: a deleted session's id is never reused, so
    its versions and event ids stay unique in the log and no reader can confuse the old
    history with a new one. Create a session with another id. It is both a
    ``SessionNotFoundError`` (for reads and appends) and a ``SessionExistsError``
    (for ``create_session``), so existing handlers of either still catch it.
    ``version`` and ``deleted_at_ms``: the deletion's version and commit time, where the
    store knows them (None otherwise), so a reader can say when the session went.
    """

    def __init__(self, session_id: str, *, version: int | None = None, deleted_at_ms: int | None = None) -> None:
        self.session_id = session_id
        self.version = version
        self.deleted_at_ms = deleted_at_ms
        SessionDBError.__init__(
            self,
            f"session {session_id!r} was deleted{f' at v{version}' if version is not None else ''}; "
            "a deleted session's id is not reused, "
            "so create a new session with another id",
        )

    def __str__(self) -> str:
        return str(self.args[0])


class HistoryUnavailableError(SessionDBError):
    """The requested history was removed by retention.

    ``session_id`` and ``first_available`` (the oldest version of it still stored) say
    where, when the backend knows.
    """

    def __init__(self, message: str, *, session_id: str | None = None, first_available: int | None = None) -> None:
        super().__init__(message)
        self.session_id = session_id
        self.first_available = first_available


class StoreClosedError(SessionDBError):
    """The store is closed; open it again to use it."""


class StoreForkedError(StoreClosedError):
    """The store was opened before this process was forked from its opener; open it again in this process."""


class StoreLoopError(SessionDBError):
    """A call from another thread or event loop cannot reach the store's own loop (closed, stopped or blocked).

    Raised at once, or after the loop failed to take the call in time; the message
    says whether the call may have taken effect.
    """


class StoreNotStartedError(StoreClosedError, StoreLoopError):
    """The store was opened with ``open_store`` but not started: ``async with store`` or ``await store.start()``.

    Nothing was done. Both a ``StoreClosedError`` (the store cannot serve the call) and a
    ``StoreLoopError`` (it has no event loop yet, whichever thread calls), so handlers of
    either still catch it.
    """


class StoreBrokenError(SessionDBError):
    """A write or fsync failed; the store refuses writes until it is reopened.

    After a failed fsync the kernel may have dropped the dirty pages, so the
    store never retries: reopening recovers exactly what reached the disk.
    """


class DiskFullError(StoreBrokenError):
    """The disk holding the store is full (ENOSPC)."""


def refused_because_broken(cause: BaseException) -> StoreBrokenError:
    """The error for an operation refused because the store broke with ``cause``.

    The same class as the failure (a ``DiskFullError`` stays one, so callers can
    tell "free space" from "reopen"), a fresh instance with the same message.
    """
    kind = type(cause) if isinstance(cause, StoreBrokenError) else StoreBrokenError
    return kind(str(cause))


class StoreLockedError(SessionDBError):
    """Another process has the store directory open for writing."""


class StorePermissionError(SessionDBError, PermissionError):
    """The system refused this user access to a store's file or directory (EACCES, EPERM, EROFS).

    Nothing was opened or changed. For a store another user owns, or on a read-only
    file system: ``open_store(path, read_only=True)`` reads it (if its modes let this
    user read); writing needs its owner, or modes that let this user write. ``filename``
    is the path the system refused.
    """

    def __init__(self, message: str, filename: str) -> None:
        super().__init__(message)
        self.filename = filename

    def __str__(self) -> str:  # OSError's would prefix an errno
        return str(self.args[0])


class ResourceExhaustedError(SessionDBError):
    """The system refused a resource (EMFILE, ENFILE, ENOMEM); nothing is damaged.

    Raise the limit (``ulimit -n``) or release other resources, then retry.
    """


class CorruptionError(SessionDBError):
    """A file in the store failed its checksum or could not be decoded."""

    def __init__(self, path: str, offset: int, detail: str) -> None:
        self.path = path
        self.offset = offset
        self.detail = detail
        super().__init__(
            f"corrupt data in {path} at byte offset {offset}: {detail}; "
            "run `sessiondb verify` to see the damage and `sessiondb repair` "
            "to keep everything before it"
        )


class SchemaVersionError(SessionDBError):
    """The store's format is newer than this version of sessiondb understands."""


class BackendUnavailableError(SessionDBError):
    """A remote backend could not be reached; the operation may be retried."""


class ExportError(SessionDBError):
    """A bulk export finished with some sessions not exported.

    ``failures`` lists ``(session_id, exception)`` for each one that failed;
    ``exported`` holds the paths of the files written (every other session).
    """

    def __init__(self, exported: list[Any], failures: list[tuple[str, Exception]], attempted: int) -> None:
        self.exported = exported
        self.failures = failures
        lines = [f"{len(failures)} of {attempted} session(s) were not exported ({len(exported)} were):"]
        lines += [f"  {session_id!r}: {error}" for session_id, error in failures]
        super().__init__("\n".join(lines))
