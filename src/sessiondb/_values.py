"""What a stored value may hold: the rule that makes "accepted" mean "reads back equal".

Every backend stores an event as msgspec JSON (the local log as a line, PostgreSQL as
bytea beside ``jsonb`` views and ``text`` metadata columns). A value is accepted only
if that JSON gives back an equal value of the same type on every backend and reader:

- ``None``, ``bool``, ``str``, ``int``, ``float``, ``list`` and ``dict`` of exactly
  those types (no subclasses: an ``IntEnum`` or a ``str`` subclass reads back as the
  base type); dict keys are ``str``;
- ``int`` of at most ``MAX_INT_BITS`` bits (about 4,200 decimal digits: Python refuses
  by default to turn longer ints into text or back; msgspec and jsonb keep shorter ones exact);
- ``float`` finite (JSON has no NaN or infinity; msgspec writes them as null);
- ``str`` without lone surrogates (not encodable as UTF-8). NUL characters are kept in
  event content (stored as bytes on every backend) but refused in metadata that
  PostgreSQL keeps in ``text`` columns (model, workspace root, branch name, event id);
- containers nested at most ``MAX_NESTING`` deep, so that decoding never depends on
  the caller's stack depth.

Tuples, sets, bytes, datetimes and other objects are refused rather than converted.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from ._errors import InvalidInputError, SessionDBError
from ._events import Compacted, Custom, Message, PromptRecorded, Text, Thinking, ToolResult, ToolUse
from ._reserved import RESERVED, shape_problem

# Deep enough for any real tool input or application payload; shallow enough that a
# record decodes from any reasonable call depth (each level costs the C decoder a frame).
MAX_NESTING = 64
MAX_METADATA_CHARS = 4096  # model, workspace root, branch name, event id
T = TypeVar("T")
MAX_INT_BITS = 14_000


class _Refused(Exception):
    """Internal: the reason, and the path to it, built only on the way out of a refusal."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.steps: list[str] = []  # innermost first
        self.at_this_dict = False  # a bad key: reported at the dict that holds it, not below it


def _check_str(value: str) -> str | None:
    if value.isascii():
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"contains a lone surrogate {value[exc.start]!r} at index {exc.start}, which is not valid UTF-8"
    return None


_FLOAT_LIMITS = (float("inf"), float("-inf"))


def _walk(value: object, depth: int) -> None:
    """Raise ``_Refused`` unless ``value`` round-trips; no per-node allocation on the accepting path."""
    kind = type(value)
    if kind is str:
        reason = _check_str(value)  # type: ignore[arg-type]
        if reason is not None:
            raise _Refused(reason)
        return
    if value is None or kind is bool:
        return
    if isinstance(value, int) and kind is int:
        bits = value.bit_length()
        if bits > MAX_INT_BITS:
            raise _Refused(f"is an int of {bits} bits, above the limit of {MAX_INT_BITS}; store it as a str")
        return
    if kind is float:
        if value != value or value in _FLOAT_LIMITS:
            raise _Refused(f"is {value!r}; JSON has no NaN or infinity")
        return
    if kind is list or kind is dict:
        if depth >= MAX_NESTING:
            raise _Refused(f"nests containers deeper than the limit of {MAX_NESTING} levels")
        if isinstance(value, list):
            index = 0
            try:
                for index, item in enumerate(value):  # noqa: B007 - index names the failing item
                    _walk(item, depth + 1)
            except _Refused as refused:
                refused.steps.append(f"[{index}]")
                raise
            return
        assert isinstance(value, dict)
        key: object = None
        try:
            for key, item in value.items():
                if type(key) is not str:
                    bad_key = _Refused(f"has the {type(key).__name__} key {key!r}; dict keys must be str")
                    bad_key.at_this_dict = True
                    raise bad_key
                reason = _check_str(key)  # type: ignore[arg-type]
                if reason is not None:
                    raise _Refused(f"key {reason}")
                _walk(item, depth + 1)
        except _Refused as refused:
            if refused.at_this_dict:
                refused.at_this_dict = False
            else:
                refused.steps.append(f"[{key!r}]")
            raise
        return
    hint = ""
    if kind is tuple or kind is set or kind is frozenset:
        hint = "; use a list"
    elif isinstance(value, (str, int, float, dict, list)):
        hint = f"; convert it to a plain {type(value).__mro__[-2].__name__}"
    elif isinstance(value, (bytes, bytearray)):
        hint = "; encode it as a str (base64, for example)"
    raise _Refused(f"is a {kind.__name__}, which JSON cannot hold faithfully{hint}")


_SHOWN_STEPS = 6


def _abbreviated(steps: list[str]) -> str:
    """The path's steps, outermost first; a deep one keeps its two ends, so a message stays readable."""
    if len(steps) <= 2 * _SHOWN_STEPS:
        return "".join(steps)
    hidden = len(steps) - 2 * _SHOWN_STEPS
    return "".join(steps[:_SHOWN_STEPS]) + f"…({hidden} levels)…" + "".join(steps[-_SHOWN_STEPS:])


def check_value(session_id: object, where: str, value: object) -> None:
    """Raise ``InvalidInputError`` naming the session and ``where`` unless ``value`` round-trips."""
    try:
        _walk(value, 0)
    except _Refused as refused:
        path = where + _abbreviated(refused.steps[::-1])
        raise InvalidInputError(f"session {session_id!r}: {path} {refused.reason}; nothing was written") from None


def check_text(session_id: object, where: str, value: object, *, limit: int | None = None) -> None:
    """Check optional metadata text: a str, valid UTF-8, no NUL, at most ``limit`` characters."""
    if value is None:
        return
    if type(value) is not str:
        raise InvalidInputError(f"session {session_id!r}: {where} must be a str, got {type(value).__name__}")
    if "\x00" in value:
        raise InvalidInputError(
            f"session {session_id!r}: {where} contains a NUL character (U+0000), which PostgreSQL's text "
            "columns cannot hold; nothing was written"
        )
    reason = _check_str(value)
    if reason is None and limit is not None and len(value) > limit:
        reason = f"is {len(value)} characters long; the limit is {limit}"
    if reason is not None:
        raise InvalidInputError(f"session {session_id!r}: {where} {reason}; nothing was written")


MAX_EVENT_ID_CHARS = 256  # event ids are indexed; PostgreSQL's btree entries hold about 2.7 KB


def plain_message(message: Message) -> bool:
    """True when a Message is storable as it is, checked in one pass without building any path text.

    That is: its ``blocks`` is a list of the four block types only (a Message is
    frozen and validated when built, but its list is not: a dict or str appended
    later would encode and never decode), and every str in them is ASCII (which
    holds no lone surrogate). False sends the caller to the full checks, which
    accept non-ASCII text that is valid UTF-8 and name what is wrong otherwise.
    """
    blocks: list[Any] = message.blocks  # Any: narrowed by the exact type tests below, which mypy does not follow
    if type(blocks) is not list:
        return False
    for block in blocks:
        kind = type(block)
        if kind is Text:
            if not block.text.isascii():
                return False
        elif kind is ToolResult:
            if not (block.output.isascii() and block.tool_use_id.isascii() and block.tool_name.isascii()):
                return False
        elif kind is ToolUse:
            if not (block.input.isascii() and block.id.isascii() and block.name.isascii()):
                return False
        elif kind is Thinking:
            if not (block.thinking.isascii() and (block.signature is None or block.signature.isascii())):
                return False
        else:
            return False
    return True


def check_event(session_id: object, where: str, event: object) -> None:
    """Check every str and value an event carries (``where`` is ``event`` or ``events[i]``)."""
    if isinstance(event, Message):
        for index, block in enumerate(event.blocks):
            at = f"{where}.blocks[{index}]"
            if isinstance(block, Text):
                _check_field(session_id, f"{at}.text", block.text)
            elif isinstance(block, Thinking):
                _check_field(session_id, f"{at}.thinking", block.thinking)
                _check_field(session_id, f"{at}.signature", block.signature)
            elif isinstance(block, ToolUse):
                _check_field(session_id, f"{at}.id", block.id)
                _check_field(session_id, f"{at}.name", block.name)
                _check_field(session_id, f"{at}.input", block.input)
            elif isinstance(block, ToolResult):
                _check_field(session_id, f"{at}.tool_use_id", block.tool_use_id)
                _check_field(session_id, f"{at}.tool_name", block.tool_name)
                _check_field(session_id, f"{at}.output", block.output)
    elif isinstance(event, Custom):
        _check_field(session_id, f"{where}.name", event.name)
        check_value(session_id, f"{where}.data", event.data)
        if event.name in RESERVED:  # an integration's name: its data must be what that integration reads
            problem = shape_problem(session_id, where, event.name, event.data)
            if problem is not None:
                raise InvalidInputError(problem)
    elif isinstance(event, PromptRecorded):
        _check_field(session_id, f"{where}.text", event.text)
    elif isinstance(event, Compacted):
        _check_field(session_id, f"{where}.summary", event.summary)


def _check_field(session_id: object, where: str, value: str | None) -> None:
    # The common case costs one C scan: ASCII text holds no surrogate.
    if value is None or value.isascii():
        return
    reason = _check_str(value)
    if reason is not None:
        raise InvalidInputError(f"session {session_id!r}: {where} {reason}; nothing was written")


def decode_on_fresh_stack(decode: Callable[[Any], T], data: Any) -> T:
    """``decode(data)`` in a new thread, whose stack starts empty.

    For a record that raised ``RecursionError`` where it was first decoded: a stored
    value may nest deeper than the caller's remaining stack allows (values stored before
    ``MAX_NESTING`` was enforced), which says nothing about the data's integrity. Rare,
    so a short-lived thread is cheap enough. Re-raises whatever the decode raises.
    """
    result: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.append(decode(data))
        except BaseException as exc:  # handed to the calling thread
            failure.append(exc)

    thread = threading.Thread(target=run, name="sessiondb-deep-decode")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


def decode_deep(decode: Callable[[Any], T], data: Any, where: str) -> T:
    """Decode a record that hit ``RecursionError``: retry on a fresh stack, never call it corrupt."""
    try:
        return decode_on_fresh_stack(decode, bytes(data))
    except RecursionError:
        raise SessionDBError(
            f"the record at {where} nests deeper than Python's recursion limit ({sys.getrecursionlimit()}) "
            "allows to decode; it is not damaged: raise the limit with sys.setrecursionlimit() to read it, "
            "or run `sessiondb repair`, which keeps what precedes it and moves it and what follows aside"
        ) from None
