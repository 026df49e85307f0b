"""The example chat server's answers to bad requests, in process (Starlette's test client runs its lifespan):
a body that is not a JSON object of two strings is a 400 that says what to send, never a 500."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")

from starlette.testclient import TestClient

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "chat_server.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("chat_server_under_test", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("SESSIONDB_STORE", str(tmp_path / "store"))
    with TestClient(load_example().app) as test_client:
        yield test_client


@pytest.mark.parametrize(
    "body",
    [b"not json", b"\xff\xfe", b"[1, 2]", b'"text"', b"null", b'{"turn_id": 1, "text": "hi"}', b'{"text": "hi"}'],
)
def test_a_body_that_is_not_a_turn_is_a_400(client: TestClient, body: bytes) -> None:
    answer = client.post("/sessions/alice/turns", content=body)
    assert answer.status_code == 400
    assert answer.json() == {"error": 'send {"turn_id": str, "text": str}'}
    assert client.get("/sessions/alice").status_code == 404  # nothing was recorded


def test_a_turn_is_recorded_once_however_often_it_is_sent(client: TestClient) -> None:
    for _ in range(2):
        answer = client.post("/sessions/alice/turns", json={"turn_id": "t1", "text": "hello"})
        assert answer.status_code == 200
        assert answer.json() == {"version": 3, "reply": "echo: hello"}
    shown = client.get("/sessions/alice").json()
    assert shown == {
        "version": 3,
        "messages": [{"role": "user", "text": "hello"}, {"role": "assistant", "text": "echo: hello"}],
    }
