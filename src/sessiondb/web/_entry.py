"""Building entries from recorded events: the one place that fills an ``Entry``'s version, time and origin.

The built-in events (``_timeline``) and the integrations' custom events (``_integrations``,
``_langgraph``) all make their entries here, so an entry from any source links to its
version and marks shared history (a fork's parent's events) the same way.
"""

from __future__ import annotations

import json
from typing import Any

from .._events import RecordedEvent, Usage
from ._model import Entry


def entry_for(recorded: RecordedEvent, owner: str, kind: str, **fields: Any) -> Entry:
    """An entry of ``kind`` for ``recorded``, shown on ``owner``'s page (inherited when another session recorded it)."""
    return Entry(
        kind,
        recorded.version,
        recorded.session_id,
        recorded.timestamp_ms,
        inherited=recorded.session_id != owner,
        **fields,
    )


def integration_message(
    recorded: RecordedEvent,
    owner: str,
    source: str,
    role: str,
    parts: list[tuple[str, object]],
    usage: Usage | None = None,
) -> Entry:
    """A conversation message an integration recorded (``source`` names it)."""
    return entry_for(recorded, owner, "message", role=role, parts=parts, usage=usage, source=source)


def notice(recorded: RecordedEvent, owner: str, source: str, text: str, detail: str = "") -> Entry:
    """A note: ``text`` in a line, ``detail`` (JSON, usually) folded under it."""
    return entry_for(recorded, owner, "notice", text=text, detail=detail, source=source)


def as_json(value: Any) -> str:
    """A value as indented JSON for a folded detail; what JSON cannot hold shows as its ``repr``."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=repr)


__all__ = ["as_json", "entry_for", "integration_message", "notice"]
