"""What a page can show of a session's history: every event, or what retention kept and the snapshot before it.

Storage compaction's retention may delete old log segments; the events before its
floor are gone, but a snapshot holds the live context there. The viewer then shows
the events from the floor on, after the snapshot's messages.
"""

from __future__ import annotations

from dataclasses import dataclass

from .._backends._base import SessionInfo
from .._errors import HistoryUnavailableError
from .._events import Message, RecordedEvent
from .._store import Store
from ._model import Timeline
from ._timeline import build_timeline


@dataclass(slots=True)
class History:
    """Events ``floor < version <= shown``; ``before``: the live context at ``floor`` when history was cut."""

    events: list[RecordedEvent]
    floor: int = 0
    before: list[Message] | None = None


async def _read(store: Store, session_id: str, after: int, up_to: int) -> list[RecordedEvent]:
    return [recorded async for recorded in store.read(session_id, after=after, up_to=up_to)]


async def readable_history(store: Store, session_id: str, shown: int) -> History:
    """The session's events up to ``shown``, or, after retention, the part still stored.

    Raises ``HistoryUnavailableError`` when not even version ``shown`` can be shown.
    """
    try:
        return History(await _read(store, session_id, 0, shown))
    except HistoryUnavailableError:
        pass
    # Stored versions are a suffix: find the first by bisection, probing one event at a time.
    low, high = 0, shown  # version low + 1 is gone; versions after high are stored (or there are none)
    while high - low > 1:
        middle = (low + high) // 2
        try:
            await _read(store, session_id, middle, middle + 1)
            high = middle
        except HistoryUnavailableError:
            low = middle
    floor = high
    events = await _read(store, session_id, floor, shown)
    try:
        before: list[Message] | None = (await store.load(session_id, at_version=floor)).messages
    except HistoryUnavailableError:
        before = None
    if not events and before is None:
        raise HistoryUnavailableError(f"session {session_id!r} at v{shown} is no longer stored")
    return History(events, floor, before)


async def timeline_at(
    store: Store,
    session_id: str,
    version: int,
    *,
    page: int | None = None,
    page_size: int | None = None,
    summary: SessionInfo | None = None,
    seen: set[str] | None = None,
) -> Timeline:
    """The timeline of what is still stored of ``session_id`` up to ``version`` (``build_timeline``'s options).

    Raises ``HistoryUnavailableError`` as ``readable_history`` does.
    """
    history = await readable_history(store, session_id, version)
    return build_timeline(
        session_id,
        history.events,
        version=version,
        page=page,
        page_size=page_size,
        floor=history.floor,
        before=history.before,
        seen=seen,
        summary=summary,
    )


__all__ = ["History", "readable_history", "timeline_at"]
