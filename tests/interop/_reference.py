"""An independent transliteration of upstream's JSON writer (json.rs ``render``), for tests.

Deliberately naive (character by character, like the Rust code) so it shares
nothing with ``sessiondb._interop._dialect``.
"""

from __future__ import annotations

import unicodedata
from typing import Any

_SHORT = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}


def render_string(value: str) -> str:
    out = ['"']
    for ch in value:
        if ch in _SHORT:
            out.append(_SHORT[ch])
        elif unicodedata.category(ch) == "Cc":  # Rust's char::is_control
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def render(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return render_string(value)
    if isinstance(value, list):
        return "[" + ",".join(render(v) for v in value) + "]"
    if isinstance(value, dict):
        # BTreeMap<String, _> iterates in byte order of the UTF-8 keys.
        keys = sorted(value, key=lambda k: k.encode("utf-8"))
        return "{" + ",".join(f"{render_string(k)}:{render(value[k])}" for k in keys) + "}"
    raise TypeError(type(value))


def snapshot(
    meta: dict[str, Any],
    compaction: dict[str, Any] | None,
    prompts: list[dict[str, Any]],
    messages: list[dict[str, Any]],
) -> bytes:
    """Upstream's ``render_jsonl_snapshot`` from plain records."""
    lines = [render({"type": "session_meta", **meta})]
    if compaction is not None:
        lines.append(render({"type": "compaction", **compaction}))
    lines += [render({"type": "prompt_history", **p}) for p in prompts]
    lines += [render({"type": "message", "message": m}) for m in messages]
    return ("\n".join(lines) + "\n").encode("utf-8")


def legacy_object(
    meta: dict[str, Any],
    compaction: dict[str, Any] | None,
    prompts: list[dict[str, Any]],
    messages: list[dict[str, Any]],
) -> bytes:
    """Upstream's ``Session::to_json`` single object (plus ``model``, which its reader reads)."""
    obj: dict[str, Any] = {**meta, "messages": messages}
    if compaction is not None:
        obj["compaction"] = compaction
    if prompts:
        obj["prompt_history"] = prompts
    return render(obj).encode("utf-8")
