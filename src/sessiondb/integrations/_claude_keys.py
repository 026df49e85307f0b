"""How a Claude Agent SDK ``SessionKey`` maps to a sessiondb session id, and back.

A key is ``(project_key, session_id, subpath)``; a subpath (a subagent transcript,
``"subagents/agent-1"``) contains ``/``, which no sessiondb session id may. Each part
is escaped (``%`` -> ``%25``, ``~`` -> ``%7E``, ``/`` -> ``%2F``, ``\\`` -> ``%5C``)
and the parts are joined with ``~`` after the prefix ``cc``::

    {"project_key": "-home-me-app", "session_id": "4f1c…"}           -> cc~-home-me-app~4f1c…
    {… , "subpath": "subagents/agent-1"}                               -> cc~-home-me-app~4f1c…~subagents%2Fagent-1

No part is empty and an escaped part holds no ``~``, so ``~~`` never occurs inside
an encoded key: it marks a *generation*. sessiondb never reuses a deleted session's
id, so a key written again after ``delete`` lives in ``<id>~~2``, then ``<id>~~3`` …
The mapping is injective and reversible (``decode_session_id``), and every id it
produces passes ``validate_session_id``. One exception keeps ids within sessiondb's
byte limit (a session id names an export file): a project key whose escaped form is
over 120 bytes (the SDK makes keys of up to ~210 characters for deep directories) is
written as ``%h`` and the first 40 hex digits of its SHA-256. ``%h`` is no escape, so
no short key can produce it, and every call names its project key, so the adapter
compares projects in their encoded form and never needs the long key back.

Every session the adapter creates carries a sessiondb *scope*, ``project_scope(project_key)``:
the escaped project key (the key itself for SDK keys, which hold no ``% ~ / \\``), or,
past sessiondb's scope limit of 512 bytes, the same ``%h`` hash form. So a project's
sessions are listed from the scope index, and ``store.list_sessions(scope=project_key)``
finds them too.
"""

from __future__ import annotations

import hashlib
import re
from typing import NamedTuple

from .._errors import InvalidInputError, InvalidSessionIdError
from .._ids import MAX_SESSION_ID_BYTES, validate_session_id
from .._labels import FORBIDDEN_CHARACTERS, MAX_SCOPE_BYTES

PREFIX = "cc~"
# Escaped project keys longer than this are written as their hash (see the module docstring).
_PROJECT_PART_BYTES = 120
_ESCAPES = {"%": "%25", "~": "%7E", "/": "%2F", "\\": "%5C"}
_ESCAPE = re.compile(r"[%~/\\]")
_UNESCAPE = re.compile(r"%(25|7E|2F|5C)")
_UNESCAPES = {code[1:]: char for char, code in _ESCAPES.items()}
_GENERATION = re.compile(r"~~([2-9]|[1-9][0-9]+)\Z")


# (project_key, session_id, subpath) -> session id, for keys that passed every check.
_encoded: dict[tuple[str, str, str | None], str] = {}
_ENCODED_KEPT = 65_536


class DecodedKey(NamedTuple):
    """A session id taken apart: the SDK key's parts and the generation (1 for the first)."""

    project_key: str
    session_id: str
    subpath: str | None
    generation: int


def describe_key(key: object) -> str:
    """The key as an error message names it."""
    if isinstance(key, dict):
        parts = [f"project_key={key.get('project_key')!r}", f"session_id={key.get('session_id')!r}"]
        if "subpath" in key:
            parts.append(f"subpath={key.get('subpath')!r}")
        return "key (" + ", ".join(parts) + ")"
    return f"key {key!r}"


def project_part(project_key: str) -> str:
    """The project key as it appears in session ids: escaped, or hashed when long."""
    escaped = _escape(project_key)
    if len(escaped.encode()) <= _PROJECT_PART_BYTES:
        return escaped
    return "%h" + hashlib.sha256(project_key.encode()).hexdigest()[:40]


def project_scope(project_key: str) -> str:
    """The sessiondb scope of a project's sessions: escaped (injective: no escape is ``%h``), hashed when long."""
    escaped = _escape(project_key)
    if len(escaped.encode()) <= MAX_SCOPE_BYTES:
        return escaped
    return "%h" + hashlib.sha256(project_key.encode()).hexdigest()[:40]


def _escape(part: str) -> str:
    return _ESCAPE.sub(lambda match: _ESCAPES[match.group()], part)


def _unescape(part: str) -> str:
    return _UNESCAPE.sub(lambda match: _UNESCAPES[match.group(1)], part)


def _check_part(key: object, field: str, value: object, *, path: bool = False) -> str:
    """A key part: a non-empty str without control characters; names the key when it is not."""
    if type(value) is not str:
        raise InvalidInputError(
            f"{describe_key(key)}: {field} must be a str, got {type(value).__name__}; nothing was written"
        )
    if not value:
        hint = " (omit subpath for the main transcript)" if field == "subpath" else ""
        raise InvalidInputError(f"{describe_key(key)}: {field} must not be empty{hint}; nothing was written")
    forbidden = FORBIDDEN_CHARACTERS.search(value)
    if forbidden is not None:
        raise InvalidInputError(
            f"{describe_key(key)}: {field} contains {forbidden.group()!r}; control, line-break and "
            "surrogate characters are not allowed; nothing was written"
        )
    if path:
        if value.startswith("/") or "\\" in value:
            raise InvalidInputError(
                f"{describe_key(key)}: subpath must be relative with '/' separators, like "
                "'subagents/agent-1'; nothing was written"
            )
        for segment in value.split("/"):
            if segment in ("", ".", ".."):
                raise InvalidInputError(
                    f"{describe_key(key)}: subpath has an empty, '.' or '..' segment; nothing was written"
                )
    elif "/" in value or "\\" in value or value in (".", ".."):
        raise InvalidInputError(
            f"{describe_key(key)}: {field} must not contain '/' or '\\' nor be '.' or '..' "
            "(it names a directory or file in Claude Code's own layout); nothing was written"
        )
    return value


def check_key(key: object, *, allow_subpath: bool = True) -> tuple[str, str, str | None]:
    """The key's ``(project_key, session_id, subpath)``, or ``InvalidInputError`` naming it."""
    if not isinstance(key, dict):
        raise InvalidInputError(f"a session key must be a dict with project_key and session_id, got {key!r}")
    project_key = _check_part(key, "project_key", key.get("project_key"))
    session_id = _check_part(key, "session_id", key.get("session_id"))
    subpath = None
    if allow_subpath and "subpath" in key and key["subpath"] is not None:
        subpath = _check_part(key, "subpath", key["subpath"], path=True)
    return project_key, session_id, subpath


def encode_key(key: object, *, allow_subpath: bool = True) -> str:
    """The session id of the key's first generation; ``InvalidInputError`` naming the key if it has none."""
    if type(key) is dict:
        # The hot path: a key seen before (an SDK mirror appends to the same few keys over and over).
        parts = (key.get("project_key"), key.get("session_id"), key.get("subpath") if allow_subpath else None)
        if type(parts[0]) is str and type(parts[1]) is str and (parts[2] is None or type(parts[2]) is str):
            cached = _encoded.get(parts)  # type: ignore[arg-type]
            if cached is not None:
                return cached
    project_key, session_id, subpath = check_key(key, allow_subpath=allow_subpath)
    head = PREFIX + project_part(project_key) + "~"
    encoded = head + _escape(session_id)
    if subpath is not None:
        encoded += "~" + _escape(subpath)
    # Room for a generation suffix, so a key that fits keeps fitting after deletes.
    if len(encoded.encode()) + 6 > MAX_SESSION_ID_BYTES:
        # Said in the key's terms: the bytes its session_id (and subpath) take, and the room this project leaves.
        what = "session_id and subpath take" if subpath is not None else "session_id takes"
        used = len(encoded.encode()) - len(head.encode()) - (1 if subpath is not None else 0)
        room = MAX_SESSION_ID_BYTES - 6 - len(head.encode()) - (1 if subpath is not None else 0)
        raise InvalidSessionIdError(
            f"{describe_key(key)}: its {what} {used} bytes (UTF-8, with % ~ / \\ written as 3 bytes each); "
            f"with this project key there is room for {room}: use a shorter key; nothing was written"
        )
    validate_session_id(encoded)
    if len(_encoded) >= _ENCODED_KEPT:
        _encoded.clear()
    _encoded[(project_key, session_id, subpath)] = encoded
    return encoded


def generation_id(base: str, generation: int) -> str:
    """The session id of ``generation`` (1, 2, …) of the key whose first id is ``base``."""
    return base if generation == 1 else f"{base}~~{generation}"


def project_prefix(project_key: str) -> str:
    """Every session id of the project's keys starts with this."""
    return PREFIX + project_part(project_key) + "~"


def decode_session_id(session_id: str) -> DecodedKey | None:
    """The key a session id encodes, or None for an id this mapping did not produce."""
    if not session_id.startswith(PREFIX):
        return None
    body = session_id[len(PREFIX) :]
    generation = 1
    match = _GENERATION.search(body)
    if match is not None:
        generation = int(match.group(1))
        body = body[: match.start()]
    parts = body.split("~")
    if len(parts) not in (2, 3) or not all(parts):
        return None
    subpath = _unescape(parts[2]) if len(parts) == 3 else None
    return DecodedKey(_unescape(parts[0]), _unescape(parts[1]), subpath, generation)
