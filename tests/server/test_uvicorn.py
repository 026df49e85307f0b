"""The example chat server (examples/chat_server.py) under real ``uvicorn --workers 4``, driven over loopback by
httpx while one worker process is SIGKILLed: every turn answered with HTTP 200 is in the store afterwards.

Both backends serve several processes: PostgreSQL, and a store directory whose workers each open it as one of
several writers (docs/multiprocess.md); the killed worker's lock is released by the kernel and a torn tail it
left is cut by the next writer."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

import sessiondb  # noqa: E402

pytestmark = [pytest.mark.anyio, pytest.mark.crash]
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
WORKERS = 4
CLIENTS = 16
RUN_SECONDS = 3.0
KILL_AFTER_SECONDS = 1.0
# Generous bounds for a loaded 2-core machine; only a broken server gets near them.
START_SECONDS = 60.0
REQUEST_SECONDS = 10.0
STOP_SECONDS = 20.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def children(pid: int) -> set[int]:
    """The direct child processes of ``pid`` (from /proc: every thread lists the children it started)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found.update(int(child) for child in (task / "children").read_text().split())
        except OSError:  # the thread ended meanwhile
            continue
    return found


@pytest.fixture
def uvicorn_server(store_target: str, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    """uvicorn with WORKERS workers serving the example app on a free loopback port; every process ends after."""
    port = free_port()
    log = tmp_path / "uvicorn.log"
    command = [sys.executable, "-m", "uvicorn", "--app-dir", str(EXAMPLES), "chat_server:app"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(WORKERS)]
    command += ["--log-level", "warning", "--timeout-graceful-shutdown", "2"]
    with log.open("wb") as output:
        server = subprocess.Popen(
            command,
            env={**os.environ, "SESSIONDB_STORE": store_target},
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the cleanup below reaches every worker
        )
    try:
        yield server, f"http://127.0.0.1:{port}", log
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)  # graceful: workers finish and close the store
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.wait(STOP_SECONDS)
        with contextlib.suppress(ProcessLookupError):  # whatever is left: the supervisor, workers, their helpers
            os.killpg(server.pid, signal.SIGKILL)
        server.wait()


async def serving_workers(client: httpx.AsyncClient, server: subprocess.Popen[bytes], log: Path) -> set[int]:
    """Wait until WORKERS distinct worker processes answer /health; their pids (children of the supervisor)."""
    deadline = time.monotonic() + START_SECONDS
    seen: set[int] = set()
    while True:
        text = log.read_text(errors="replace")
        if "Application startup failed" in text or server.poll() is not None:
            pytest.fail(f"uvicorn workers failed to start (exit {server.poll()}):\n{text[-3000:]}")
        workers = children(server.pid)
        try:
            # A new connection each time: a kept-alive one would always reach the same worker.
            answer = await client.get("/health", headers={"Connection": "close"})
            if answer.status_code == 200:
                seen.add(answer.json()["pid"])
        except httpx.TransportError:
            pass  # not listening yet
        if len(seen & workers) >= WORKERS:
            return seen & workers
        if time.monotonic() > deadline:
            pytest.fail(f"only {len(seen & workers)} of {WORKERS} workers answered within {START_SECONDS:g} s")
        await asyncio.sleep(0.05)  # polling a server that is starting up: nothing to await instead


async def chat(client: httpx.AsyncClient, name: str, stop: asyncio.Event, acknowledged: list[tuple[str, str]]) -> int:
    """One client's conversation: turns until ``stop``; returns how many requests failed (a killed worker)."""
    failures = 0
    turn = 0
    while not stop.is_set():
        turn += 1
        turn_id = f"{name}-{turn}"
        try:
            answer = await client.post(f"/sessions/{name}/turns", json={"turn_id": turn_id, "text": turn_id})
        except httpx.TransportError:
            failures += 1
            continue
        if answer.status_code == 200:
            acknowledged.append((name, turn_id))
        else:
            failures += 1
    return failures


@pytest.mark.parametrize(
    "store_target",
    [
        "directory",
        pytest.param("postgres", marks=pytest.mark.postgres),
    ],
    indirect=True,
)
async def test_acknowledged_turns_survive_a_killed_worker(
    store_target: str, uvicorn_server: tuple[subprocess.Popen[bytes], str, Path]
) -> None:
    server, url, log = uvicorn_server
    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_SECONDS) as client:
        workers = await serving_workers(client, server, log)
        stop = asyncio.Event()
        acknowledged: list[tuple[str, str]] = []
        clients = [asyncio.create_task(chat(client, f"client-{k}", stop, acknowledged)) for k in range(CLIENTS)]
        try:
            await asyncio.sleep(KILL_AFTER_SECONDS)  # a span of load before the kill, not a sequencing wait
            victim = min(workers)
            before_kill = len(acknowledged)
            os.kill(victim, signal.SIGKILL)
            await asyncio.sleep(RUN_SECONDS - KILL_AFTER_SECONDS)
        finally:
            stop.set()
            failures = await asyncio.wait_for(asyncio.gather(*clients), REQUEST_SECONDS * 2)
    assert before_kill > 0 and len(acknowledged) > before_kill, "the other workers must go on serving"
    server.send_signal(signal.SIGTERM)
    server.wait(STOP_SECONDS)

    async with sessiondb.open_store(store_target) as store:
        recorded: dict[str, list[str]] = {}
        for name in {name for name, _ in acknowledged}:
            session = await store.load(name)
            texts = [message.text for message in session.messages]
            assert texts[1::2] == [f"echo: {text}" for text in texts[::2]]  # each turn whole: user, then reply
            recorded[name] = texts[::2]
        for name, turn_id in acknowledged:
            assert recorded[name].count(turn_id) == 1, f"acknowledged turn {turn_id} is not in the store once"
    print(f"{len(acknowledged)} turns acknowledged, {sum(failures)} requests failed around the kill of {victim}")
