#!/usr/bin/env python3
"""The long crash campaign: real SIGKILLs of a concurrent writer, then simulated power losses and I/O faults.

``make crash`` runs ``scripts/crash_campaign.py --kills 1000``. Each store gets
``--kills-per-store`` kills: a child process (``python -m sessiondb.testing._crashwork``)
drives 24 concurrent sessions (appends, three-event appends, prompts, conversation
compactions, forks, new sessions; storage compaction too once ``Store.compact``
exists) on small segments so rotation is constant; it is SIGKILLed at a random
moment, the store is reopened and every invariant checked, and the next child
continues the same sessions. Then, unless ``--kills-only``, the in-process
power-loss sweep (a power cut at every file operation, four crash modes) and
the I/O-fault sweep (the n-th write/fdatasync/fsync/rename/open/directory fsync
fails with EIO or ENOSPC) run for ``--sweep-seeds`` seeds. Totals are printed
at the end; the exit status is 1 if any invariant was violated.

``--processes N`` (N > 1) runs the multi-process campaign instead: N writer
children (``python -m sessiondb.testing._mpwork``) append to shared sessions
with expected versions (retrying conflicts) and to their own, with event ids
on some appends; a random child is SIGKILLed at a random moment and restarted
(retrying its unacknowledged event-id appends) while the others go on;
each store gets ``--kills-per-store`` kills and then one full check (every
acknowledged append exactly once and whole, no event-id retry stored twice,
positions gapless). ``--postgres-dsn`` runs it on fresh PostgreSQL schemas
instead of store directories. ``make crash`` runs both campaigns.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import sessiondb
from sessiondb.testing import CRASH_MODES, Fault, FaultyFileSystem
from sessiondb.testing._crashwork import KillResult, Ledger, Workload, check_store, kill_campaign
from sessiondb.testing._mpcampaign import ChildFailed, drop_schema, multi_kill_campaign

FAULT_OPERATIONS = ("write", "fdatasync", "fsync", "rename", "open", "fsync_directory")


async def kills(args: argparse.Namespace, root: Path, totals: Counter[str], violations: list[str]) -> None:
    """Stores of ``kills_per_store`` kills each: of one writer child, or among ``processes`` writers."""
    started = time.monotonic()
    done = 0
    store_index = 0
    while done < args.kills:
        batch = min(args.kills_per_store, args.kills - done)
        seed = args.seed + store_index
        schema = f"sdbcrash_{seed}_{store_index}" if args.postgres_dsn else None
        if schema is not None:
            target = f"{args.postgres_dsn}{'&' if '?' in args.postgres_dsn else '?'}schema={schema}"
        else:
            target = str(root / f"{'mp-' if args.processes > 1 else ''}kills-{store_index}")

        def progress(kill: int, result: KillResult, done: int = done) -> None:
            total = done + kill + 1
            if total % args.report_every == 0 or total == args.kills:
                rate = total / (time.monotonic() - started)
                print(
                    f"  kills {total}/{args.kills}  acknowledged {totals['acks'] + result.acks}  "
                    f"violations {len(violations) + len(result.violations)}  ({rate:.1f} kills/s)",
                    flush=True,
                )

        try:
            if args.processes > 1:
                result = await multi_kill_campaign(
                    target,
                    batch,
                    processes=args.processes,
                    seed=seed,
                    tasks=max(1, args.tasks // args.processes),
                    segment_bytes=args.segment_bytes,
                    progress=progress,
                )
            else:
                result = await kill_campaign(
                    target,
                    batch,
                    seed=seed,
                    segment_bytes=args.segment_bytes,
                    tasks=args.tasks,
                    ledger=Ledger(),
                    progress=progress,
                    forks=args.forks,
                )
        except ChildFailed as exc:
            violations.append(f"store {store_index} (seed {seed}): a writer child exited by itself: {exc}")
            print(f"  store {store_index}: a writer child exited by itself; stopping\n{exc}", flush=True)
            return
        finally:
            if schema is not None:
                await drop_schema(args.postgres_dsn, schema)
        totals["kills"] += result.kills
        totals["acks"] += result.acks
        totals["attempts"] += result.attempts
        totals["killed_before_ready"] += result.killed_before_ready
        totals["events_recovered"] += result.stats.get("events", 0)
        totals["sessions"] += result.stats.get("sessions", 0)
        totals["segments"] += result.stats.get("segments", 0)
        totals["torn_tails_cut"] += result.stats.get("torn_tails_cut", 0)
        totals["temp_files_removed"] += result.stats.get("temp_files_removed", 0)
        violations.extend(f"store {store_index} (seed {seed}): {v}" for v in result.violations)
        if not result.violations and not args.keep and schema is None:
            shutil.rmtree(target)
        done += batch
        store_index += 1


async def power_loss(seed: int, root: Path, totals: Counter[str], violations: list[str]) -> None:
    """A power cut at every mutating file operation of one workload, in every crash mode."""
    for mode in CRASH_MODES:
        clean = await _power_trial(root / f"pl-{seed}-{mode}-clean", None, mode, seed)
        for k in range(1, clean + 2):
            await _power_trial(root / f"pl-{seed}-{mode}-{k}", k, mode, seed * 10_000 + k, totals, violations)


async def _power_trial(
    path: Path,
    k: int | None,
    mode: str,
    seed: int,
    totals: Counter[str] | None = None,
    violations: list[str] | None = None,
) -> int:
    fs = FaultyFileSystem(path, power_cut_at=k, seed=seed)
    store = sessiondb.open_store(path, file_system=fs, segment_bytes=4096)
    workload = None
    try:
        await store.start()
        workload = Workload(store, seed, tasks=8)
        await workload.run(steps=10)
    except sessiondb.StoreBrokenError:
        pass
    finally:
        await store.aclose()
    report = fs.crash(mode)
    problems = await check_store(path, workload.ledger if workload else Ledger())
    if totals is not None and violations is not None:
        totals["power_losses"] += 1
        totals["power_loss_acks"] += workload.ledger.acks if workload else 0
        totals["unsynced_bytes_lost"] += sum(report["lost_bytes"].values())  # type: ignore[union-attr]
        totals["unsynced_entries_lost"] += len(report["lost_entries"])  # type: ignore[arg-type]
        violations += [f"power loss {mode} k={k} seed={seed}: {p}" for p in problems]
    shutil.rmtree(path, ignore_errors=True)
    return fs.mutations


async def io_faults(seed: int, root: Path, totals: Counter[str], violations: list[str]) -> None:
    """The n-th call of each operation fails, with EIO and ENOSPC, once and forever, for every n reached."""
    for operation in FAULT_OPERATIONS:
        for code in (errno.EIO, errno.ENOSPC):
            for forever in (False, True):
                n = 0
                while True:
                    n += 1
                    fault = Fault(operation, n, code, forever, partial=True)
                    fired = await _fault_trial(root / f"io-{seed}-{operation}-{n}", fault, seed * 1000 + n, violations)
                    if not fired:
                        break
                    totals["io_faults"] += 1


async def _fault_trial(path: Path, fault: Fault, seed: int, violations: list[str]) -> bool:
    fs = FaultyFileSystem(path, [fault], seed=seed)
    store = sessiondb.open_store(path, file_system=fs, segment_bytes=4096)
    workload = None
    label = f"{fault.operation} #{fault.nth} {errno.errorcode[fault.code]} {'forever' if fault.forever else 'once'}"
    try:
        await store.start()
    except sessiondb.StoreBrokenError as exc:
        if fault.code == errno.ENOSPC and not isinstance(exc, sessiondb.DiskFullError):
            violations.append(f"{label}: ENOSPC at open reported as {exc!r}")
    else:
        workload = Workload(store, seed, tasks=6)
        await workload.run(steps=8)
        for error in workload.errors:
            if not isinstance(error, sessiondb.StoreBrokenError) or (
                fault.code == errno.ENOSPC and not isinstance(error, sessiondb.DiskFullError)
            ):
                violations.append(f"{label}: appender got {error!r}")
        await store.aclose()
    if fs.failures:
        first = fs.failures[0][3]
        retried = [op for op, _ in fs.log[first + 1 :] if op in ("write", "fdatasync", "fsync", "rename")]
        if retried:
            violations.append(f"{label}: the store went on with {retried[:3]} after the failure")
    problems = await check_store(path, workload.ledger if workload else Ledger())
    violations += [f"{label}: {p}" for p in problems]
    shutil.rmtree(path, ignore_errors=True)
    return bool(fault.fired)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=1000)
    parser.add_argument("--kills-per-store", type=int, default=25)
    parser.add_argument("--segment-bytes", type=int, default=16 * 1024)
    parser.add_argument("--tasks", type=int, default=24)
    parser.add_argument("--seed", type=int, default=random.randrange(1_000_000))
    parser.add_argument("--sweep-seeds", type=int, default=3)
    parser.add_argument("--kills-only", action="store_true")
    parser.add_argument(
        "--no-forks",
        dest="forks",
        action="store_false",
        help="no forks in the killed workload (by default it forks sessions while compaction runs)",
    )
    parser.add_argument(
        "--processes", type=int, default=1, help="writer processes; more than 1 runs the multi-process campaign"
    )
    parser.add_argument("--postgres-dsn", help="run the multi-process campaign on PostgreSQL schemas instead")
    parser.add_argument("--report-every", type=int, default=50)
    parser.add_argument("--keep", action="store_true", help="keep the store directories")
    parser.add_argument("--dir", help="work directory (default: a temporary one)")
    parser.add_argument("--json", help="also write the totals to this file")
    args = parser.parse_args()
    if args.postgres_dsn and args.processes < 2:
        parser.error("--postgres-dsn runs the multi-process campaign: give --processes N (N > 1) too")

    root = Path(args.dir or tempfile.mkdtemp(prefix="sessiondb-crash-"))
    root.mkdir(parents=True, exist_ok=True)
    totals: Counter[str] = Counter()
    violations: list[str] = []
    started = time.monotonic()
    compactor = hasattr(sessiondb.Store, "compact")
    if args.processes > 1:
        print(
            f"multi-process crash campaign: seed {args.seed}, {args.kills} SIGKILLs among {args.processes} writer "
            f"processes ({args.kills_per_store} per store, {args.segment_bytes}-byte segments, "
            f"{max(1, args.tasks // args.processes)} drivers per process) on "
            f"{'PostgreSQL' if args.postgres_dsn else root}",
            flush=True,
        )
    else:
        print(
            f"crash campaign: seed {args.seed}, {args.kills} SIGKILLs ({args.kills_per_store} per store, "
            f"{args.segment_bytes}-byte segments, {args.tasks} concurrent sessions per child, "
            f"storage compaction {'on' if compactor else 'not available'}) in {root}",
            flush=True,
        )
    await kills(args, root, totals, violations)
    kill_seconds = time.monotonic() - started
    if not args.kills_only:
        print(f"power-loss and I/O-fault sweeps, {args.sweep_seeds} seed(s) ...", flush=True)
        for seed in range(args.seed, args.seed + args.sweep_seeds):
            await power_loss(seed, root, totals, violations)
            await io_faults(seed, root, totals, violations)
            print(f"  seed {seed}: power losses {totals['power_losses']}, I/O faults {totals['io_faults']}", flush=True)
    elapsed = time.monotonic() - started
    summary = {
        "seed": args.seed,
        "writer_processes": args.processes,
        "sigkills": totals["kills"],
        "sigkills_before_store_open": totals["killed_before_ready"],
        "acknowledged_appends_checked": totals["acks"],
        "attempted_appends": totals["attempts"],
        "events_in_final_stores": totals["events_recovered"],
        "segments_in_final_stores": totals["segments"],
        "leftover_temp_files_removed": totals["temp_files_removed"],
        "simulated_power_losses": totals["power_losses"],
        "acknowledged_appends_before_power_loss": totals["power_loss_acks"],
        "unsynced_bytes_dropped_or_torn": totals["unsynced_bytes_lost"],
        "unsynced_directory_entries_lost": totals["unsynced_entries_lost"],
        "injected_io_faults": totals["io_faults"],
        "storage_compaction": compactor,
        "violations": len(violations),
        "kill_seconds": round(kill_seconds, 1),
        "seconds": round(elapsed, 1),
    }
    print("\nTotals")
    for key, value in summary.items():
        print(f"  {key:42} {value}")
    for violation in violations[:50]:
        print("VIOLATION", violation)
    if args.json:
        Path(args.json).write_text(json.dumps({**summary, "violation_list": violations}, indent=2))
    if not args.dir and not violations and not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
