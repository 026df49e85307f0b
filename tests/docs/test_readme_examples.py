"""Every Python block of the README is a complete program that runs as pasted into a file.

Each block runs in its own process, in a temporary directory with a temporary HOME
(so ``~`` paths land there), offline (no OPENAI_API_KEY). A block that talks to
PostgreSQL runs against SESSIONDB_TEST_POSTGRES_DSN, in a schema of its own.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import sessiondb

ROOT = Path(__file__).resolve().parents[2]
SRC = str(Path(sessiondb.__file__).resolve().parent.parent)
DSN_VARIABLE = "SESSIONDB_TEST_POSTGRES_DSN"


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", markdown, flags=re.MULTILINE | re.DOTALL)


BLOCKS = python_blocks((ROOT / "README.md").read_text())


def needs_postgres(block: str) -> bool:
    return "PostgresBackend(" in block or "postgresql://" in block


def test_the_readme_has_python_blocks() -> None:
    assert len(BLOCKS) >= 6


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs_as_a_program(index: int, tmp_path: Path) -> None:
    block = BLOCKS[index]
    if "openai_agents" in block:
        pytest.importorskip("agents")
    home = tmp_path / "home"
    work = tmp_path / "work"
    home.mkdir()
    work.mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith("OPENAI_")}
    env.update(HOME=str(home), PYTHONPATH=SRC + os.pathsep + env.get("PYTHONPATH", ""))
    schema = None
    if needs_postgres(block):
        dsn = os.environ.get(DSN_VARIABLE)
        if not dsn:
            pytest.skip(f"README block {index} needs PostgreSQL: set {DSN_VARIABLE}")
        schema = f"sdbreadme_{uuid.uuid4().hex[:12]}"
        env["SESSIONDB_POSTGRES_DSN"] = f"{dsn}{'&' if '?' in dsn else '?'}schema={schema}"
    program = work / f"readme_block_{index}.py"
    program.write_text(block)
    try:
        done = subprocess.run(
            [sys.executable, str(program)], cwd=work, env=env, capture_output=True, text=True, timeout=120
        )
    finally:
        if schema is not None:
            _drop_schema(os.environ[DSN_VARIABLE], schema)
    assert done.returncode == 0, f"README block {index} failed:\n{block}\n--- stderr ---\n{done.stderr}"
    assert not (work / "~").exists(), "a literal ./~ directory was created"


def _drop_schema(dsn: str, schema: str) -> None:
    import asyncio

    import asyncpg

    async def drop() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f"drop schema if exists {schema} cascade")
        finally:
            await conn.close()

    asyncio.run(drop())


def test_no_block_uses_top_level_await() -> None:
    for block in BLOCKS:
        for line in block.splitlines():
            assert not re.match(r"(await|async (for|with)) ", line), f"top-level await in:\n{block}"
