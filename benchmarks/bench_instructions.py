"""Instructions per durable append under callgrind: sessiondb against the raw group-commit loop.

`python -m benchmarks.bench_instructions [--systems sessiondb,raw] [--sessions 200]`

Needs valgrind (Debian's package). An instruction count is repeatable to well under
1% whatever else the machine does, which timings on shared cores are not. Each
system runs ``bench_cpu``'s fixed work (N sessions, each agent loop awaiting every
append of small events) twice under ``valgrind --tool=callgrind``, with a few and
with many appends per session; the difference divided by the extra appends is the
cost of one append, with start-up and imports cancelled out. User space only:
system calls are not counted (``bench_cpu`` measures them as time). At one
session every append is a batch of its own, so the figure includes a batch's
whole cost: the thread hop, the lock, the catch-up on other processes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def instructions(system: str, sessions: int, appends: int) -> int:
    """Instructions callgrind counted for one fresh process doing ``sessions`` x ``appends`` appends."""
    with tempfile.TemporaryDirectory(prefix="sessiondb-callgrind-") as directory:
        spec = {"system": system, "dir": directory, "sessions": sessions, "appends": appends, "mix": "small"}
        done = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--callgrind-out-file=/dev/null",
                sys.executable,
                "-m",
                "benchmarks.bench_cpu",
                "--child",
                json.dumps(spec),
            ],
            cwd=HERE.parent,
            env={**os.environ, "PYTHONHASHSEED": "0"},  # the same dict layouts in every run
            capture_output=True,
            text=True,
            check=False,
        )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode or found is None:
        raise RuntimeError(f"{system} under callgrind failed: {done.stderr[-800:]}")
    return int(found.group(1))


def per_append(system: str, sessions: int) -> float:
    few, many = (100, 600) if sessions == 1 else (10, 90)
    extra = sessions * (many - few)
    return (instructions(system, sessions, many) - instructions(system, sessions, few)) / extra


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_instructions", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--systems", default="sessiondb,raw,sessiondb-uvloop,raw-uvloop")
    parser.add_argument("--sessions", default="200,1", help="comma-separated session counts")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        parser.error("valgrind is not installed (Debian: apt-get install valgrind)")
    systems = [s for s in args.systems.split(",") if s]
    print("Instructions per durable append (callgrind, user space), small events")
    for sessions in (int(s) for s in args.sessions.split(",")):
        counts = {system: per_append(system, sessions) for system in systems}
        print(f"{sessions:>6,} sessions:  " + "  ".join(f"{s} {c:,.0f}" for s, c in counts.items()))
        for loop in ("", "-uvloop"):
            db, raw = counts.get("sessiondb" + loop), counts.get("raw" + loop)
            if db and raw:
                print(f"    sessiondb{loop} / raw{loop}: {db / raw:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
