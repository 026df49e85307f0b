"""A snapshotted user projection for the retention tests: the text of every message, in order."""

from __future__ import annotations

import msgspec

from sessiondb import Message, Projection, RecordedEvent


class Tally(msgspec.Struct):
    texts: list[str] = msgspec.field(default_factory=list)


def _fold(state: Tally, recorded: RecordedEvent) -> Tally:
    if isinstance(recorded.event, Message):
        state.texts.append(recorded.event.text)
    return state


TALLY = Projection("tally", lambda sid: Tally(), _fold, state_type=Tally)
