"""``LocalBackend``: the one object that wires the local backend's parts together.

Every session's events share one log, so a batch of appends from a thousand
sessions costs one write and one fdatasync. The parts, each owning its state:

- ``SegmentSet`` (``_segments.py``): the segment files, the active one, rolling, read fds;
- ``Index`` (``_index.py``): per session, its summary and where each event lies;
- ``plan_batch`` (``_planner.py``): checks and encodes a batch against the index;
- ``Reader`` (``_reader.py``): reads events back by session or by position;
- ``SnapshotFiles``, ``Checkpointer``, ``Retention`` (compaction's storage side);
- ``Recovery`` (``_recovery.py``): rebuilds the index and segment set on open, and
  (``_rebuild.py``) again in a process that fell behind other processes' retention.

This class holds the lifecycle (lock, open, close), the commit path (plan on the
loop, one thread hop to write and sync, then the index learns the batch) and the
``Backend`` methods, each delegating to the part that owns the state.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Sequence
from typing import Any, TypeVar

import anyio

from ..._errors import (
    DiskFullError,
    HistoryUnavailableError,
    InvalidInputError,
    ResourceExhaustedError,
    SessionDBError,
    SessionNotFoundError,
    StoreBrokenError,
    StoreClosedError,
    StoreLockedError,
    StorePermissionError,
)
from ..._events import RecordedEvent
from ..._gcpause import gc_paused
from ..._paths import missing_directories, not_a_directory, refusing_directory, user_path
from ..._threads import run_to_completion
from .._base import REOPENED, AppendRequest, Backend, SessionInfo
from .._fs import FileSystem
from .._listing import SessionQuery, SortKey, select_sessions
from ._checkpoint import CHECKPOINT_NAME, Checkpointer
from ._fdcache import DEFAULT_MAX_READ_FDS, RESOURCE_ERRNOS, resource_error
from ._follower import FellBehindError, LogCatchUp
from ._format import segment_number
from ._index import Index, unavailable
from ._locks import LOCK_FILES, STORE_LOCK, StoreLocks, warn_if_network_file_system
from ._planner import plan_batch
from ._projection_records import ProjectionRecords, is_projection_record
from ._reader import Reader
from ._rebuild import RebuiltView, adopt_view, build_view
from ._recovery import Recovery
from ._retention import Retention
from ._segments import Segment, SegmentSet
from ._snapshot_files import SNAPSHOT_PREFIX, SNAPSHOT_SUFFIX, SnapshotFiles
from ._write_thread import WriteThread

DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_EVENT_BYTES = 16 * 1024 * 1024
LOCK_NAME = STORE_LOCK
# Sessions with more events than this are decoded in a worker thread.
_THREAD_READ_THRESHOLD = 512
# Seconds between looks at the log's end while subscribers wait for other processes' events.
_FOLLOW_POLL_SECONDS = 0.005
# Scans a rebuild tries: a read-only store holds no lock, so another process's retention may remove a file under one.
_REBUILD_ATTEMPTS = 3
_logger = logging.getLogger("sessiondb")
_T = TypeVar("_T")


class LocalBackend(Backend):
    """Sessions in a directory on the local file system (the embedded default)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        read_only: bool = False,
        file_system: FileSystem | None = None,
        max_read_fds: int = DEFAULT_MAX_READ_FDS,
    ) -> None:
        self.path = os.path.abspath(user_path(path, what="a store path"))
        self.segment_bytes = segment_bytes
        self.max_event_bytes = max_event_bytes
        self.read_only = read_only
        self.fs = file_system if file_system is not None else FileSystem()
        self.locks = StoreLocks(self.path, self.fs)
        self._broken: StoreBrokenError | None = None
        self._closed = False
        # The parts. Each owns its state; the ones below take the ones above as collaborators.
        self.index = Index()
        self.segments = SegmentSet(self.path, self.fs, segment_bytes, max_read_fds)
        self.snapshots = SnapshotFiles(self.path, self.fs)
        self.checkpoints = Checkpointer(self.path, self.fs, self.index, self.segments, self.snapshots)
        self.projection_records = ProjectionRecords(self.path, self.fs)
        self.retention = Retention(
            self.path, self.fs, self.index, self.segments, self.snapshots, self.checkpoints, self.projection_records
        )
        self._reader = Reader(self.segments, self.fs)
        self._follower = LogCatchUp(self.fs, self.index, self.segments)
        # Cleared while this process's batch is written but not yet in the index: a read
        # that finds the log grown waits for it, so it never takes its own frame for another's.
        self._idle = asyncio.Event()
        self._write_turn = asyncio.Lock()
        self._write_thread = WriteThread("sessiondb-write")
        self._idle.set()
        self._foreign_reported = 0  # foreign records the subscription hint has announced
        # Falling behind retention (_rebuild.py): how often the index was rebuilt, the error when it could
        # not be, and the worker threads reading the parts (a rebuild lets them finish on the old view).
        self._rebuilds = 0
        self._view_generation = 0  # see Backend.view_generation
        self._unrebuildable: StoreBrokenError | None = None
        self._rebuild_turn = asyncio.Lock()  # a read-only store has no write lock to take turns on
        self._threads_reading = 0
        self._no_threads_reading = asyncio.Event()
        self._no_threads_reading.set()
        self._recovery = Recovery(
            self.path, self.fs, read_only, self.index, self.segments, self.snapshots, self.checkpoints
        )
        # A record of a session with no start is allowed only where retention removed the start.
        self.index.on_headless = self._recovery.adopt_pruned_stream

    @property
    def recovery(self) -> dict[str, Any]:
        """What the last open did: temp files removed, torn tails cut, stale segments removed, …"""
        return self._recovery.report

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        if self._closed:  # its index, segments and write thread were the store's it served, and are spent
            raise InvalidInputError(REOPENED.format(name=type(self).__name__))
        try:
            try:
                await run_to_completion(self._open_sync)
            except asyncio.CancelledError:
                self._release()  # it opened before the cancellation could stop it: let go of locks and descriptors
                raise
        except OSError as exc:
            # An I/O error while recovering is reported like one while writing (a
            # full disk as DiskFullError naming the path), not as a bare OSError.
            raise _open_error(exc, self.path, self.read_only) from exc

    def _open_sync(self) -> None:
        fs = self.fs
        if self.read_only:
            if not os.path.isdir(self.path):
                with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                    os.stat(self.path)  # a directory this user may not look into: StorePermissionError, not "no store"
                if os.path.lexists(self.path):
                    raise InvalidInputError(not_a_directory(self.path))
                raise SessionDBError(f"no store at {self.path}: the directory does not exist")
        else:
            self._refuse_foreign_directory()
            missing = missing_directories(self.path)  # each new directory's entry is fsynced in its parent
            try:
                created = fs.makedirs(self.path)
            except (FileExistsError, NotADirectoryError):
                raise InvalidInputError(not_a_directory(self.path)) from None
            for directory in (missing or [self.path]) if created else []:
                fs.fsync_directory(os.path.dirname(directory))
        if not self.read_only:
            warn_if_network_file_system(self.path)
            try:
                self.locks.open_shared()
            except BlockingIOError:
                self.locks.close()
                raise StoreLockedError(
                    f"store {self.path} is held exclusively by a maintenance command in another process "
                    "(sessiondb repair); wait for it to finish, or open this one read-only"
                ) from None
            # Recovery may cut a torn tail and remove temp files: only the write lock's holder may.
            self.locks.wait_write()
        try:
            with gc_paused():
                # Other processes' snapshot and checkpoint temp files are theirs while they compact.
                compacting = not self.read_only and self.locks.try_compact()
                try:
                    self._recovery.run(remove_compaction_temps=compacting)
                finally:
                    self.locks.release_compact()
                if not self.segments.segments and not self.read_only:
                    self.segments.create(1, 1)
                if self.segments.segments and not self.read_only:
                    self.segments.open_active()
        except BaseException:
            self._release()
            raise
        finally:
            self.locks.release_write()

    def _refuse_foreign_directory(self) -> None:
        """Refuse to turn a directory that holds other things into a store.

        A mistyped path (a home or project directory) would otherwise get a ``LOCK`` and
        a segment among the user's files. Like git's ``init``, a store is created only in a
        new or empty directory; one that already holds a store file is a store.
        """
        if not self.fs.isdir(self.path):
            return
        names = [name for name in self.fs.listdir(self.path) if not name.startswith(".")]
        if not names or any(_is_store_file(name) for name in names):
            return
        shown = ", ".join(sorted(names)[:3]) + (", …" if len(names) > 3 else "")
        raise InvalidInputError(
            f"{self.path} is not a sessiondb store and is not empty (it holds {shown}); "
            "a store is created only in a new or empty directory: give another path"
        )

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            # The next open then scans nothing. One process at a time writes checkpoints, and
            # only one that knows the whole log and every snapshot file as they are now.
            # Not after a failed open: its locks were never taken, or were released already.
            if not self.read_only and self._broken is None and self.locks.is_open and self.locks.try_compact():
                try:
                    self._follower.catch_up(locked=False)
                    self._resync_directory()
                except (OSError, SessionDBError):
                    pass  # no checkpoint then: it only saves the next open a scan
                else:
                    self.checkpoints.close(self.read_only, self._broken is not None)
                finally:
                    self.locks.release_compact()
        finally:
            self._release()

    def _release(self) -> None:
        self._write_thread.stop()  # waits for a write in flight (only after a loop closed mid-batch)
        self.segments.release()
        self.locks.close()

    def release_orphaned(self) -> None:
        """The loop this store served is closed (``Store.aclose`` from another loop): unlock and close now."""
        if not self._closed:
            self._closed = True  # no checkpoint: the next open scans what follows the last one
            self._release()

    def abandon(self) -> None:
        """In a child made by ``fork()``: drop every descriptor without unlocking (the locks are the parent's)."""
        self._closed = True
        self._write_thread.abandon()
        self.locks.abandon()
        self.segments.abandon()

    # ------------------------------------------------------------------ writing

    async def commit(self, batch: Sequence[AppendRequest]) -> None:
        if self._broken is not None:
            raise self._broken
        if self.read_only:
            # Each refused append fails alone: raising here would mark the store broken.
            for request in batch:
                request.error = InvalidInputError(
                    f"store {self.path} was opened read-only; open it for writing to append to "
                    f"session {request.session_id!r}"
                )
            return
        # A lock taken must be released, and once bytes may be on disk the index must learn
        # where they are: nothing from taking the write lock to the bookkeeping may be cancelled.
        turn = self._write_turn
        if turn.locked():  # this process's retention is under the lock: wait for our turn, shielded
            with anyio.CancelScope(shield=True):
                async with self._write_lock():
                    await self._commit_locked(batch)
            return
        # The common case, without a context manager or an anyio cancel scope per batch (together
        # a third of a one-append batch's CPU): our turn is free (acquire() takes it without
        # yielding), WRITE.lock is taken without a thread hop unless another process holds it,
        # and the one await that remains, the write's, is shielded by _commit_locked itself.
        await turn.acquire()
        try:
            try:
                if not self.locks.try_write():
                    # A lock taken in a thread must never be left behind: run_to_completion returns (or
                    # raises a cancellation) only after the thread did, and the finally releases it.
                    await run_to_completion(self.locks.wait_write)
                await self._commit_locked(batch)
            finally:
                self.locks.release_write()
        finally:
            turn.release()

    @contextlib.asynccontextmanager
    async def _write_lock(self) -> AsyncIterator[None]:
        """Hold ``WRITE.lock``: this process's writer and its retention take turns first (one descriptor)."""
        async with self._write_turn:
            try:
                if not self.locks.try_write():  # a lock taken in a thread is released below, cancelled or not
                    await run_to_completion(self.locks.wait_write)
                yield
            finally:
                self.locks.release_write()

    async def _commit_locked(self, batch: Sequence[AppendRequest]) -> None:
        """Under the write lock: catch up on other processes' frames, plan against the current heads, write."""
        try:
            try:
                self._follower.catch_up(locked=True)
            except FellBehindError:
                await self._rebuild_locked()
            self.segments.follow_active()
        except ResourceExhaustedError as exc:
            # The system refused a descriptor or a read before anything was written, and the
            # index holds whole frames only: this batch fails alone, the store stays usable.
            for request in batch:
                request.error = exc
            return
        except (OSError, SessionDBError) as exc:
            self._broken = _broken_error(exc, self.segments.active.path)
            raise self._broken from exc
        plan = plan_batch(self.index, batch, self.max_event_bytes)
        if not plan.frame.count:
            return
        data, header_length = plan.frame.finish()
        self._idle.clear()
        try:
            # One thread of our own, not anyio.to_thread or an executor: see _write_thread.py.
            job = self._write_thread.submit(
                asyncio.get_running_loop(), self._write_and_unlock, data, plan.frame.first_position
            )
            future = job.future
            cancelled = False
            while True:
                try:
                    segment, offset = await future
                    break
                except asyncio.CancelledError:
                    # A queued job always runs, so the frame may be on disk: the index learns it
                    # before the cancellation goes on (task.cancel() or an anyio scope alike).
                    cancelled = True
                    future = job.wait_again()
                except BaseException as exc:
                    self._broken = _broken_error(exc, self.segments.active.path)
                    raise self._broken from exc
            self.index.apply(plan.frame, plan.admitted, plan.new_streams, segment, offset + header_length, len(data))
            if cancelled:
                raise asyncio.CancelledError
        finally:
            self._idle.set()

    def _write_and_unlock(self, data: bytes, first_position: int) -> tuple[Segment, int]:
        """In a worker thread: write and fdatasync the frame, then let the next process write at once."""
        try:
            return self.segments.write_frame(data, first_position)
        finally:
            self.locks.release_write()

    # ------------------------------------------------------------------ following other processes

    async def _refresh(self) -> None:
        """Make a read current: learn what other processes appended before it started."""
        if self._unrebuildable is not None:
            raise self._unrebuildable  # its view is stale and could not be rebuilt: serve nothing from it
        if self._closed or self._broken is not None:
            # A broken store serves what it knew: past its own failed batch the bytes are not
            # another process's (the failed frame is whatever reached the file, never acknowledged).
            return
        follower = self._follower
        # An I/O error here is the reader's, like one while reading its events.
        if not follower.advanced():
            return
        # This process's own batch in flight is not another's. A loop, not one wait: a waiter
        # resumes a loop pass after set(), and by then the writer may have cleared it again and
        # handed its next frame to the write thread, whose bytes the catch-up would take for
        # another process's (then Index.apply would index them a second time).
        while not self._idle.is_set():
            await self._idle.wait()
        try:
            follower.catch_up(locked=False)
        except FellBehindError:
            await self._catch_up_after_falling_behind()

    async def _catch_up_after_falling_behind(self) -> None:
        """A read found this process behind retention: rebuild under WRITE.lock, unless another task just did."""
        if self.read_only:
            async with self._rebuild_turn:
                try:
                    self._follower.catch_up(locked=False)
                except FellBehindError:
                    await self._rebuild()
            return
        async with self._write_lock():
            try:
                self._follower.catch_up(locked=True)
            except FellBehindError:
                await self._rebuild_locked()

    async def _rebuild_locked(self) -> None:
        """Under WRITE.lock: rebuild, then cut a dead writer's torn tail the read-only rebuild left, as a batch does."""
        await self._rebuild()
        self._follower.catch_up(locked=True)

    async def _rebuild(self) -> None:
        """This process fell behind retention: rebuild its index from the store's files, as open does.

        The caller holds WRITE.lock (a read-only store: nothing), so no process appends or
        removes a segment meanwhile and nothing another process acknowledged is missed.
        The scan changes nothing on disk; the parts take its result in one step on the loop.
        A rebuild that fails for lack of descriptors or memory fails only its caller; one
        that fails on the files (corruption, a newer format, a log cut short) leaves this
        process refusing reads and appends with ``StoreBrokenError``.
        """
        try:
            view = await self._scan_for_rebuild()
        except ResourceExhaustedError:
            raise
        except OSError as exc:
            if exc.errno in RESOURCE_ERRNOS:
                raise resource_error(exc, f"rebuilding the index of store {self.path}") from exc
            raise self._cannot_rebuild(exc) from exc
        except SessionDBError as exc:
            raise self._cannot_rebuild(exc) from exc
        # Reads in worker threads look at the segment set as they go: let them finish on the old view.
        while self._threads_reading:
            self._no_threads_reading.clear()
            await self._no_threads_reading.wait()
        if self._closed:
            raise StoreClosedError("the store was closed while this process rebuilt its index")
        try:
            learned = adopt_view(view, self.index, self.segments, self.snapshots, self.checkpoints, self._recovery)
        except StoreBrokenError as exc:
            raise self._cannot_rebuild(exc) from exc
        self._rebuilds += 1
        self._view_generation += 1
        self._follower.foreign_records += max(learned, 1)  # subscribers look at the log again
        _logger.warning(
            "store %s: this process fell behind (other processes' retention removed the segments it had not read "
            "yet); its index was rebuilt from the checkpoint, snapshots and remaining segments (%d events learned). "
            "Keep more segments (CompactionSettings.keep_segments) for processes that idle beside heavy writers",
            self.path,
            learned,
        )

    async def _scan_for_rebuild(self) -> RebuiltView:
        for _ in range(_REBUILD_ATTEMPTS - 1):
            try:
                return await run_to_completion(build_view, self.path, self.fs, self.segment_bytes)
            except FileNotFoundError:
                if not self.read_only:
                    raise  # under WRITE.lock nothing is removed: a real fault (reported below)
                # Removed under the scan by another process's retention: look again.
        return await run_to_completion(build_view, self.path, self.fs, self.segment_bytes)

    def _cannot_rebuild(self, exc: BaseException) -> StoreBrokenError:
        """A rebuild failed on the files: refuse reads and appends from now on (they would use a stale view)."""
        error = StoreBrokenError(
            f"this process fell behind store {self.path} (other processes' retention removed the segments it had "
            f"not read yet), and rebuilding its index from the store's files failed: {exc}. Its view is stale, so "
            "it refuses reads and appends (none was written since); close the store and open it again once the "
            "cause is fixed (the open recovers the same way)"
        )
        self._unrebuildable = self._broken = error
        return error

    async def _in_thread(self, function: Callable[..., _T], *args: Any) -> _T:
        """Run a read of the parts in a worker thread, counted: a rebuild waits for it before replacing them.

        ``run_to_completion``: a cancelled caller waits for the thread, so the count never drops early.
        """
        self._threads_reading += 1
        try:
            return await run_to_completion(function, *args)
        finally:
            self._threads_reading -= 1
            if not self._threads_reading:
                self._no_threads_reading.set()

    @property
    def has_other_writers(self) -> bool:
        """True once this process has seen events that another process appended."""
        return self._follower.foreign_records > 0

    async def wait_for_new_events(self, after_position: int, timeout: float) -> int:
        """Subscription hint: the newest position once events of other processes arrived, else ``after_position``.

        One look at the log's end (an ``fstat`` and a ``stat``) after a pause of a few
        milliseconds (at most ``timeout``): the subscription poller calls it in a loop
        while subscribers wait, checking between calls that some are left. This process's
        own batches reach subscribers through the batch listener instead.
        """
        await anyio.sleep(min(timeout, _FOLLOW_POLL_SECONDS))
        await self._refresh()
        learned = self._follower.foreign_records
        if learned != self._foreign_reported:
            self._foreign_reported = learned
            return max(self.last_position, after_position + 1)
        return after_position

    def _resync_directory(self) -> bool:
        """Learn what other processes' compaction changed: snapshot files, and segments retention removed."""
        # The sealed segments known *before* the listing: the loop may adopt segments others rolled
        # while this thread lists and reads snapshot headers, and those are not in the listing.
        sealed = self.segments.segments[:-1]
        names = self.fs.listdir(self.path)
        changed = self.snapshots.resync(names)
        present = set(names)
        for segment in sealed:
            if segment.number not in self.segments.removed and os.path.basename(segment.path) not in present:
                self.segments.forget_removed(segment)
                changed = True
        return changed

    def _resync_and_refresh_records(self) -> None:
        self._resync_directory()
        self.retention.refresh()

    async def resync(self) -> bool:
        """After ``HistoryUnavailableError``: learn other processes' snapshots and removals; True if any."""
        if self._closed:
            return False
        changed = await self._in_thread(self._resync_directory)
        if changed:
            self._view_generation += 1
        return changed

    @property
    def view_generation(self) -> int:
        return self._view_generation

    async def begin_maintenance(self) -> bool:
        """Take the compaction lock for a pass (False when another process holds it) and look around first."""
        if self.read_only or self._closed or not self.locks.try_compact():
            return False
        try:
            await self._refresh()
            await self._in_thread(self._resync_and_refresh_records)
        except BaseException:
            self.locks.release_compact()
            raise
        return True

    def end_maintenance(self) -> None:
        self.locks.release_compact()

    # ------------------------------------------------------------------ reading

    async def info(self, session_id: str) -> SessionInfo | None:
        await self._refresh()
        stream = self.index.streams.get(session_id)
        return stream.info.copy() if stream is not None else None

    async def list_sessions(self) -> list[SessionInfo]:
        await self._refresh()
        return [s.info.copy() for s in self.index.streams.values() if not s.info.deleted]

    async def page_sessions(
        self, query: SessionQuery, limit: int | None, after: SortKey | None = None
    ) -> list[SessionInfo]:
        await self._refresh()
        streams = self.index.streams
        ids = self.index.labels.candidates(query)
        if ids is None:
            infos: Iterable[SessionInfo] = [stream.info for stream in streams.values()]
        else:
            infos = [streams[session_id].info for session_id in ids]
        return [info.copy() for info in select_sessions(infos, query, limit, after)]

    @property
    def last_position(self) -> int:
        return self.index.next_position - 1

    async def read_session(self, session_id: str, after_version: int, up_to_version: int | None) -> list[RecordedEvent]:
        await self._refresh()
        stream = self.index.streams.get(session_id)
        if stream is None:
            raise SessionNotFoundError(session_id)
        floor = self.index.floors.get(session_id)
        if floor is not None and after_version + 1 < floor and (up_to_version is None or up_to_version > after_version):
            # Versions retention removed. A stream rebuilt by a scan after retention starts above them
            # (its base is the first version left), so the clamp below would skip them in silence.
            raise HistoryUnavailableError(
                unavailable(session_id, after_version + 1, floor), session_id=session_id, first_available=floor
            )
        first = max(after_version - stream.base, 0)
        last = (
            len(stream.locations) if up_to_version is None else min(up_to_version - stream.base, len(stream.locations))
        )
        if last <= first:
            return []
        # HistoryUnavailableError where retention removed it.
        self.index.check_history(session_id, stream, first, self.segments)
        locations = stream.locations[first:last]
        lengths = stream.lengths[first:last]
        if last - first > _THREAD_READ_THRESHOLD:
            return await self._in_thread(self._reader.read_locations_paused, locations, lengths)
        return self._reader.read_locations(locations, lengths)

    async def read_all(self, after_position: int, limit: int) -> list[RecordedEvent]:
        await self._refresh()
        if after_position >= self.last_position or limit <= 0:
            return []
        first_available = self.first_available_position()
        if after_position + 1 < first_available:
            raise HistoryUnavailableError(
                f"positions {after_position + 1}..{first_available - 1} of store {self.path} were removed by "
                f"retention; read from after={first_available - 1}"
            )
        return await self._in_thread(self._reader.read_all_sync, after_position, limit, self.last_position)

    def first_available_position(self) -> int:
        return self.segments.first_available_position(self.index.next_position)

    # ------------------------------------------------------------------ snapshots and storage compaction

    @property
    def supports_snapshots(self) -> bool:
        return not self.read_only

    async def write_snapshot(
        self, session_id: str, version: int, data: bytes, holds: frozenset[str] | None = None
    ) -> bool:
        if self.read_only:
            return False
        if self._broken is not None:
            raise self._broken
        await self.snapshots.write(session_id, version, data, holds)
        return True

    def record_projections(self, names: Collection[str]) -> list[str]:
        """Durably record snapshotted projections (a few small files, at most once each); the new ones."""
        if self.read_only or self._closed:
            return []
        return [name for name in names if self.projection_records.record(name)]

    def recorded_projections(self) -> frozenset[str]:
        """The snapshotted projections recorded in this store (read from the directory now)."""
        return self.projection_records.names()

    def forget_projection(self, name: str) -> bool:
        """Remove the record of a projection; retention then stops keeping history for its state."""
        if self.read_only:
            raise InvalidInputError(f"store {self.path} was opened read-only; open it for writing to forget {name!r}")
        return self.projection_records.forget(name)

    async def read_snapshot(self, session_id: str, max_version: int) -> tuple[int, bytes] | None:
        return await self.snapshots.read(session_id, max_version)

    def snapshot_versions(self) -> dict[str, tuple[int, int]]:
        return self.snapshots.versions()

    def snapshot_candidates(self, min_events: int, min_bytes: int, state_ratio: float) -> list[tuple[str, int]]:
        return self.snapshots.candidates(self.index, min_events, min_bytes, state_ratio)

    def retention_needs(self, keep_segments: int, keep_seconds: float | None) -> dict[str, int]:
        return self.retention.needs(keep_segments, keep_seconds)

    async def compact_storage(self, settings: Any) -> dict[str, Any]:
        """Delete covered sealed segments (after a checkpoint that no longer lists them) and checkpoint."""
        if self.read_only or self._broken is not None:
            return {}
        # Segments are unlinked under the write lock, so no process opening the store scans them meanwhile.
        async with self._write_lock():
            return await self.retention.run_pass(settings)

    async def seal_active_segment(self) -> bool:
        """Roll the active segment if it holds a record, so a purge's retention may delete it like any sealed one."""
        if self.read_only or self._broken is not None:
            return False
        sealed = False
        with anyio.CancelScope(shield=True):  # like a batch: a roll once begun must finish or break the store
            async with self._write_lock():
                try:
                    self._follower.catch_up(locked=True)
                except FellBehindError:
                    await self._rebuild_locked()
                self.segments.follow_active()
                active = self.segments.active
                if active.first_position < self.index.next_position:  # it holds a record
                    try:
                        await run_to_completion(self.segments.roll, self.index.next_position)
                    except asyncio.CancelledError:
                        raise  # the roll did not start, or finished: the store is as sound as before
                    except BaseException as exc:
                        self._broken = _broken_error(exc, active.path)
                        raise self._broken from exc
                    sealed = True
        return sealed

    async def write_checkpoint(self, exclude: set[int] | None = None) -> int:
        return await self.checkpoints.write(exclude)

    # ------------------------------------------------------------------ statistics

    def statistics(self) -> dict[str, Any]:
        segments = self.segments
        live = segments.live()
        index = self.index
        return {
            "batches": index.batches,
            "events": index.events,
            "bytes_written": index.bytes_written,
            "segments_created": segments.segments_created,
            "sessions": sum(1 for s in index.streams.values() if not s.info.deleted),
            "last_position": self.last_position,
            **self.snapshots.stats,
            **self.checkpoints.stats,
            "segments_deleted": segments.segments_deleted,
            "bytes_reclaimed": self.retention.bytes_reclaimed,
            # Counted without the segments retention removed.
            "segments": len(live),
            "segments_sealed": (segments.segments[-1].number - 1) if segments.segments else 0,
            "log_bytes": sum(s.size for s in live),
            "snapshots": len(self.snapshots.newest),
            "snapshot_bytes": sum(size for _, size in self.snapshots.newest.values()),
            "first_available_position": self.first_available_position(),
            "index_rebuilds": self._rebuilds,
        }


def _is_store_file(name: str) -> bool:
    return (
        name in LOCK_FILES
        or segment_number(name) is not None
        or name == CHECKPOINT_NAME
        or (name.startswith(SNAPSHOT_PREFIX) and SNAPSHOT_SUFFIX in name)
        or is_projection_record(name)
    )


def _open_error(
    exc: OSError, path: str, read_only: bool = False
) -> StoreBrokenError | ResourceExhaustedError | StorePermissionError:
    where = exc.filename if isinstance(exc.filename, str) else path
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        where = refusing_directory(where)
        if read_only:
            advice = "run as the store's owner, or have it opened with modes that let this user read"
            return StorePermissionError(
                f"cannot read store {path}: {where} refused this user ({exc.strerror}); {advice} "
                "(open_store(..., file_mode=0o640, dir_mode=0o750) and a shared group)",
                where,
            )
        if not os.path.isdir(path):
            return StorePermissionError(
                f"cannot create store {path}: {where} refused this user ({exc.strerror}); "
                "choose a directory this user may write",
                where,
            )
        return StorePermissionError(
            f"cannot open store {path} for writing: {where} refused this user ({exc.strerror}); "
            "open it with read_only=True to read it, or run as the store's owner to change it",
            where,
        )
    if exc.errno in RESOURCE_ERRNOS:
        return resource_error(exc, f"opening store {path} (at {where})")
    if exc.errno == errno.ENOSPC:
        return DiskFullError(
            f"the disk holding {where} is full, so store {path} could not be opened; free space and retry"
        )
    return StoreBrokenError(
        f"opening store {path} failed at {where} ({exc.strerror or exc!r}); fix the cause and open it again"
    )


def _broken_error(exc: BaseException, path: str) -> StoreBrokenError:
    if isinstance(exc, StoreBrokenError):
        return exc
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return DiskFullError(
            f"the disk holding {path} is full; nothing after the last acknowledged append was kept. "
            "Free space, then reopen the store"
        )
    return StoreBrokenError(
        f"writing {path} failed ({exc!r}); the store refuses writes until it is reopened, "
        "which recovers everything that was acknowledged"
    )


__all__ = ["DEFAULT_MAX_EVENT_BYTES", "DEFAULT_SEGMENT_BYTES", "LOCK_NAME", "LocalBackend"]
