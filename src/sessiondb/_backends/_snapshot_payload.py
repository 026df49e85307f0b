"""Snapshot payloads: a session's projected state at a version, encoded once, decoded on load.

A snapshot holds the built-in ``Session`` projection, the session's summary
(``SessionInfo``, so an index can be rebuilt after retention removed the log
below it) and the states of registered projections that declare a
``state_type``. Backends store the bytes opaquely (``Backend.write_snapshot``).
"""

from __future__ import annotations

from typing import Any

import msgspec

from .._projection import Projection, Session
from ._base import SessionInfo

SNAPSHOT_FORMAT = 1


class SnapshotPayload(msgspec.Struct, gc=False):
    """What a snapshot stores; ``format`` lets a newer sessiondb read older snapshots."""

    format: int
    version: int
    session: Session
    info: SessionInfo
    projections: dict[str, msgspec.Raw] = msgspec.field(default_factory=dict)


class _InfoOnly(msgspec.Struct, gc=False):
    """Just the summary of a snapshot: what an index rebuild needs, without decoding messages."""

    format: int
    version: int
    info: SessionInfo


class _ProjectionsOnly(msgspec.Struct, gc=False):
    """Just the projection states of a snapshot: which ones it holds, without decoding messages."""

    projections: dict[str, msgspec.Raw] = msgspec.field(default_factory=dict)


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(SnapshotPayload)
_info_decoder = msgspec.json.Decoder(_InfoOnly)
_projections_decoder = msgspec.json.Decoder(_ProjectionsOnly)


class SnapshotFormatError(ValueError):
    """A snapshot's bytes do not decode (or come from a newer sessiondb)."""


def encode_snapshot(
    session: Session, info: SessionInfo, projections: dict[str, tuple[Projection[Any], Any]] | None = None
) -> bytes:
    """Encode the state of a session at ``session.version`` (projections: name -> (projection, state))."""
    raws: dict[str, msgspec.Raw] = {}
    for name, (projection, state) in (projections or {}).items():
        if projection.state_type is Any:
            continue  # no declared type: the state could not be decoded back faithfully
        raws[name] = msgspec.Raw(_encoder.encode(state))
    return _encoder.encode(SnapshotPayload(SNAPSHOT_FORMAT, session.version, session, info, raws))


def decode_snapshot(data: bytes) -> SnapshotPayload:
    try:
        payload = _decoder.decode(data)
    except (msgspec.DecodeError, ValueError, RecursionError) as exc:
        raise SnapshotFormatError(f"snapshot does not decode ({exc})") from None
    if payload.format > SNAPSHOT_FORMAT:
        raise SnapshotFormatError(f"snapshot format {payload.format} is newer than this sessiondb understands")
    return payload


def decode_snapshot_info(data: bytes) -> tuple[int, SessionInfo]:
    """(version, summary) of a snapshot, skipping its messages."""
    try:
        payload = _info_decoder.decode(data)
    except (msgspec.DecodeError, ValueError, RecursionError) as exc:
        raise SnapshotFormatError(f"snapshot does not decode ({exc})") from None
    return payload.version, payload.info


def snapshot_projection_names(data: bytes) -> frozenset[str] | None:
    """The names of the projection states a snapshot payload holds; None if it does not decode."""
    try:
        return frozenset(_projections_decoder.decode(data).projections)
    except (msgspec.DecodeError, ValueError, RecursionError):
        return None


def decode_projection_state(payload: SnapshotPayload, projection: Projection[Any]) -> Any | None:
    """The snapshotted state of ``projection``, or None when the snapshot has none (or it no longer fits)."""
    raw = payload.projections.get(projection.name)
    if raw is None or projection.state_type is Any:
        return None
    try:
        return msgspec.json.decode(raw, type=projection.state_type)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError):
        # The projection's type changed since the snapshot: replay from the log instead.
        return None


__all__ = [
    "SNAPSHOT_FORMAT",
    "SnapshotFormatError",
    "SnapshotPayload",
    "decode_projection_state",
    "decode_snapshot",
    "decode_snapshot_info",
    "encode_snapshot",
    "snapshot_projection_names",
]
