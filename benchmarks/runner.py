"""`python -m benchmarks`: plan the runs, spawn one child per system and workload, show progress, write the report."""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import subprocess
import sys
import tempfile
import time
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from benchmarks import report
from benchmarks.machine import describe
from benchmarks.systems import LABELS, SYSTEMS

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# Peers' import names, to skip a row when its package is not installed.
NEEDS = {
    "sessiondb-uvloop": "uvloop",
    "raw-uvloop": "uvloop",
    "openai-sqlite": "agents",
    "openai-advanced": "agents",
    "langgraph-sqlite": "langgraph.checkpoint.sqlite",
    "adk-sqlite": "google.adk",
}
# Event-loop variants only matter where the loop is the bottleneck: the append workloads.
LOOP_VARIANTS = {"sessiondb-uvloop", "raw-uvloop"}
NO_LIST = {
    "raw": "no index: the raw loop has no way to list sessions",
    "openai-sqlite": "the SDK has no API to list sessions",
    "openai-advanced": "the SDK has no API to list sessions",
}
PEER_SYSTEMS = {"openai-sqlite", "openai-advanced", "langgraph-sqlite", "adk-sqlite"}
NOT_QUICK = ("raw-uvloop", "openai-advanced")
EXTRA_MODULES = ("bench_postgres", "bench_compaction", "bench_openai_session", "bench_multiprocess", "bench_langgraph")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="sessiondb against the raw ceiling, a naive design and the peers' session stores, side by side.",
    )
    parser.add_argument(
        "--systems",
        default=None,
        help=f"comma-separated, from: {', '.join(SYSTEMS)} (default: all; quick: all but {', '.join(NOT_QUICK)})",
    )
    parser.add_argument(
        "--sessions", default=None, help="concurrent sessions (default 1,100,1000,10000; quick 1,100,1000)"
    )
    parser.add_argument("--repeat", type=int, default=None, help="repetitions per measurement (default 3; quick 1)")
    parser.add_argument(
        "--peer-repeat",
        type=int,
        default=None,
        help="repetitions for the peers (OpenAI, LangGraph, ADK), 10-1000x slower so less noise-bound (default 2)",
    )
    parser.add_argument("--quick", action="store_true", help="a short run (~2 minutes): fewer sizes, shorter windows")
    parser.add_argument("--out", default=str(HERE / "results"), help="directory for the report, JSON and plots")
    parser.add_argument("--name", default=None, help="file stem of the outputs (default: latest; quick: quick)")
    parser.add_argument(
        "--workloads",
        default="concurrent,burst,load,list,extras",
        help="comma-separated: concurrent,burst,load,list,extras (extras = the standalone benchmarks/bench_*.py)",
    )
    parser.add_argument("--duration", type=float, default=None, help="measured window per run, seconds (default 2.5)")
    parser.add_argument("--warmup", type=float, default=None, help="warm-up before the window, seconds (default 0.75)")
    parser.add_argument("--load-sizes", default=None, help="events per resumed session (default 100,10000,100000)")
    parser.add_argument("--list-sessions", type=int, default=None, help="sessions to list (default 10000)")
    parser.add_argument(
        "--burst-events", type=int, default=None, help="events in the one-session burst (default 10000)"
    )
    parser.add_argument(
        "--conversation-length", type=int, default=50, help="events per conversation before a loop starts a new one"
    )
    parser.add_argument(
        "--mix",
        choices=("agent", "small"),
        default="agent",
        help="record mix: agent (default; ~1.5 KB/event, tool results up to 48 KiB) or small (~200 B/event)",
    )
    parser.add_argument("--seed", type=int, default=20261124)
    parser.add_argument(
        "--scratch", default=None, help="directory on the disk to measure (default: the system temp dir)"
    )
    parser.add_argument("--no-extras", action="store_true", help="do not run the standalone benchmarks/bench_*.py")
    args = parser.parse_args(argv)
    quick = args.quick
    args.sessions = [int(x) for x in (args.sessions or ("1,100,1000" if quick else "1,100,1000,10000")).split(",")]
    args.repeat = args.repeat or (1 if quick else 3)
    args.peer_repeat = min(args.repeat, args.peer_repeat or 2)
    args.duration = args.duration or (1.0 if quick else 2.5)
    args.warmup = args.warmup or (0.3 if quick else 0.75)
    args.load_sizes = [int(x) for x in (args.load_sizes or ("1000" if quick else "100,10000,100000")).split(",")]
    args.list_sessions = args.list_sessions or (1000 if quick else 10000)
    args.burst_events = args.burst_events or (1000 if quick else 10000)
    if args.systems is None:
        args.systems = ",".join(s for s in SYSTEMS if not (quick and s in NOT_QUICK))
    args.name = args.name or ("quick" if quick else "latest") + ("" if args.mix == "agent" else f"-{args.mix}")
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    for system in args.systems:
        if system not in SYSTEMS:
            parser.error(f"unknown system {system!r}; choose from {', '.join(SYSTEMS)}")
    args.setup_budget = 8.0 if quick else 60.0
    args.drain_budget = 10.0 if quick else 30.0
    return args


class Progress:
    """One line per step on stderr: what runs now, then its result, with elapsed time."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.start = time.monotonic()

    def begin(self, text: str) -> None:
        self.done += 1
        elapsed = int(time.monotonic() - self.start)
        sys.stderr.write(f"[{self.done:>3}/{self.total} {elapsed // 60:>2}:{elapsed % 60:02d}] {text} ... ")
        sys.stderr.flush()

    def end(self, text: str) -> None:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()


MIX = "agent"


def run_child(
    system: str, workload: str, directory: Path, params: dict[str, Any], seed: int, timeout: float
) -> dict[str, Any]:
    spec = {"system": system, "workload": workload, "dir": str(directory), "params": params, "seed": seed, "mix": MIX}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.child", json.dumps(spec)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"child exceeded {timeout:.0f} s"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line[len("RESULT ") :])
            return result
    return {"error": f"child exited {done.returncode} without a result: {done.stderr[-800:]}"}


def summary(result: dict[str, Any], key: str, unit: str) -> str:
    if "error" in result:
        return "ERROR " + result["error"].splitlines()[0][:150]
    if "skipped" in result:
        return "skipped: " + result["skipped"]
    parts = []
    if key == "throughput":
        parts.append(f"{result['throughput']:,.0f}/s")
        if result.get("p99_ms") is not None:
            parts.append(f"p50 {result['p50_ms']:.2f} ms p99 {result['p99_ms']:.2f} ms")
        if result.get("time_capped"):
            parts.append("time-capped")
        if result.get("errors"):
            parts.append(f"{result['errors']} errors")
    else:
        parts.append(f"{result[key] * 1000:,.1f} {unit}")
    parts.append(f"RSS {result['peak_rss_mb']:.0f} MB")
    return ", ".join(parts)


def available(system: str) -> str | None:
    module = NEEDS.get(system)
    if module is None:
        return None
    try:
        return None if find_spec(module) is not None else f"{module} is not installed"
    except ModuleNotFoundError:
        return f"{module} is not installed"


def main(argv: list[str] | None = None) -> int:
    global MIX
    args = parse_args(argv)
    MIX = args.mix
    started_at = datetime.datetime.now(datetime.UTC)
    command = "python -m benchmarks " + " ".join(sys.argv[1:] if argv is None else argv)
    scratch_base = Path(args.scratch) if args.scratch else Path(tempfile.gettempdir())
    scratch_base.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="sessiondb-bench-", dir=scratch_base))
    machine = describe(scratch)
    unavailable = {s: r for s in args.systems if (r := available(s)) is not None}
    systems = [s for s in args.systems if s not in unavailable]
    base_params = {"script_size": 4096}

    # The plan, so the progress display can count.
    steps: list[tuple[str, Any]] = []
    if "concurrent" in args.workloads:
        for sessions in args.sessions:
            for rep in range(args.repeat):
                for system in systems:
                    if rep < (args.peer_repeat if system in PEER_SYSTEMS else args.repeat):
                        steps.append(("concurrent", (system, sessions, rep)))
    if "burst" in args.workloads:
        for rep in range(min(args.repeat, 2)):
            for system in systems:
                steps.append(("burst", (system, rep)))
    if "load" in args.workloads:
        for size in args.load_sizes:
            for system in systems:
                if system not in LOOP_VARIANTS:
                    steps.append(("load", (system, size)))
    if "list" in args.workloads:
        for system in systems:
            if system not in LOOP_VARIANTS:
                steps.append(("list", (system,)))
    run_extras = "extras" in args.workloads and not args.no_extras and not args.quick
    extras = [m for m in EXTRA_MODULES if (HERE / f"{m}.py").exists()] if run_extras else []
    steps.extend(("extra", (m,)) for m in extras)

    progress = Progress(len(steps))
    sys.stderr.write(
        f"sessiondb benchmarks: {len(steps)} steps, systems {', '.join(systems)}; "
        f"scratch {scratch} ({machine['disk']})\n"
    )
    for system, reason in unavailable.items():
        sys.stderr.write(f"  not run: {system}: {reason}\n")
    raw: dict[str, list[dict[str, Any]]] = {"concurrent": [], "burst": [], "load": [], "list": [], "extra": []}
    skip: dict[str, tuple[int, str]] = {}  # system -> (from this many sessions on, why it does not run)
    capped: set[tuple[str, int]] = set()
    try:
        for kind, detail in steps:
            if kind == "concurrent":
                system, sessions, rep = detail
                reps = args.peer_repeat if system in PEER_SYSTEMS else args.repeat
                progress.begin(f"concurrent {sessions:>6,} sessions  {LABELS[system]:<42} rep {rep + 1}/{reps}")
                if system in skip and sessions >= skip[system][0]:
                    progress.end("skipped: " + skip[system][1])
                    if rep == 0:
                        raw["concurrent"].append(
                            {"system": system, "sessions": sessions, "rep": rep, "skipped": skip[system][1]}
                        )
                    continue
                if (system, sessions) in capped:
                    progress.end("not repeated: the first run was time-capped")
                    continue
                directory = scratch / f"c-{system}-{sessions}-{rep}"
                params = {
                    **base_params,
                    "sessions": sessions,
                    "conversation_length": args.conversation_length,
                    "warmup": args.warmup,
                    "duration": args.duration,
                    "setup_budget": args.setup_budget,
                    "drain_budget": args.drain_budget,
                }
                timeout = args.setup_budget + args.warmup + args.duration + args.drain_budget + 120
                result = run_child(system, "concurrent", directory, params, args.seed, timeout)
                shutil.rmtree(directory, ignore_errors=True)
                progress.end(summary(result, "throughput", ""))
                if "skipped" in result:
                    skip[system] = (sessions, f"{result['skipped']} at {sessions:,} sessions")
                elif "error" in result and "locked" in result["error"]:
                    skip[system] = (
                        sessions,
                        f"failed at {sessions:,} sessions: {result['error'].splitlines()[0][:100]}",
                    )
                elif result.get("setup_s") and rep == 0 and sessions >= 100:
                    # Creating sessions costs the same per session at any count: when the next
                    # count would blow the budget, say so now instead of spending the budget.
                    larger = [n for n in args.sessions if n > sessions]
                    if larger and result["setup_s"] * larger[0] / sessions > args.setup_budget:
                        skip.setdefault(
                            system,
                            (
                                larger[0],
                                f"creating {sessions:,} sessions took {result['setup_s']:.1f} s, so "
                                f"{larger[0]:,} would exceed the {args.setup_budget:.0f} s budget",
                            ),
                        )
                if result.get("time_capped"):
                    capped.add((system, sessions))
                raw["concurrent"].append({"system": system, "sessions": sessions, "rep": rep, **result})
            elif kind == "burst":
                system, rep = detail
                progress.begin(
                    f"burst {args.burst_events:,} events into one session  {LABELS[system]:<42} rep {rep + 1}"
                )
                if (system, -1) in capped:
                    progress.end("not repeated: the first run was time-capped or skipped")
                    continue
                directory = scratch / f"b-{system}-{rep}"
                params = {**base_params, "events": args.burst_events, "budget": 6.0 if args.quick else 30.0}
                result = run_child(system, "burst", directory, params, args.seed, 600)
                shutil.rmtree(directory, ignore_errors=True)
                progress.end(summary(result, "throughput", ""))
                if result.get("time_capped") or "skipped" in result:
                    capped.add((system, -1))
                raw["burst"].append({"system": system, "rep": rep, **result})
            elif kind == "load":
                system, size = detail
                progress.begin(f"resume a {size:>7,}-event session  {LABELS[system]:<42} x{args.repeat}")
                directory = scratch / f"l-{system}-{size}"
                params = {**base_params, "events": size, "key": f"load-{size}"}
                prepared = run_child(system, "prepare-load", directory, params, args.seed, 900)
                if "error" in prepared:
                    progress.end("preparation failed: " + summary(prepared, "", ""))
                    raw["load"].append({"system": system, "events": size, **prepared})
                else:
                    runs = []
                    for _ in range(min(args.repeat, 2) if size >= 10_000 else args.repeat):
                        runs.append(run_child(system, "load", directory, params, args.seed, 600))
                        # A resume that takes seconds is not noise-bound: once is enough.
                        if runs[-1].get("resume_s", 0) > 5:
                            break
                    for result in runs:
                        raw["load"].append({"system": system, "events": size, "prepare": prepared, **result})
                    good = [r for r in runs if "error" not in r]
                    if good:
                        best = sorted(good, key=lambda r: r["resume_s"])[len(good) // 2]
                        progress.end(
                            f"resume {best['resume_s'] * 1000:,.1f} ms (open {best['open_s'] * 1000:,.1f} + "
                            f"load {best['load_s'] * 1000:,.1f}), RSS {best['peak_rss_mb']:.0f} MB"
                        )
                    else:
                        progress.end(summary(runs[0], "", ""))
                shutil.rmtree(directory, ignore_errors=True)
            elif kind == "list":
                (system,) = detail
                progress.begin(f"list {args.list_sessions:,} sessions  {LABELS[system]:<42} x{args.repeat}")
                if system in NO_LIST:
                    progress.end("skipped: " + NO_LIST[system])
                    raw["list"].append({"system": system, "skipped": NO_LIST[system]})
                    continue
                directory = scratch / f"s-{system}"
                params = {**base_params, "sessions": args.list_sessions, "setup_budget": 30.0 if args.quick else 120.0}
                prepared = run_child(system, "prepare-list", directory, params, args.seed, 900)
                if "error" in prepared or "skipped" in prepared:
                    progress.end("preparation: " + summary(prepared, "", ""))
                    raw["list"].append({"system": system, **prepared})
                else:
                    runs = [run_child(system, "list", directory, params, args.seed, 600) for _ in range(args.repeat)]
                    for result in runs:
                        raw["list"].append({"system": system, "prepare": prepared, **result})
                    progress.end(summary(runs[0], "total_s", "ms"))
                shutil.rmtree(directory, ignore_errors=True)
            elif kind == "extra":
                (module,) = detail
                progress.begin(f"standalone benchmarks.{module}")
                try:
                    done = subprocess.run(
                        [sys.executable, "-m", f"benchmarks.{module}"],
                        cwd=REPO,
                        capture_output=True,
                        text=True,
                        timeout=600,
                    )
                    output = done.stdout + ("\n" + done.stderr[-2000:] if done.returncode else "")
                    status = f"exit {done.returncode}"
                except subprocess.TimeoutExpired:
                    output, status = "", "timed out after 600 s"
                progress.end(status)
                raw["extra"].append({"module": module, "status": status, "output": output[-12000:]})
    except KeyboardInterrupt:
        sys.stderr.write("\ninterrupted: writing what was measured so far\n")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    finished_at = datetime.datetime.now(datetime.UTC)
    document = {
        "command": command,
        "started": started_at.isoformat(timespec="seconds"),
        "finished": finished_at.isoformat(timespec="seconds"),
        "machine": machine,
        "config": {
            "systems": systems,
            "unavailable": unavailable,
            "sessions": args.sessions,
            "repeat": args.repeat,
            "peer_repeat": args.peer_repeat,
            "warmup_s": args.warmup,
            "duration_s": args.duration,
            "conversation_length": args.conversation_length,
            "load_sizes": args.load_sizes,
            "list_sessions": args.list_sessions,
            "burst_events": args.burst_events,
            "seed": args.seed,
            "mix": args.mix,
            "setup_budget_s": args.setup_budget,
            "drain_budget_s": args.drain_budget,
        },
        "raw": raw,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    paths = report.write(document, out, args.name)
    sys.stderr.write(
        f"done in {(finished_at - started_at).total_seconds() / 60:.1f} min: " + ", ".join(map(str, paths)) + "\n"
    )
    return 0
