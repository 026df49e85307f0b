"""The interface every benchmarked system implements, driven the same way for all."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.records import Record


class NotSupported(Exception):
    """The system has no API for this operation (the report says so instead of a number)."""


class System:
    """A storage system under test; each child process drives exactly one.

    Every ``append`` must return only once the record is durable in the system's
    recommended durable configuration. ``prepare`` converts the shared record
    script to native objects before any clock starts.
    """

    name: str
    uses_uvloop = False

    def __init__(self, name: str) -> None:
        self.name = name
        self.uses_uvloop = name.endswith("-uvloop")

    def prepare(self, script: Sequence[Record]) -> None:
        raise NotImplementedError

    async def open(self, directory: Path) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def new_session(self, key: str) -> Any:
        """Start a conversation; returns the handle the other calls take."""
        raise NotImplementedError

    async def end_session(self, handle: Any) -> None:
        """A conversation is over (its loop moves to a new one)."""

    async def append(self, handle: Any, index: int) -> None:
        """Append script record ``index`` to the session, durably."""
        raise NotImplementedError

    async def bulk_append(self, handle: Any, indexes: Sequence[int]) -> None:
        """Fill a session fast for the load benchmarks (untimed; may use a bulk API)."""
        for index in indexes:
            await self.append(handle, index)

    async def populate(self, keys: Sequence[str], script_size: int) -> None:
        """Create many small sessions (two messages each) for the listing benchmark (untimed)."""
        import asyncio

        semaphore = asyncio.Semaphore(64)

        async def make(i: int, key: str) -> None:
            async with semaphore:
                handle = await self.new_session(key)
                await self.bulk_append(handle, [(2 * i) % script_size, (2 * i + 1) % script_size])
                await self.end_session(handle)

        await asyncio.gather(*(make(i, key) for i, key in enumerate(keys)))

    async def load(self, key: str) -> int:
        """Read a session back the way the system resumes it; return how many messages it holds."""
        raise NotImplementedError

    async def list_sessions(self) -> int:
        """List every session; return how many."""
        raise NotImplementedError

    def burst_supported(self) -> str | None:
        """None, or why a burst of single-event writes into one session does not apply."""
        return None

    def settings(self) -> dict[str, Any]:
        """The durability configuration the system runs with (reported with the results)."""
        return {}
