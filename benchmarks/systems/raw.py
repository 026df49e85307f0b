"""The raw ceiling: a minimal asyncio group-commit loop over one file, nothing else.

N agent loops put (record, future) on a list and await the future; one writer task
takes everything pending, encodes it with msgspec as JSONL, and does one write plus
one fdatasync per batch in one thread hop, then resolves the futures. No index, no
versions, no checksums, no validation: the least work a durable shared log can do.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from benchmarks.records import Record
from benchmarks.systems.base import NotSupported, System
from benchmarks.systems.sessiondb_store import to_message
from sessiondb import Message


class RawRecord(msgspec.Struct, gc=False):
    s: str
    v: int
    e: Message


def _write_and_sync(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.fdatasync(fd)


class RawSystem(System):
    def prepare(self, script: Sequence[Record]) -> None:
        self.messages = [to_message(r) for r in script]

    async def open(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "raw.log"
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        dir_fd = os.open(directory, os.O_RDONLY)
        os.fsync(dir_fd)
        os.close(dir_fd)
        self.pending: list[tuple[RawRecord, asyncio.Future[None]]] = []
        self.wake = asyncio.Event()
        self.closing = False
        self.encoder = msgspec.json.Encoder()
        self.writer = asyncio.create_task(self._write_loop())

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        buffer = bytearray()
        while True:
            await self.wake.wait()
            self.wake.clear()
            if not self.pending:
                if self.closing:
                    return
                continue
            batch, self.pending = self.pending, []
            buffer.clear()
            for record, _ in batch:
                self.encoder.encode_into(record, buffer, -1)
                buffer += b"\n"
            await loop.run_in_executor(None, _write_and_sync, self.fd, bytes(buffer))
            for _, future in batch:
                if not future.done():
                    future.set_result(None)
            if self.pending:
                self.wake.set()

    async def close(self) -> None:
        self.closing = True
        self.wake.set()
        await self.writer
        os.close(self.fd)

    async def new_session(self, key: str) -> list[Any]:
        return [key, 0]

    async def append(self, handle: list[Any], index: int) -> None:
        handle[1] += 1
        future = asyncio.get_running_loop().create_future()
        self.pending.append((RawRecord(handle[0], handle[1], self.messages[index]), future))
        self.wake.set()
        await future

    async def bulk_append(self, handle: list[Any], indexes: Sequence[int]) -> None:
        chunk = []
        for index in indexes:
            handle[1] += 1
            chunk.append(RawRecord(handle[0], handle[1], self.messages[index]))
            if len(chunk) == 1000:
                await self._append_chunk(chunk)
                chunk = []
        if chunk:
            await self._append_chunk(chunk)

    async def _append_chunk(self, chunk: list[RawRecord]) -> None:
        futures = []
        for record in chunk:
            future = asyncio.get_running_loop().create_future()
            self.pending.append((record, future))
            futures.append(future)
        self.wake.set()
        await asyncio.gather(*futures)

    async def load(self, key: str) -> int:
        # The ceiling for a resume: read the file and decode this session's records.
        decoder = msgspec.json.Decoder(RawRecord)
        data = self.path.read_bytes()
        return sum(1 for line in data.splitlines() if line and decoder.decode(line).s == key)

    async def list_sessions(self) -> int:
        raise NotSupported("no index: listing would be a full scan")

    def settings(self) -> dict[str, Any]:
        return {"durability": "one file, O_APPEND; one write + one fdatasync per batch in one executor hop"}
