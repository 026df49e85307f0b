"""One child process: run one workload against one system and print its result as JSON.

Run by the runner as ``python -m benchmarks.child '<json spec>'``; a process per
system and workload keeps memory (peak RSS) and interpreter state apart.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
import traceback
from pathlib import Path
from typing import Any


def main() -> None:
    spec: dict[str, Any] = json.loads(sys.argv[1])
    result: dict[str, Any]
    try:
        from benchmarks.records import MIXES
        from benchmarks.systems import load_system
        from benchmarks.workloads import WORKLOADS

        system = load_system(spec["system"])
        script = MIXES[spec.get("mix", "agent")](spec["seed"], spec["params"]["script_size"])
        system.prepare(script)
        workload = WORKLOADS[spec["workload"]]
        if system.uses_uvloop:
            import uvloop

            runner: Any = asyncio.Runner(loop_factory=uvloop.new_event_loop)
        else:
            runner = asyncio.Runner()
        begin = time.perf_counter()
        # The runner is never closed: closing cancels and awaits leftover tasks, and a peer
        # cut off by a time cap (or its thread pool) may never finish them. os._exit below.
        result = runner.run(workload(system, Path(spec["dir"]), spec["params"]))
        if spec["workload"] in ("concurrent", "burst", "load", "list") and "skipped" not in result:
            result["settings"] = system.settings()
        result["child_s"] = time.perf_counter() - begin
    except Exception as error:
        result = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()[-2000:]}
    # ru_maxrss is in KiB on Linux.
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    sys.stdout.write("\nRESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()
    # Do not wait for peers' leftover threads (a time-capped run may leave some busy).
    os._exit(0)


if __name__ == "__main__":
    main()
