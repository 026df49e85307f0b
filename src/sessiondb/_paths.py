"""Paths as the user means them: ``~`` expanded, a trailing separator meaning a directory.

Every public function that takes a path (``open_store``, ``verify_store``, the claw
import and export, the CLI) passes it through ``user_path`` first, so a ``str``
and a ``pathlib.Path`` naming one place behave the same.
"""

from __future__ import annotations

import os

from ._errors import InvalidInputError


def user_path(value: object, *, what: str = "path") -> str:
    """``value`` (a ``str`` or ``os.PathLike``) as a ``str`` with ``~`` expanded.

    Raises ``InvalidInputError`` for an empty path, bytes, or anything that is not a path.
    """
    try:
        text: str | bytes = os.fspath(value)  # type: ignore[call-overload]
    except TypeError:
        raise InvalidInputError(f"{what} must be a str or a pathlib.Path, got {type(value).__name__}") from None
    if isinstance(text, bytes):
        raise InvalidInputError(f"{what} must be a str or a pathlib.Path, got bytes {text!r}; decode it first")
    if not text:
        raise InvalidInputError(f"{what} is empty")
    return os.path.expanduser(text)


def names_directory(value: object) -> bool:
    """True when ``value`` is a ``str`` ending in a path separator (``"out/"``): the user means a directory.

    (A ``pathlib.Path`` drops a trailing separator, so only a ``str`` can say this.)
    """
    if not isinstance(value, str):
        return False
    return value.endswith(os.sep) or (os.altsep is not None and value.endswith(os.altsep))


def not_a_directory(path: str, role: str = "a store directory") -> str:
    """Why ``path`` cannot be ``role``: it is a file, or one of its parents is."""
    if os.path.lexists(path) and not os.path.isdir(path):
        return f"{path} is a file, not {role}; give the path of a directory"
    parent = os.path.dirname(path)
    while parent and parent != os.path.dirname(parent):
        if os.path.lexists(parent) and not os.path.isdir(parent):
            return f"{path} cannot be {role}: {parent} is a file, not a directory"
        parent = os.path.dirname(parent)
    return f"{path} cannot be {role}: it is not a directory"


def refusing_directory(path: str) -> str:
    """The path a refused ``mkdir``/``open(O_CREAT)`` of ``path`` was refused by: ``path`` if it exists, else the
    nearest parent that does (the system names the new entry, but it is its directory that refused it)."""
    current = path
    while not os.path.lexists(current):
        parent = os.path.dirname(current)
        if not parent or parent == current:
            break
        current = parent
    return current


def missing_directories(path: str) -> list[str]:
    """``path`` and those of its parents that do not exist yet, outermost first (to fsync their parents)."""
    missing: list[str] = []
    current = os.path.abspath(path)
    while not os.path.lexists(current) and current != os.path.dirname(current):
        missing.append(current)
        current = os.path.dirname(current)
    return missing[::-1]


__all__ = ["missing_directories", "names_directory", "not_a_directory", "refusing_directory", "user_path"]
