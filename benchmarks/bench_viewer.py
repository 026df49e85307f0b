"""The web viewer's server time: the session list of a 10,000-session store, pages of a 10,000-message session.

Run: ``python -m benchmarks.bench_viewer [--sessions N] [--messages N] [--repeat N] [--dir DIR]``

Requests go through the ASGI app in-process (httpx's ASGITransport): the time is the
server's (routing, store reads, timeline, template), not the network's. Beside each
page, the store call it cannot avoid, timed in the same run (``list_sessions`` for
the list, reading every event for the session page), so the ratio shows what the
viewer adds. Goal: every page well under 200 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

import sessiondb
from sessiondb import Message, Text, Thinking, ToolUse, Usage
from sessiondb.web import create_app

BIG = "big-session"


async def build(path: Path, sessions: int, messages: int) -> None:
    async with sessiondb.open_store(path) as store:
        for start in range(0, sessions, 500):

            async def one(n: int) -> None:
                sid = await store.create_session(model="bench", session_id=f"s{n:06}")
                await store.append(sid, Message.user(f"hello {n}"), Message.assistant("hi", usage=Usage(10, 2)))

            await asyncio.gather(*(one(n) for n in range(start, min(start + 500, sessions))))
        await store.create_session(model="bench", session_id=BIG)
        batch: list[Message] = []
        for n in range(messages):
            kind = n % 4
            if kind == 0:
                batch.append(Message.user(f"question {n} " + "words " * 20))
            elif kind == 1:
                blocks = [Thinking("thinking " * 10), Text("calling"), ToolUse(f"t{n}", "search", '{"q": "x"}')]
                batch.append(Message.assistant(blocks, usage=Usage(100, 20)))
            elif kind == 2:
                batch.append(Message.tool_result(f"t{n - 1}", "search", "result line\n" * 5))
            else:
                batch.append(Message.assistant("answer " * 30, usage=Usage(120, 40)))
            if len(batch) == 1000:
                await store.append(BIG, *batch)
                batch = []
        if batch:
            await store.append(BIG, *batch)


async def timed(call: Callable[[], Awaitable[object]], repeat: int) -> list[float]:
    await call()  # warm: templates compiled, caches filled
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def line(name: str, samples: list[float], baseline: list[float] | None = None) -> str:
    p50 = statistics.median(samples)
    p99 = sorted(samples)[max(0, int(len(samples) * 0.99) - 1)]
    text = f"{name:<44} p50 {p50:7.1f} ms   p99 {p99:7.1f} ms"
    if baseline is not None:
        text += f"   ({p50 / statistics.median(baseline):.2f}x the store call alone)"
    return text


async def measure(path: Path, repeat: int) -> None:
    async with sessiondb.open_store(path, read_only=True) as store:
        gc.freeze()  # as `sessiondb serve` does once the store is open
        transport = httpx.ASGITransport(app=create_app(store))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:

            async def get(url: str) -> None:
                response = await client.get(url)
                assert response.status_code == 200, (url, response.status_code)

            async def read_all() -> None:
                _ = [event async for event in store.read(BIG)]

            info = await store.session_info(BIG)
            listing_raw = await timed(store.list_sessions, repeat)
            reading_raw = await timed(read_all, repeat)
            results = [
                line("store.list_sessions()", listing_raw),
                line("GET /  (first 50 of the list)", await timed(lambda: get("/"), repeat), listing_raw),
                line(
                    "GET /?cursor=5000  (a later page)", await timed(lambda: get("/?cursor=5000"), repeat), listing_raw
                ),
                line("store.read(big session), every event", reading_raw),
                line(f"GET /s/{BIG}  (last page)", await timed(lambda: get(f"/s/{BIG}"), repeat), reading_raw),
                line(f"GET /s/{BIG}?page=1", await timed(lambda: get(f"/s/{BIG}?page=1"), repeat), reading_raw),
                line(
                    f"GET /s/{BIG}?v={info.version // 2}",
                    await timed(lambda: get(f"/s/{BIG}?v={info.version // 2}"), repeat),
                    reading_raw,
                ),
            ]
    sessions = len(listing_raw) and len(await _count(path))
    print(f"store: {sessions} sessions; {BIG}: {info.version} events; {repeat} requests each")
    print("\n".join(results))


async def _count(path: Path) -> list[object]:
    async with sessiondb.open_store(path, read_only=True) as store:
        return list(await store.list_sessions())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--dir", help="where to build the store (default: a temporary directory)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "store"
        started = time.perf_counter()
        asyncio.run(build(path, args.sessions, args.messages))
        print(f"built in {time.perf_counter() - started:.1f} s")
        asyncio.run(measure(path, args.repeat))


if __name__ == "__main__":
    main()
