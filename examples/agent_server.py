"""sessiondb's main job, shown end to end: a server of agent loops killed mid-stream loses nothing.

Run with ``make demo`` (or ``python examples/agent_server.py``). The parent starts a
simulated agent server in a child process: 1,000 concurrent agent loops, each
creating a session and appending user, assistant (text, thinking, tool_use with
usage) and tool_result messages, printing every acknowledged version. After a few
seconds the parent kills the child with SIGKILL, reopens the store, and checks
that every acknowledged message is there.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict

import sessiondb
from sessiondb import Message, Text, Thinking, ToolResult, ToolUse, Usage

AGENTS = 1_000
RUN_SECONDS = 6.0

# --------------------------------------------------------------------------- the server (child)


def tool_output(rng: random.Random, turn: int) -> str:
    lines = [f"test_{turn}_{k} ... {'ok' if rng.random() > 0.1 else 'FAILED'}" for k in range(rng.randint(3, 40))]
    return "\n".join(lines)


async def agent_loop(store: sessiondb.Store, index: int, out: list[bytes], latencies: list[float]) -> None:
    rng = random.Random(index)
    session_id = await store.create_session(model="demo-model", workspace_root=f"/srv/project-{index % 10}")
    version = 1
    out.append(f"A {session_id} {version} session_started\n".encode())
    turn = 0
    while True:
        turn += 1
        tool_id = f"toolu_{index}_{turn}"
        messages = (
            ("user", Message.user(f"Turn {turn}: run the tests in module {rng.randint(1, 99)} and fix what fails.")),
            (
                "assistant",
                Message.assistant(
                    [
                        Thinking(f"The user wants turn {turn}; I should run pytest first.", signature="sig-demo"),
                        Text("Running the tests now."),
                        ToolUse(id=tool_id, name="bash", input=json.dumps({"command": f"pytest tests/m{turn}"})),
                    ],
                    usage=Usage(input_tokens=rng.randint(500, 5000), output_tokens=rng.randint(20, 400)),
                ),
            ),
            ("tool", Message.tool_result(tool_id, "bash", tool_output(rng, turn))),
        )
        for kind, message in messages:
            started = time.perf_counter()
            version = await store.append(session_id, message, expected_version=version)
            latencies.append(time.perf_counter() - started)
            out.append(f"A {session_id} {version} {kind}\n".encode())


async def serve(path: str) -> None:
    out: list[bytes] = []
    latencies: list[float] = []
    stdout = sys.stdout.buffer
    async with sessiondb.open_store(path) as store:
        tasks = [asyncio.create_task(agent_loop(store, i, out, latencies)) for i in range(AGENTS)]
        started = time.perf_counter()
        acknowledged = 0
        while True:  # the parent kills us; until then, report acknowledgements as they come
            await asyncio.sleep(0.02)
            if out:
                batch, out[:] = b"".join(out), []
                stdout.write(batch)
                acknowledged += batch.count(b"\n")
            if latencies:
                window = sorted(latencies)
                latencies.clear()
                elapsed = time.perf_counter() - started
                stdout.write(
                    f"S {elapsed:.3f} {acknowledged} {window[len(window) // 2] * 1e3:.3f} "
                    f"{window[int(len(window) * 0.99)] * 1e3:.3f} {store.statistics()['batches']}\n".encode()
                )
            stdout.flush()
        for task in tasks:  # pragma: no cover - unreachable: SIGKILL ends the process
            task.cancel()


# --------------------------------------------------------------------------- the demo (parent)


def render(session: sessiondb.Session, limit: int = 6) -> str:
    lines = [
        f"session {session.session_id}  model={session.model}  workspace={session.workspace_root}  "
        f"version={session.version}  messages={len(session.messages)}  tokens in/out="
        f"{session.usage.input_tokens}/{session.usage.output_tokens}"
    ]
    for message in session.messages[:limit]:
        for block in message.blocks:
            if isinstance(block, Text):
                body = block.text
            elif isinstance(block, Thinking):
                body = f"(thinking, {len(block.thinking)} chars)"
            elif isinstance(block, ToolUse):
                body = f"-> {block.name} {block.input}"
            elif isinstance(block, ToolResult):
                first = block.output.splitlines()[0] if block.output else ""
                body = f"<- {block.tool_name}: {first} ... ({len(block.output)} chars)"
            lines.append(f"  {message.role:>9}: {body[:100]}")
    if len(session.messages) > limit:
        lines.append(f"  ... {len(session.messages) - limit} more messages")
    return "\n".join(lines)


async def verify(path: str, acknowledged: dict[str, dict[int, str]]) -> None:
    opened = time.perf_counter()
    async with sessiondb.open_store(path) as store:
        open_seconds = time.perf_counter() - opened
        recovery = getattr(store.backend, "recovery", {})
        stats = store.statistics()
        print(
            f"reopened in {open_seconds * 1e3:.0f} ms: {stats['sessions']} sessions, "
            f"{stats['last_position']} events, torn tail cut: {len(recovery.get('truncated_tails', []))}"
        )
        missing = wrong = checked = 0
        for session_id, versions in acknowledged.items():
            recorded = {e.version: e async for e in store.read(session_id)}
            for version, kind in versions.items():
                checked += 1
                event = recorded.get(version)
                if event is None:
                    missing += 1
                    continue
                actual = (
                    "session_started" if isinstance(event.event, sessiondb.SessionStarted) else event.event.role  # type: ignore[union-attr]
                )
                if actual != kind:
                    wrong += 1
            versions_seen = sorted(recorded)
            if versions_seen != list(range(1, len(versions_seen) + 1)):
                wrong += 1
        status = "OK" if missing == wrong == 0 else "FAILED"
        print(f"checked {checked:,} acknowledged messages: {missing} missing, {wrong} wrong -> {status}")
        infos = await store.list_sessions()
        print("\na few sessions, as recovered:\n")
        for info in infos[:2]:
            print(render(await store.load(info.session_id)))
            print()
        sid = infos[0].session_id
        version = await store.append(sid, Message.user("Still there after the crash?"))
        print(f"the reopened store takes appends again: {sid} is now at version {version}")
        if status != "OK":
            raise SystemExit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--serve", metavar="DIR", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=RUN_SECONDS, help="how long the server runs before the kill")
    parser.add_argument("--store", help="store directory (default: a new temporary directory)")
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve))
        return
    path = args.store or os.path.join(tempfile.mkdtemp(prefix="sessiondb-demo-"), "store")
    print(f"store: {path}")
    print(f"starting a simulated agent server with {AGENTS:,} concurrent agent loops ...")
    child = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--serve", path], stdout=subprocess.PIPE, bufsize=0
    )
    assert child.stdout is not None
    acknowledged: dict[str, dict[int, str]] = defaultdict(dict)
    last_stats: list[str] = []
    deadline = None
    buffer = b""
    tty = sys.stdout.isatty()
    next_progress = 0.0
    while True:
        chunk = os.read(child.stdout.fileno(), 1 << 20)
        if not chunk:
            break
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            parts = line.decode().split(" ")
            if parts[0] == "A":
                acknowledged[parts[1]][int(parts[2])] = parts[3]
            elif parts[0] == "S":
                last_stats = parts
                if deadline is None:
                    deadline = time.monotonic() + args.seconds
                if time.monotonic() >= next_progress:
                    next_progress = time.monotonic() + (0.2 if tty else 1.0)
                    print(
                        ("\r" if tty else "") + f"  t={float(parts[1]):5.1f}s  acknowledged={int(parts[2]):>9,}  "
                        f"p50={float(parts[3]):6.2f} ms  p99={float(parts[4]):6.2f} ms",
                        end="" if tty else "\n",
                        flush=True,
                    )
        if deadline is not None and time.monotonic() >= deadline:
            child.send_signal(signal.SIGKILL)
            deadline = float("inf")
    child.wait()
    total = sum(len(v) for v in acknowledged.values())
    print(f"\n\nkilled the server with SIGKILL (exit status {child.returncode}) mid-stream.")
    if last_stats:
        elapsed, count, p50, p99, batches = (
            float(last_stats[1]),
            int(last_stats[2]),
            float(last_stats[3]),
            float(last_stats[4]),
            int(last_stats[5]),
        )
        print(
            f"the server saw {count / elapsed:,.0f} durable appends/s over {elapsed:.1f} s "
            f"({count / max(batches, 1):.0f} appends per fsync), "
            f"last window p50 {p50:.2f} ms, p99 {p99:.2f} ms"
        )
    print(f"it acknowledged {total:,} events across {len(acknowledged):,} sessions before it died.\n")
    asyncio.run(verify(path, acknowledged))
    print_where_to_look(path)


def print_where_to_look(path: str) -> None:
    """Where the store is, and the CLI commands that show it (the venv's own ``sessiondb``)."""
    script = os.path.join(os.path.dirname(sys.executable), "sessiondb")
    cli = script if os.path.exists(script) else f"{sys.executable} -m sessiondb"
    print(f"\nthe store is kept at {path}; look at it with the command line:")
    print(f"  {cli} ls {path}              # sessions, newest first")
    print(f"  {cli} show {path} SESSION    # one conversation")
    print(f"  {cli} stats {path}")
    print(f"  {cli} verify {path}")
    folder = os.path.dirname(script)
    print(f"(to type just `sessiondb`: source {os.path.relpath(folder)}/activate, or add {folder} to PATH)")


if __name__ == "__main__":
    main()
