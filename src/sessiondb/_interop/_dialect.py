"""claw-code's JSON dialect: the byte-exact writer and a strict line reader.

Upstream writes objects with sorted keys, no spaces, integers only, non-ASCII
raw and every Unicode control character (category Cc: U+0000-U+001F and
U+007F-U+009F) escaped, with short escapes for ``\\b \\f \\n \\r \\t``.
U+2028/U+2029 are not controls and stay raw. Its reader knows no floats.
"""

from __future__ import annotations

import json
import re
from typing import Any

# Rust's str::trim: characters with the Unicode White_Space property.
RUST_WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
I64_MIN = -(2**63)
I64_MAX = 2**63 - 1
U32_MAX = 2**32 - 1

# Python's json escapes U+0000-U+001F itself; upstream also escapes U+007F-U+009F.
_C1 = re.compile("[\x7f-\x9f]")
_C1_ESCAPES = {code: f"\\u{code:04x}" for code in range(0x7F, 0xA0)}
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_encoder = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False)


class DialectError(ValueError):
    """A JSON text that claw-code's reader would not accept (or that cannot be written)."""


def render(value: Any) -> str:
    """``value`` (dicts, lists, str, int, bool, None) as upstream's ``JsonValue::render`` writes it."""
    text = _encoder.encode(value)
    if _C1.search(text) is not None:
        # Only inside strings: everything outside them is ASCII.
        text = text.translate(_C1_ESCAPES)
    return text


def render_line(value: Any) -> bytes:
    """One JSONL record, UTF-8, without the newline; refuses what upstream cannot read."""
    try:
        return render(value).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise DialectError(
            f"a string holds a lone surrogate (U+{ord(exc.object[exc.start]):04X}); "
            "claw-code strings must be valid Unicode"
        ) from exc


def _no_float(text: str) -> Any:
    raise DialectError(f"numbers must be integers; found {text}")


def _no_constant(text: str) -> Any:
    raise DialectError(f"{text} is not JSON")


def _checked_int(text: str) -> int:
    value = int(text)
    if not I64_MIN <= value <= I64_MAX:
        raise DialectError(f"number {text} is out of the 64-bit integer range")
    return value


_decoder = json.JSONDecoder(parse_float=_no_float, parse_int=_checked_int, parse_constant=_no_constant, strict=False)


def parse(text: str) -> Any:
    """Parse one JSON text the way upstream's reader accepts it (raising ``DialectError``).

    Raw control characters inside strings are accepted, as upstream accepts
    them. Escaped surrogate pairs are accepted too (upstream rejects them; they
    decode to the same character), but a lone surrogate is refused.
    """
    try:
        value = _decoder.decode(text)
    except DialectError:
        raise
    except json.JSONDecodeError as exc:
        raise DialectError(f"invalid JSON: {exc.msg} (column {exc.colno})") from None
    except RecursionError:
        raise DialectError("invalid JSON: nested too deeply") from None
    if _SURROGATE_ESCAPE.search(text) is not None:
        _check_surrogates(value)
    return value


def _check_surrogates(value: Any) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise DialectError("a string holds a lone surrogate escape (\\ud800-\\udfff)") from None
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def split_lines(text: str) -> list[str]:
    """Split on ``\\n`` only, as Rust's ``str::lines`` (never ``str.splitlines``)."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def trim(line: str) -> str:
    """Rust's ``str::trim``."""
    return line.strip(RUST_WHITESPACE)
