"""Real processes for the viewer tests: ``sessiondb serve`` under uvicorn, and a writer appending beside it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sessiondb

SRC = str(Path(sessiondb.__file__).resolve().parent.parent)
WRITER = str(Path(__file__).resolve().parent.parent / "cli" / "_writer_child.py")


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    return env


@contextmanager
def serving(*args: str, cwd: Path | None = None) -> Iterator[str]:
    """``sessiondb serve ARGS --port 0`` in a subprocess; yields the URL it printed; stops it with SIGINT."""
    process = subprocess.Popen(
        [sys.executable, "-m", "sessiondb", "serve", *args, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(),
        cwd=cwd,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if "http://" not in line:
            process.kill()
            raise AssertionError(f"serve did not start: {line!r} {process.stderr.read() if process.stderr else ''}")
        yield line[line.index("http://") :].split()[0]
    finally:
        process.send_signal(signal.SIGINT)
        try:
            code = process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            raise AssertionError("serve did not stop within 20 s of SIGINT") from None
        errors = process.stderr.read() if process.stderr else ""
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()
        assert code in (0, 130), (code, errors)


class Writer:
    """``tests/cli/_writer_child.py``: another process holding the store open for writing (session ``live``)."""

    def __init__(self, store: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, WRITER, str(store)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=environment(),
        )
        assert self.ask("") == "ready"

    def ask(self, command: str) -> str:
        assert self.process.stdin is not None and self.process.stdout is not None
        if command:
            self.process.stdin.write(command + "\n")
            self.process.stdin.flush()
        return self.process.stdout.readline().strip()

    def close(self) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("quit\n")
        self.process.stdin.close()
        code = self.process.wait(timeout=30)
        self.process.stdout.close()
        assert code == 0
