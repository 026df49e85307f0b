"""Python bytecodes executed per durable append, by function: sessiondb against the raw group-commit loop.

`python -m benchmarks.bench_opcodes [--sessions 200] [--appends 20] [--top 15]`

A count, not a time: the same on a loaded machine as on a quiet one, so it shows
where an append's CPU goes when the timings cannot (``bench_cpu`` measures the
seconds). Each system runs N sessions x M awaited appends (small events) in this
process; while the agent loops run, a trace function counts every bytecode the
interpreter executes (``frame.f_trace_opcodes``), per function. Work done in C
(msgspec's encoder, asyncio's C future, system calls) is not counted: the figure
is the interpreted part of an append, the part compiling or removing code changes.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sys
import tempfile
import threading
from collections.abc import Awaitable
from pathlib import Path
from types import FrameType
from typing import Any

from benchmarks.bench_cpu import _run


def count_opcodes(system: str, sessions: int, appends: int) -> collections.Counter[str]:
    """Bytecodes executed during the append phase, per ``file:function``."""
    counts: collections.Counter[str] = collections.Counter()

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        if event == "opcode":
            code = frame.f_code
            counts[f"{Path(code.co_filename).name}:{code.co_name}"] += 1
        return tracer

    real_gather = asyncio.gather

    async def traced_gather(*aws: Awaitable[Any], **kwargs: Any) -> Any:
        if len(aws) < sessions:  # only the agent loops' gather is the append phase
            return await real_gather(*aws, **kwargs)
        sys.settrace(tracer)
        threading.settrace(tracer)
        try:
            return await real_gather(*aws, **kwargs)
        finally:
            sys.settrace(None)
            threading.settrace(None)  # type: ignore[arg-type]

    asyncio.gather = traced_gather  # type: ignore[assignment]
    try:
        with tempfile.TemporaryDirectory(prefix="sessiondb-opcodes-") as directory:
            asyncio.run(_run(system, Path(directory), sessions, appends, "small"))
    finally:
        asyncio.gather = real_gather
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_opcodes", description=__doc__.splitlines()[0])
    parser.add_argument("--systems", default="sessiondb,raw")
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--appends", type=int, default=20, help="appends per session")
    parser.add_argument("--top", type=int, default=15, help="functions shown per system")
    args = parser.parse_args(argv)
    appends = args.sessions * args.appends
    totals = {}
    for system in args.systems.split(","):
        counts = count_opcodes(system, args.sessions, args.appends)
        totals[system] = sum(counts.values()) / appends
        print(f"{system}: {totals[system]:.0f} bytecodes per append ({args.sessions} sessions, small events)")
        for name, count in counts.most_common(args.top):
            print(f"  {count / appends:7.1f}  {name}")
    if "sessiondb" in totals and "raw" in totals:
        print(f"sessiondb / raw: {totals['sessiondb'] / totals['raw']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
