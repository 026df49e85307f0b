"""Files sessiondb writes outside a store (exports): private, durable, atomic.

An export holds what the agent saw, as the store's own files do, so it gets their
default mode: 0600 (directories created for it 0700). Written to a temp file in the
same directory, fsynced, renamed over the target, the directory fsynced: a reader sees
the old file or the new one, never a part. The temp name is new each time and created
with ``O_EXCL``, so a leftover or a link planted under that name is never written through.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

from ._ids import now_ms

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIRECTORY_MODE = 0o700
_temp_counter = itertools.count()


def temp_name(name: str) -> str:
    """``<name>.tmp-<13-digit millis>-<6-digit counter>``: fixed width (``_ids.TEMP_SUFFIX_BYTES``), so the
    longest valid session id's export still fits NAME_MAX."""
    return f"{name}.tmp-{now_ms():013d}-{next(_temp_counter) % 1_000_000:06d}"


def write_private_file(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` with mode 0600: temp file, fsync, rename over, fsync the directory."""
    target = Path(path)
    directory = target.parent
    temp = directory / temp_name(target.name)
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, PRIVATE_FILE_MODE)
    except PermissionError as exc:
        raise _refused(exc, directory, f"cannot write {target} there") from None
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_directory(directory)


def make_private_directories(directory: str | os.PathLike[str]) -> None:
    """Create ``directory`` and any missing parents with mode 0700, each made durable in its parent."""
    missing: list[Path] = []
    current = Path(directory)
    while not current.exists():
        missing.append(current)
        current = current.parent
    for created in reversed(missing):
        try:
            created.mkdir(mode=PRIVATE_DIRECTORY_MODE, exist_ok=True)
        except PermissionError as exc:
            raise _refused(exc, created.parent, f"cannot create directory {created} in it") from None
        fsync_directory(created.parent)


def _refused(exc: PermissionError, directory: Path, what: str) -> PermissionError:
    """A refusal naming the directory that refused, not the entry (an internal temp file) it refused to make."""
    return PermissionError(exc.errno, f"{exc.strerror} ({what})", str(directory))


def fsync_directory(directory: str | os.PathLike[str]) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
