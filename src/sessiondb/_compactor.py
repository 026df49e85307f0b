"""The background compactor: snapshots of session states, index checkpoints and log retention.

One task per store. A pass picks the sessions whose unsnapshotted tail grew
past the thresholds (plus those retention needs covered), writes their
snapshots a few at a time (state built in worker threads, yielding to the
writer between steps), then lets the backend checkpoint its index and delete
the sealed segments every snapshot now covers. Appends never wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ._backends._base import Backend, SessionInfo, apply_to_info
from ._backends._snapshot_payload import (
    SnapshotFormatError,
    SnapshotPayload,
    decode_projection_state,
    decode_snapshot,
    encode_snapshot,
)
from ._errors import HistoryUnavailableError, InvalidInputError, SessionNotFoundError, StoreBrokenError
from ._gcpause import gc_paused
from ._projection import Projection, Session, replay_session
from ._threads import run_to_completion

if TYPE_CHECKING:
    from ._events import RecordedEvent


class CompactorHost(Protocol):
    """What the compactor uses of its ``Store``: a protocol, so this module need not import the store."""

    @property
    def backend(self) -> Backend: ...

    @property
    def _projections(self) -> dict[str, Projection[Any]]: ...

    def _check_open(self) -> None: ...

    async def _info(self, session_id: str) -> SessionInfo: ...

    async def _snapshot_for(self, info: SessionInfo, version: int) -> SnapshotPayload | None: ...

    async def _events(self, info: SessionInfo, after: int, up_to: int) -> list[RecordedEvent]: ...


@dataclass(frozen=True)
class CompactionSettings:
    """How the compactor works. The defaults suit a long-running agent server.

    A session gets a snapshot when its tail since the last one has
    ``min_tail_events`` events or ``min_tail_bytes`` bytes AND at least
    ``state_ratio`` times the bytes of its current snapshot (so a large state
    is never rewritten for a small tail: the bytes snapshots write stay within
    about ``1 + 1/state_ratio`` times the bytes appended).

    Retention keeps the ``keep_segments`` newest sealed log segments (default
    3, like the reference keeps 3 rotated files) and, with ``keep_seconds``,
    every segment younger than that; older sealed segments are deleted once
    snapshots cover all their events. ``keep_segments=None`` keeps all history.
    """

    background: bool = True  # run passes every interval_seconds (store.compact() works either way)
    interval_seconds: float = 30.0
    min_tail_events: int = 1_000
    min_tail_bytes: int = 1024 * 1024
    state_ratio: float = 1.0
    keep_segments: int | None = 3
    keep_seconds: float | None = None
    checkpoint: bool = True  # checkpoint the index after each pass (open then scans only what follows)
    snapshots_per_step: int = 8  # snapshots between yields to the event loop
    pause_seconds: float = 0.0  # sleep between steps, to slow a pass down

    def __post_init__(self) -> None:
        """Every field's type and range, checked here (``InvalidInputError``), not first in a background pass."""
        for name in ("background", "checkpoint"):
            _check_setting(name, getattr(self, name), type(getattr(self, name)) is bool, "True or False")
        for name in ("min_tail_events", "min_tail_bytes", "snapshots_per_step"):
            value = getattr(self, name)
            _check_setting(name, value, type(value) is int and value >= 1, "an int >= 1")
        keep = self.keep_segments
        _check_setting(
            "keep_segments", keep, keep is None or (type(keep) is int and keep >= 0), "an int >= 0, or None to keep all"
        )
        _check_setting("interval_seconds", self.interval_seconds, _seconds(self.interval_seconds, 0.0), "a number > 0")
        for name in ("state_ratio", "pause_seconds"):
            value = getattr(self, name)
            _check_setting(name, value, _seconds(value, None), "a number >= 0")
        age = self.keep_seconds
        _check_setting(
            "keep_seconds", age, age is None or _seconds(age, None), "a number >= 0, or None for no age rule"
        )


def _seconds(value: object, above: float | None) -> bool:
    """A finite int or float (not a bool) that is > ``above``, or >= 0 when ``above`` is None."""
    if type(value) not in (int, float) or not math.isfinite(value):  # type: ignore[arg-type]
        return False
    return value > above if above is not None else value >= 0  # type: ignore[operator]


def _check_setting(name: str, value: object, ok: bool, wanted: str) -> None:
    if not ok:
        raise InvalidInputError(f"CompactionSettings({name}=...) must be {wanted}, got {value!r}")


_NO_RETENTION = 1 << 62
_logger = logging.getLogger("sessiondb")


def snapshotted_projections(projections: dict[str, Projection[Any]]) -> dict[str, Projection[Any]]:
    """The projections whose state a snapshot holds (those that declare a ``state_type``)."""
    return {name: projection for name, projection in projections.items() if projection.state_type is not Any}


def holds_all(payload: SnapshotPayload, names: Any) -> bool:
    return all(name in payload.projections for name in names)


class Compactor:
    """Runs compaction passes for one store, in the background and on demand."""

    def __init__(self, store: CompactorHost, settings: CompactionSettings) -> None:
        self.store = store
        self.settings = settings
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._warned: set[str] = set()  # recorded projections this process was warned it lacks
        self.stats: dict[str, Any] = {
            "compaction_passes": 0,
            "last_pass_seconds": 0.0,
            "last_pass_snapshots": 0,
            "compaction_errors": 0,
            "last_compaction_error": "",
        }

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self.settings.background and self.store.backend.supports_snapshots:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="sessiondb-compactor")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.interval_seconds)
            try:
                await self.run_pass()
            except StoreBrokenError:
                return  # the writer failed: nothing more to do until the store is reopened
            except Exception as exc:
                # A failed pass leaves the previous files in place (nothing is deleted before its
                # replacement is durable); the next pass tries again. The error is in statistics().
                self.stats["compaction_errors"] += 1
                self.stats["last_compaction_error"] = repr(exc)

    # ------------------------------------------------------------------ one pass

    @property
    def pass_lock(self) -> asyncio.Lock:
        """Held for a whole pass; hold it to do something a pass must not interleave with."""
        return self._lock

    async def run_pass(self, *, purge: bool = False) -> dict[str, Any]:
        """One compaction pass now; returns what it did.

        ``purge``: seal the active segment and keep no sealed segment nor any age
        (``keep_segments=0``, ``keep_seconds=None``) for this pass, so that what was
        deleted (sessions, LangGraph checkpoints) leaves the disk now. History below
        the snapshots it writes is gone for time travel.
        """
        async with self._lock:
            backend = self.store.backend
            # One process at a time compacts a store (the others skip their pass).
            if not await backend.begin_maintenance():
                return {"snapshots_written": 0, "skipped": "another process is compacting this store"}
            try:
                return await self._pass(purge)
            finally:
                backend.end_maintenance()

    async def _pass(self, purge: bool = False) -> dict[str, Any]:
        started = time.perf_counter()
        store = self.store
        backend = store.backend
        settings = self.settings
        done: dict[str, Any] = {"snapshots_written": 0}
        if purge:
            done["sealed"] = await backend.seal_active_segment()
        if not backend.supports_snapshots:
            return done
        keep = settings.keep_segments if settings.keep_segments is not None else _NO_RETENTION
        keep_seconds = settings.keep_seconds
        if purge:
            keep, keep_seconds = 0, None
        # A recorded projection this process has not registered: its snapshots leave that state out, and
        # retention relies only on snapshots holding every recorded one, so the history stays (see
        # docs/compaction.md). Snapshots written for retention would be of no use to it.
        missing = sorted(backend.recorded_projections() - snapshotted_projections(store._projections).keys())
        if missing:
            done["projections_not_registered"] = missing
            self._warn_missing(missing)
        # First what retention needs: a snapshot at the last version it would remove, so time travel
        # keeps working over every retained segment. Then the sessions whose tail outgrew the thresholds.
        needs = {} if missing else backend.retention_needs(keep, keep_seconds)
        steps = 0
        for session_id, version in needs.items():
            store._check_open()
            if await self.snapshot_session(session_id, at_version=version):
                done["snapshots_written"] += 1
            steps += 1
            if steps % settings.snapshots_per_step == 0:
                await asyncio.sleep(settings.pause_seconds)  # yield to the writer and to readers
        candidates = backend.snapshot_candidates(
            settings.min_tail_events, settings.min_tail_bytes, settings.state_ratio
        )
        for session_id, _tail_bytes in candidates:
            store._check_open()
            if await self.snapshot_session(session_id):
                done["snapshots_written"] += 1
            steps += 1
            if steps % settings.snapshots_per_step == 0:
                await asyncio.sleep(settings.pause_seconds)
        retention = _Retention(keep, keep_seconds, settings.checkpoint)
        done.update(await backend.compact_storage(retention))
        elapsed = time.perf_counter() - started
        self.stats["compaction_passes"] += 1
        self.stats["last_pass_seconds"] = elapsed
        self.stats["last_pass_snapshots"] = done["snapshots_written"]
        done["seconds"] = elapsed
        return done

    def _warn_missing(self, missing: list[str]) -> None:
        for name in missing:
            if name in self._warned:
                continue
            self._warned.add(name)
            _logger.warning(
                "projection %r is recorded in this store but not registered in this process: its snapshots "
                "leave that state out, so retention keeps the log history the projection needs. Register it "
                "(Store.register_projection) in every process that opens the store, or, if it is gone for "
                "good, forget it (Store.forget_projection, or sessiondb compact --forget-projection %s)",
                name,
                name,
            )

    async def snapshot_session(self, session_id: str, *, at_version: int | None = None) -> bool:
        """Write a snapshot of ``session_id`` at ``at_version`` (default: its current version).

        False when there is nothing to do (a snapshot at that version exists, or
        the history it would need is gone).
        """
        store = self.store
        try:
            info = await store._info(session_id)
        except SessionNotFoundError:
            return False
        version = info.version if at_version is None else min(at_version, info.version)
        known = store.backend.snapshot_versions().get(session_id)
        if known is not None and known[0] == version:
            return False
        projections = snapshotted_projections(store._projections)
        try:
            payload = await store._snapshot_for(info, version)
            # Start from the newest snapshot holding every registered projection's state (one written by
            # a process without some projection leaves it out), else from the log's start, else from the
            # newest with the projections it holds.
            base = payload
            while base is not None and not holds_all(base, projections):
                base = await store._snapshot_for(info, base.version - 1) if base.version > 0 else None
            try:
                events = await store._events(info, base.version if base is not None else 0, version)
            except HistoryUnavailableError:
                if base is payload:
                    raise
                base = payload
                events = await store._events(info, payload.version if payload is not None else 0, version)
        except HistoryUnavailableError:
            return False  # no snapshot and no log to rebuild from: nothing better can be written
        built = await run_to_completion(_build_snapshot, session_id, version, base, events, projections)
        if built is None:
            return False
        data, holds = built
        return await store.backend.write_snapshot(session_id, version, data, holds)


class _Retention:
    """The settings the backend's ``compact_storage`` reads."""

    def __init__(self, keep_segments: int, keep_seconds: float | None, checkpoint: bool) -> None:
        self.keep_segments = keep_segments
        self.keep_seconds = keep_seconds
        self.checkpoint = checkpoint


def _build_snapshot(
    session_id: str,
    version: int,
    payload: SnapshotPayload | None,
    events: list[RecordedEvent],
    projections: dict[str, Projection[Any]],
) -> tuple[bytes, frozenset[str]] | None:
    """In a worker thread: fold the tail into the previous snapshot's states and encode the result."""
    with gc_paused():
        session = replay_session(session_id, events, payload.session if payload is not None else None)
        if session.version != version:
            return None  # the tail did not reach the version (cannot happen; refuse to write a wrong one)
        # The summary at this version, folded like the backend folds it (a fork's parent events included:
        # the child's SessionStarted resets the counts to what it inherited).
        info = payload.info.copy() if payload is not None else SessionInfo(session_id)
        for recorded in events:
            apply_to_info(info, recorded.event, recorded.version, recorded.timestamp_ms)
        info.session_id = session_id
        states: dict[str, tuple[Projection[Any], Any]] = {}
        for name, projection in projections.items():
            state = decode_projection_state(payload, projection) if payload is not None else None
            if state is None and payload is not None and payload.version > 0:
                continue  # its earlier events are not in this tail: leave it to a full replay
            states[name] = (projection, projection.replay(session_id, events, state))
        return encode_snapshot(session, info, states), frozenset(states)


def decode_or_none(data: bytes) -> SnapshotPayload | None:
    try:
        return decode_snapshot(data)
    except SnapshotFormatError:
        return None


__all__ = ["CompactionSettings", "Compactor", "Session", "decode_or_none"]
