"""Install and documentation as a user meets them: license, dependencies, optional pytest,
``make demo``, names the docs use, commands the docs attribute to make targets."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import sessiondb

ROOT = Path(__file__).resolve().parents[2]
SRC = Path(sessiondb.__file__).resolve().parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_license_file_matches_the_declared_license() -> None:
    assert PYPROJECT["project"]["license"] == "MIT"
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License")
    assert "Permission is hereby granted, free of charge" in text


def _requirement_name(requirement: str) -> str:
    return re.split(r"[<>=!\[; ]", requirement, maxsplit=1)[0]


def test_every_declared_dependency_is_imported_by_the_package() -> None:
    source = "\n".join(path.read_text() for path in SRC.rglob("*.py"))
    for requirement in PYPROJECT["project"]["dependencies"]:
        module = _requirement_name(requirement).replace("-", "_")
        assert re.search(rf"^\s*(import|from) {module}\b", source, flags=re.MULTILINE), (
            f"{requirement} is declared but nothing in src/sessiondb imports {module}"
        )


HIDE_PYTEST = (
    "import sys\nsys.modules['pytest'] = None  # as if pytest were not installed\nsys.modules['_pytest'] = None\n"
)


def _run(code: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(SRC.parent) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)


def test_sessiondb_testing_imports_without_pytest(tmp_path: Path) -> None:
    done = _run(
        HIDE_PYTEST + "import sessiondb.testing as t\n"
        "from sessiondb.testing import FaultyFileSystem, PowerLoss, corrupt, flip_bit\n"
        f"fs = FaultyFileSystem({str(tmp_path)!r})\n"
        "print('ok', type(fs).__name__)\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok FaultyFileSystem"


def test_the_conformance_suite_without_pytest_says_what_to_install() -> None:
    done = _run(
        HIDE_PYTEST + "try:\n"
        "    from sessiondb.testing import BackendConformance\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    assert done.returncode == 0, done.stderr
    assert "needs pytest" in done.stdout and "pip install" in done.stdout


def test_the_conformance_suite_imports_with_pytest() -> None:
    from sessiondb.testing import BackendConformance, BackendFactory

    assert inspect.isclass(BackendConformance)
    assert BackendFactory is not None


def test_make_demo_installs_only_what_the_demo_needs() -> None:
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^demo:(.*)\n((?:\t.*\n)+)", makefile, flags=re.MULTILINE)
    assert recipe is not None
    stamp = recipe.group(1).split()[0]
    install = re.search(rf"^{re.escape(stamp)}:.*\n((?:\t.*\n)+)", makefile, flags=re.MULTILINE)
    assert install is not None
    assert "pip install" in install.group(1)
    assert "dev" not in install.group(1) and "bench" not in install.group(1)


def test_the_demo_says_where_its_store_is_and_how_to_look(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import agent_server
    finally:
        sys.path.remove(str(ROOT / "examples"))
    import contextlib
    import io

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        agent_server.print_where_to_look(str(tmp_path / "store"))
    text = printed.getvalue()
    assert f"the store is kept at {tmp_path / 'store'}" in text
    assert f"sessiondb ls {tmp_path / 'store'}" in text
    assert "PATH" in text


def test_names_the_docs_use_are_exported() -> None:
    for doc in DOCS:
        for name in set(re.findall(r"\bsessiondb\.([A-Za-z_]\w*)", doc.read_text())):
            if name.startswith("_") or name in {"integrations", "testing", "web"}:  # modules, not API names
                continue
            assert hasattr(sessiondb, name), f"{doc.name} uses sessiondb.{name}, which sessiondb does not export"


def test_backend_classes_the_docs_name_are_exported() -> None:
    for doc in DOCS:
        for name in set(re.findall(r"\b([A-Z]\w*Backend)\(", doc.read_text())):
            assert hasattr(sessiondb, name), f"{doc.name} tells users to call {name}(...), not exported"


def _make_recipe(target: str) -> str:
    makefile = (ROOT / "Makefile").read_text()
    match = re.search(rf"^{target}:.*\n\t(.*)\n", makefile, flags=re.MULTILINE)
    assert match is not None
    return match.group(1).replace("$(PY) ", "")


@pytest.mark.parametrize("target,script", [("crash", "scripts/crash_campaign.py"), ("soak", "scripts/soak.py")])
def test_commands_the_docs_attribute_to_make_targets_are_the_makefiles(target: str, script: str) -> None:
    recipe = _make_recipe(target)
    assert recipe.startswith(script)
    for doc in DOCS:
        text = doc.read_text()
        # "`make crash` (`<command>`...": the command in brackets must be what the target runs.
        for command in re.findall(rf"`make {target}` \(`([^`]*)`", text):
            assert command == recipe, f"{doc.name}: `make {target}` runs {recipe!r}, not {command!r}"
        # "<command> (what `make crash` runs": the command may add options, never change the target's.
        for command in re.findall(
            rf"`(?:\.venv/bin/python )?({re.escape(script)}[^`]*)`\s*\(what `make {target}`", text
        ):
            assert command.startswith(recipe), f"{doc.name}: `make {target}` runs {recipe!r}, not {command!r}"


def test_fork_and_create_session_name_the_new_session_alike() -> None:
    create = inspect.signature(sessiondb.Store.create_session).parameters
    fork = inspect.signature(sessiondb.Store.fork).parameters
    assert "session_id" in create and "session_id" in fork
    assert fork["session_id"].kind is inspect.Parameter.KEYWORD_ONLY
    assert "new_session_id" not in fork


@pytest.mark.anyio
async def test_fork_takes_session_id() -> None:
    async with sessiondb.open_store(":memory:") as store:
        parent = await store.create_session(session_id="parent")
        assert await store.fork(parent, session_id="child") == "child"
        with pytest.raises(TypeError):
            await store.fork(parent, new_session_id="other")  # type: ignore[call-arg]


def test_the_readme_says_when_to_record_and_when_to_compact() -> None:
    readme = (ROOT / "README.md").read_text()
    assert re.search(r"[Ww]hich one to call.*compact_conversation.*record_compaction", readme, flags=re.DOTALL)
    for method in (sessiondb.Store.record_compaction, sessiondb.Store.compact_conversation):
        other = "compact_conversation" if method.__name__ == "record_compaction" else "record_compaction"
        assert other in (method.__doc__ or ""), f"{method.__name__}'s docstring does not say when to use {other}"


def test_the_readme_install_section_works_from_a_checkout() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "pip install 'sessiondb[" not in readme
    for path in [*(ROOT / "docs").glob("*.md"), *(ROOT / "src" / "sessiondb").rglob("*.py")]:
        assert "sessiondb[" not in path.read_text(), f"{path.name} names an extra as if sessiondb came from PyPI"
    # The langgraph extra brings langgraph-checkpoint (what the saver imports); graphs need langgraph too.
    assert "pip install '.[langgraph]' langgraph" in readme
    assert "pip install '.[postgres]'" in readme
    assert ".venv-demo/bin/sessiondb" in readme
