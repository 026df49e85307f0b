"""CPU per durable append on a fixed amount of work: sessiondb against the raw group-commit loop.

`python -m benchmarks.bench_cpu [--sessions 1000] [--appends 40] [--repeat 5] [--mix small]`

Throughput on a shared machine swings with the disk and the neighbours; the CPU
time a process spends per append (user + system, all threads) swings much less,
and on the event loop's one thread it is what bounds throughput once the disk
keeps up. Each run is a fresh child process that opens a store in a temporary
directory, creates ``sessions`` sessions, then runs one agent loop per session
appending ``appends`` events each, awaiting every durable append, and reports
the process CPU of the append phase divided by the appends. The systems are
interleaved, and the best of ``repeat`` runs is kept (noise only ever adds CPU).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _run(system_name: str, directory: Path, sessions: int, appends: int, mix: str) -> dict[str, Any]:
    from benchmarks.records import MIXES
    from benchmarks.systems import load_system

    system = load_system(system_name)
    system.prepare(MIXES[mix](20261124, 4096))
    await system.open(directory)
    handles = [await system.new_session(f"s{i}") for i in range(sessions)]

    async def agent(i: int) -> None:
        handle = handles[i]
        for n in range(appends):
            await system.append(handle, (i * 7919 + n) % 4096)

    cpu = _cpu()
    wall = time.perf_counter()
    await asyncio.gather(*(agent(i) for i in range(sessions)))
    wall = time.perf_counter() - wall
    cpu = _cpu() - cpu
    await system.close()
    count = sessions * appends
    return {"cpu_us": cpu / count * 1e6, "per_s": count / wall}


def child(spec: dict[str, Any]) -> None:
    run = _run(spec["system"], Path(spec["dir"]), spec["sessions"], spec["appends"], spec["mix"])
    if spec["system"].endswith("-uvloop"):
        import uvloop

        result = uvloop.run(run)
    else:
        result = asyncio.run(run)
    sys.stdout.write(json.dumps(result) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_cpu", description=__doc__.splitlines()[0])
    parser.add_argument("--systems", default="sessiondb,raw,sessiondb-uvloop,raw-uvloop")
    parser.add_argument("--sessions", default="1000", help="comma-separated session counts")
    parser.add_argument("--appends", type=int, default=40, help="appends per session")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--mix", choices=("small", "agent"), default="small")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(json.loads(args.child))
        return 0
    systems = [s for s in args.systems.split(",") if s]
    print(
        f"CPU per durable append (µs, all threads; best of {args.repeat}), {args.mix} mix, {args.appends} per session"
    )
    for sessions in (int(s) for s in args.sessions.split(",")):
        best: dict[str, dict[str, float]] = {}
        for _ in range(args.repeat):
            for system in systems:
                with tempfile.TemporaryDirectory(prefix="sessiondb-cpu-") as directory:
                    spec = {
                        "system": system,
                        "dir": directory,
                        "sessions": sessions,
                        "appends": args.appends,
                        "mix": args.mix,
                    }
                    done = subprocess.run(
                        [sys.executable, "-m", "benchmarks.bench_cpu", "--child", json.dumps(spec)],
                        cwd=HERE.parent,
                        capture_output=True,
                        text=True,
                        check=False,
                    )
                if done.returncode:
                    print(f"{system}: failed: {done.stderr[-500:]}")
                    continue
                result = json.loads(done.stdout.strip().splitlines()[-1])
                if system not in best or result["cpu_us"] < best[system]["cpu_us"]:
                    best[system] = result
        line = [f"{sessions:>6,} sessions:"]
        for system in systems:
            if system in best:
                line.append(f"{system} {best[system]['cpu_us']:.2f} ({best[system]['per_s']:,.0f}/s)")
        print("  ".join(line))
        for loop in ("", "-uvloop"):
            db, raw = best.get("sessiondb" + loop), best.get("raw" + loop)
            if db and raw:
                print(f"    sessiondb{loop} / raw{loop} CPU per append: {db['cpu_us'] / raw['cpu_us']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
