"""What every command shares: resolving the store argument, opening it, and writing output."""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import AsyncIterator, Sequence
from typing import Any, TextIO

import msgspec

from .._backends.local._format import segment_number
from .._backends.postgres import redact_dsn
from .._errors import SessionDBError, SessionNotFoundError, StorePermissionError
from .._store import Store, open_store
from ._render import (
    Style,
)

PROG = "sessiondb"
# Seconds between looks at the files when following a store another process writes.
DEFAULT_POLL_INTERVAL = 0.2


class CommandError(Exception):
    """A problem to report as one line on stderr, with exit status 1."""


# ---------------------------------------------------------------- opening stores


def _describe(exc: BaseException) -> str:
    """An error as one line for the terminal (an OSError with its file name)."""
    if isinstance(exc, OSError) and not isinstance(exc, SessionDBError):
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror or exc}"
    text = str(exc)
    return text if text else type(exc).__name__


def _is_url(target: str) -> bool:
    return target.startswith(("postgresql://", "postgres://"))


def shown_store(target: str) -> str:
    """The store argument as every message, banner and suggested command shows it: a URL's password hidden."""
    return redact_dsn(target) if _is_url(target) else target


def _existing_store(target: str) -> str:
    """The store directory (or URL) a read command may open, or a clear error."""
    if _is_url(target):
        return target
    if target == ":memory:":
        raise CommandError("':memory:' is a store inside one process; give the path of a store directory")
    path = os.path.abspath(os.path.expanduser(target))
    try:
        os.stat(path)
        if os.path.isdir(path):
            os.listdir(path)
    except PermissionError as exc:
        raise CommandError(
            f"cannot read store {target} as this user: {exc.filename} refused it (permission denied); run as the "
            "store's owner, or have its modes widened for a shared group"
        ) from None
    except OSError:
        pass
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
        path = os.path.abspath(os.path.expanduser(target))
        if not os.path.exists(path):
            return path
        if os.path.isdir(path) and not os.listdir(path):
            return path
    return _existing_store(target)


@contextlib.asynccontextmanager
async def _reading(target: str) -> AsyncIterator[Store]:
    """A store opened read-only: no lock, nothing changed on disk, works beside a writing process."""
    path = _existing_store(target)
    # A URL too: a read-only open of a PostgreSQL schema that does not exist fails instead of creating it.
    async with open_store(path, read_only=True) as store:
        yield store


@contextlib.asynccontextmanager
async def _writing(target: str, *, create: bool = False) -> AsyncIterator[Store]:
    store = open_store(_writable_store(target, create=create))
    try:
        await store.start()
    except StorePermissionError as exc:
        raise CommandError(
            f"cannot change store {shown_store(target)} as this user: {exc.filename} refused it (permission "
            "denied); the read commands (ls, show, search, export) still work, or run as the store's owner"
        ) from None
    try:
        yield store
    finally:
        await store.aclose()


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


async def _session_info(store: Store, args: argparse.Namespace) -> Any:
    try:
        return await store.session_info(args.session)
    except SessionNotFoundError as exc:
        detail = " (it was deleted)" if "deleted" in str(exc) else ""
        shown = shown_store(args.store)
        raise CommandError(
            f"no session {args.session!r} in store {shown}{detail}; `sessiondb ls {shown}` lists them"
        ) from None
