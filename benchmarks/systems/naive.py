"""The naive design: one JSONL file per session, open/append/fsync/close per message in a thread pool."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgspec

from benchmarks.records import Record
from benchmarks.systems.base import System
from benchmarks.systems.sessiondb_store import to_message
from sessiondb import Message

THREADS = 16  # fsyncs of different files overlap in the kernel; more threads stop helping past ~16 here


def _append(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fdatasync(fd)
    finally:
        os.close(fd)


def _create(path: str, directory: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.fsync(fd)
    os.close(fd)
    dir_fd = os.open(directory, os.O_RDONLY)
    os.fsync(dir_fd)
    os.close(dir_fd)


class NaiveSystem(System):
    def prepare(self, script: Sequence[Record]) -> None:
        encoder = msgspec.json.Encoder()
        self.lines = [encoder.encode(to_message(r)) + b"\n" for r in script]

    async def open(self, directory: Path) -> None:
        self.directory = directory / "sessions"
        self.directory.mkdir(parents=True, exist_ok=True)
        self.pool = ThreadPoolExecutor(THREADS)

    async def close(self) -> None:
        self.pool.shutdown(wait=True)

    def _path(self, key: str) -> str:
        return str(self.directory / f"{key}.jsonl")

    async def new_session(self, key: str) -> str:
        path = self._path(key)
        await asyncio.get_running_loop().run_in_executor(self.pool, _create, path, str(self.directory))
        return path

    async def append(self, handle: str, index: int) -> None:
        await asyncio.get_running_loop().run_in_executor(self.pool, _append, handle, self.lines[index])

    async def bulk_append(self, handle: str, indexes: Sequence[int]) -> None:
        for start in range(0, len(indexes), 1000):
            data = b"".join(self.lines[i] for i in indexes[start : start + 1000])
            await asyncio.get_running_loop().run_in_executor(self.pool, _append, handle, data)

    async def load(self, key: str) -> int:
        decoder = msgspec.json.Decoder(Message)
        with open(self._path(key), "rb") as file:
            return sum(1 for line in file.read().splitlines() if line and decoder.decode(line))

    async def list_sessions(self) -> int:
        return sum(1 for name in os.listdir(self.directory) if name.endswith(".jsonl"))

    def settings(self) -> dict[str, Any]:
        return {
            "durability": f"open(O_APPEND) + write + fdatasync + close per message, {THREADS} threads; "
            "file creation fsyncs the directory"
        }
