"""LangGraph's checkpointer conformance suite (langgraph-checkpoint-conformance): every capability, every backend."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator

import pytest
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES, DetectedCapabilities

from sessiondb.integrations.langgraph import SessionDBSaver

from .conftest import StoreFactory

pytestmark = pytest.mark.anyio


async def test_conformance_every_capability(open_fresh_store: StoreFactory) -> None:
    @checkpointer_test(name="SessionDBSaver")
    async def saver() -> AsyncIterator[SessionDBSaver]:
        yield SessionDBSaver(await open_fresh_store())  # a fresh store per capability suite

    report = await validate(saver)
    failures = {name: result.failures for name, result in report.results.items() if not result.passed}
    assert not failures, failures
    assert set(report.results) == {capability.value for capability in ALL_CAPABILITIES}
    assert all(result.detected and result.tests_failed == 0 for result in report.results.values())


def test_every_capability_is_detected() -> None:
    detected = DetectedCapabilities.from_instance(SessionDBSaver.__new__(SessionDBSaver))
    assert detected.missing == frozenset()


def test_only_the_integration_module_imports_langgraph() -> None:
    code = (
        "import sys, sessiondb, sessiondb.integrations, sessiondb.integrations._langgraph_state, sessiondb.cli; "
        "assert not [m for m in sys.modules if m.startswith(('langgraph', 'langchain'))], 'langgraph imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
