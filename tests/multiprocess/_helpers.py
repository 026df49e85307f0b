"""Talking to ``_child.py`` processes: wait for a line with a bound, collect the result, fail fast on an early exit."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from typing import Any

import msgspec

import sessiondb


async def wait_line(
    process: subprocess.Popen[str], prefix: str, timeout: float = 60.0, skipped: list[str] | None = None
) -> str:
    """The next stdout line starting with ``prefix``; fails at once (with stderr) if the child exits first.

    Lines before it are appended to ``skipped`` when given.
    """
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    while True:
        try:
            # On a timeout the reading thread stays blocked until the fixture kills the child.
            line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), deadline - time.monotonic())
        except TimeoutError:
            raise AssertionError(f"child {process.args[2:4]} printed no {prefix!r} within {timeout} s") from None
        if not line:
            process.wait(timeout=30)
            assert process.stderr is not None
            errors = process.stderr.read()[-3000:]
            raise AssertionError(f"child {process.args[2:4]} exited ({process.returncode}) before {prefix!r}: {errors}")
        if line.startswith(prefix):
            return line[len(prefix) :].strip()
        if skipped is not None:
            skipped.append(line)


async def result_of(
    process: subprocess.Popen[str], timeout: float = 120.0, skipped: list[str] | None = None
) -> dict[str, Any]:
    """The child's ``RESULT`` (it then exits); the lines before it go to ``skipped`` when given."""
    result: dict[str, Any] = json.loads(await wait_line(process, "RESULT ", timeout, skipped))
    await asyncio.to_thread(process.wait, 30)
    return result


async def create_sessions(target: str, session_ids: list[str]) -> None:
    async with sessiondb.open_store(target) as store:
        for session_id in session_ids:
            await store.create_session(session_id=session_id)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] if ordered else float("nan")


def message_texts(session: sessiondb.Session) -> list[str | None]:
    """The text of each live message of a session (None for a message without a text block)."""
    texts: list[str | None] = []
    for message in session.messages:
        text = None
        for block in message.blocks:
            if isinstance(block, sessiondb.Text):
                text = block.text
                break
        texts.append(text)
    return texts


async def store_view(store: sessiondb.Store, queries: list[str]) -> dict[str, Any]:
    """What one process's store shows: listings and their filters, every session's state, the readable
    log, search results. Two processes whose views are equal agree on everything a user can read."""
    infos = await store.list_sessions()
    view: dict[str, Any] = {"sessions": msgspec.to_builtins(infos)}
    scopes = sorted({info.scope for info in infos if info.scope is not None})
    tags = sorted({tag for info in infos for tag in info.tags})
    view["by_scope"] = {scope: [i.session_id for i in await store.list_sessions(scope=scope)] for scope in scopes}
    view["by_tag"] = {tag: [i.session_id for i in await store.list_sessions(tag=tag)] for tag in tags}
    view["pinned"] = [info.session_id for info in await store.list_sessions(pinned=True)]
    view["titled"] = [info.session_id for info in await store.list_sessions(title="title", order="title")]
    view["loaded"] = {info.session_id: msgspec.to_builtins(await store.load(info.session_id)) for info in infos}
    first = store.statistics()["first_available_position"]
    events: list[list[Any]] = []
    after = first - 1
    while page := await store.read_all(after=after):
        events += [[r.position, r.session_id, r.version] for r in page]
        after = page[-1].position
    view["log"] = events
    view["search"] = {
        query: [
            [h.session_id, h.version, h.position] for h in (await store.search(query, order="newest", limit=1000)).hits
        ]
        for query in queries
    }
    return dict(json.loads(json.dumps(view)))  # as another process reports it (tuples become lists)
