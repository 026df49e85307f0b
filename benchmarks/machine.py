"""A description of the machine and software a run measured, for the report."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PACKAGES = (
    "sessiondb",
    "msgspec",
    "uvloop",
    "openai-agents",
    "langgraph-checkpoint-sqlite",
    "langgraph-checkpoint",
    "aiosqlite",
    "google-adk",
    "sqlalchemy",
)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _disk(path: Path) -> str:
    try:
        out = (
            subprocess.run(["df", "-hT", str(path)], capture_output=True, text=True, timeout=10, check=True)
            .stdout.splitlines()[-1]
            .split()
        )
        return f"{out[0]} ({out[1]}, {out[2]}, {out[4]} free)"
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown"


def _engine_revision() -> str:
    """The commit measured, and whether the engine's sources differed from it (edits in progress)."""
    repo = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "src"], cwd=repo, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + (" with uncommitted changes in src/" if dirty else "")


def describe(scratch: Path) -> dict[str, object]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    memory = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory": memory,
        "os": f"{platform.system()} {platform.release()}",
        "disk": _disk(scratch),
        "scratch": str(scratch),
        "python": sys.version.split()[0],
        "engine": _engine_revision(),
        "load_average": os.getloadavg(),
        "packages": versions,
    }
