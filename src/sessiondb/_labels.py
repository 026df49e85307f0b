"""Session labels and scopes: what a title, a tag and a scope may be, checked the same everywhere.

The rules hold on every backend and for stored events as they are decoded, so a
label that was accepted always reads back (PostgreSQL keeps them in ``text``
columns and indexes: no NUL, bounded sizes):

- a **scope** (fixed when a session is created; a project, a tenant): a non-empty
  str of at most ``MAX_SCOPE_BYTES`` bytes of UTF-8, without control, line-break or
  surrogate characters;
- a **title**: at most ``MAX_TITLE_CHARS`` characters, the same characters refused
  (one line), not empty (clear it with ``None`` instead);
- and, for a scope or title being written now (``new=True``; stored ones still load):
  not only whitespace, and no bidirectional override or isolate controls
  (U+202A-U+202E, U+2066-U+2069), which make a listing show text in another order
  than it has (the "Trojan Source" trick);
- a **tag**: 1 to ``MAX_TAG_CHARS`` characters, letters, digits and ``_ - . : / @ #``,
  starting with a letter, a digit or ``_`` (so ``+tag``/``-tag`` on the command line
  stay unambiguous); compared exactly (case-sensitive); a session holds at most
  ``MAX_TAGS`` tags.
"""

from __future__ import annotations

import re

from ._errors import InvalidInputError

MAX_SCOPE_BYTES = 512
MAX_TITLE_CHARS = 500
MAX_TAG_CHARS = 64
MAX_TAGS = 64

# Control, line-break and surrogate characters: refused in scopes and titles (and in SDK key parts).
FORBIDDEN_CHARACTERS = re.compile("[\x00-\x1f\x7f\x85\u2028\u2029\ud800-\udfff]")
# Refused in new scopes and titles only: logs written before the rule still decode.
BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")
_TAG_EXTRA = frozenset("_-.:/@#")


def _owner(session_id: object) -> str:
    return f"session {session_id!r}: " if session_id is not None else ""


def check_scope(scope: object, session_id: object = None, *, new: bool = False) -> str | None:
    """Return ``scope`` (None: no scope) or raise ``InvalidInputError`` naming the session.

    ``new``: a scope being written now, which also may not be blank nor hold bidi controls.
    """
    if scope is None:
        return None
    where = _owner(session_id)
    if type(scope) is not str:
        raise InvalidInputError(f"{where}scope must be a str or None, got {type(scope).__name__}")
    if not scope:
        raise InvalidInputError(f"{where}scope must not be empty (pass None for no scope)")
    forbidden = FORBIDDEN_CHARACTERS.search(scope)
    if forbidden is not None:
        raise InvalidInputError(
            f"{where}scope {scope[:60]!r} contains {forbidden.group()!r}; control, line-break and surrogate "
            "characters are not allowed"
        )
    if len(scope) * 4 > MAX_SCOPE_BYTES and len(scope.encode()) > MAX_SCOPE_BYTES:
        raise InvalidInputError(
            f"{where}scope {scope[:60]!r}... is {len(scope.encode())} bytes of UTF-8; the limit is {MAX_SCOPE_BYTES}"
        )
    if new:
        _check_new_text("scope", scope, where)
    return scope


def _check_new_text(what: str, text: str, where: str) -> None:
    if text.isspace():
        raise InvalidInputError(f"{where}a {what} must not be blank (only whitespace); got {text[:20]!r}")
    bidi = BIDI_CONTROLS.search(text)
    if bidi is not None:
        raise InvalidInputError(
            f"{where}{what} {text[:60]!r} contains the bidirectional control {bidi.group()!r}, which would show "
            f"the {what} in another order than it has; remove it"
        )


def check_title(title: object, session_id: object = None, *, new: bool = False) -> str | None:
    """Return ``title`` (None clears it) or raise ``InvalidInputError`` naming the session.

    ``new``: a title being set now, which also may not be blank nor hold bidi controls.
    """
    if title is None:
        return None
    where = _owner(session_id)
    if type(title) is not str:
        raise InvalidInputError(f"{where}a title must be a str (or None to clear it), got {type(title).__name__}")
    if not title:
        raise InvalidInputError(f"{where}a title must not be empty; clear it with None")
    if len(title) > MAX_TITLE_CHARS:
        raise InvalidInputError(f"{where}a title is at most {MAX_TITLE_CHARS} characters; got {len(title)}")
    forbidden = FORBIDDEN_CHARACTERS.search(title)
    if forbidden is not None:
        raise InvalidInputError(
            f"{where}title {title[:60]!r} contains {forbidden.group()!r}; a title is one line, without control "
            "or surrogate characters"
        )
    if new:
        _check_new_text("title", title, where)
    return title


def check_tag(tag: object, session_id: object = None) -> str:
    """Return ``tag`` or raise ``InvalidInputError`` naming the session and the rule."""
    where = _owner(session_id)
    if type(tag) is not str:
        raise InvalidInputError(f"{where}a tag must be a str, got {type(tag).__name__}")
    if not 1 <= len(tag) <= MAX_TAG_CHARS:
        raise InvalidInputError(f"{where}a tag has 1 to {MAX_TAG_CHARS} characters; got {len(tag)} in {tag[:80]!r}")
    first = tag[0]
    if not (first.isalnum() or first == "_") or not all(c.isalnum() or c in _TAG_EXTRA for c in tag):
        raise InvalidInputError(
            f"{where}tag {tag!r} is not allowed: a tag holds letters, digits and _ - . : / @ #, "
            "and starts with a letter, a digit or _"
        )
    return tag


def check_tags(tags: object, session_id: object = None) -> list[str]:
    """A sequence of tags, each checked; duplicates kept out (first occurrence wins)."""
    if isinstance(tags, str) or not isinstance(tags, (list, tuple)):
        raise InvalidInputError(f"{_owner(session_id)}tags must be a list of str, got {type(tags).__name__}")
    seen: dict[str, None] = {}
    for tag in tags:
        seen[check_tag(tag, session_id)] = None
    if len(seen) > MAX_TAGS:
        raise InvalidInputError(f"{_owner(session_id)}at most {MAX_TAGS} tags per session; got {len(seen)} at once")
    return list(seen)


__all__ = [
    "BIDI_CONTROLS",
    "FORBIDDEN_CHARACTERS",
    "MAX_SCOPE_BYTES",
    "MAX_TAGS",
    "MAX_TAG_CHARS",
    "MAX_TITLE_CHARS",
    "check_scope",
    "check_tag",
    "check_tags",
    "check_title",
]
