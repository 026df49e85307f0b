"""The Claude Agent SDK's own SessionStore conformance suite, every contract, on every backend."""

from __future__ import annotations

import subprocess
import sys

import pytest
from claude_agent_sdk.testing import run_session_store_conformance

from sessiondb.integrations.claude_agent_sdk import SessionDBSessionStore

from .conftest import StoreFactory

pytestmark = pytest.mark.anyio


async def test_conformance_every_contract(open_fresh_store: StoreFactory) -> None:
    async def make() -> SessionDBSessionStore:
        return SessionDBSessionStore(await open_fresh_store())

    await run_session_store_conformance(make)  # no skip_optional: all 14 contracts


def test_every_optional_method_is_implemented() -> None:
    # The suite skips a contract for a method the store does not override; prove none is skipped.
    from claude_agent_sdk.types import SessionStore

    for method in ("list_sessions", "list_session_summaries", "delete", "list_subkeys"):
        assert getattr(SessionDBSessionStore, method) is not getattr(SessionStore, method)


def test_only_the_integration_module_imports_the_sdk() -> None:
    code = (
        "import sys, sessiondb, sessiondb.integrations, sessiondb.integrations._claude_keys, "
        "sessiondb.integrations._claude_entries; "
        "assert 'claude_agent_sdk' not in sys.modules, 'claude_agent_sdk imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
