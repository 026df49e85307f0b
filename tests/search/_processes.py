"""Running children and the CLI for the search tests."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import sessiondb
from sessiondb.cli import main

SRC = str(Path(sessiondb.__file__).resolve().parent.parent)


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_in_process(*argv: str) -> Result:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return Result(code, out.getvalue(), err.getvalue())


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    return env


async def wait_line(process: subprocess.Popen[str], prefix: str, timeout: float = 120.0) -> str:
    """The child's next stdout line starting with ``prefix``; fails (with its stderr) if it exits first."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    while True:
        line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), deadline - time.monotonic())
        if not line:
            process.wait(timeout=30)
            errors = process.stderr.read()[-3000:] if process.stderr is not None else ""
            raise AssertionError(f"child exited ({process.returncode}) before {prefix!r}: {errors}")
        if line.startswith(prefix):
            return line[len(prefix) :].strip()
