"""Telling a store whose files were removed from under a process apart from one it fell behind.

Both look the same to the follower: the segment it knows as newest is gone. Retention
never removes the newest segment, so when it is gone and no later segment exists (or
the directory itself is gone), something other than sessiondb removed the store's
files: saying "retention removed it" would send the user after the wrong cause.
"""

from __future__ import annotations

import os

from ..._errors import StoreBrokenError
from .._fs import FileSystem
from ._format import segment_name, segment_number


def removed_store_error(fs: FileSystem, directory: str, newest: int) -> StoreBrokenError | None:
    """The error for a store whose directory or files were removed, or None when a later segment exists."""
    if not fs.isdir(directory):
        return StoreBrokenError(
            f"the store directory {directory} was removed while this process had the store open; it refuses "
            "appends from now on: close the store (what was removed is gone unless restored from a backup)"
        )
    try:
        names = fs.listdir(directory)
    except OSError:
        names = []
    if any((segment_number(name) or 0) > newest for name in names):
        return None  # other processes rolled past it: this process fell behind retention
    return StoreBrokenError(
        f"the files of store {directory} were removed while this process had it open (its newest segment "
        f"{os.path.join(directory, segment_name(newest))} is gone and no later one exists; retention never removes "
        "the newest); it refuses appends from now on: close the store, and restore the files from a backup "
        "before reopening it"
    )
