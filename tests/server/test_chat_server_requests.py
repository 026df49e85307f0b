"""The example chat server's answers to bad requests, in process (Starlette's test client runs its lifespan):
a body that is not a JSON object of two strings is a 400 that says what to send; every sessiondb error a route
meets (a refused session id, an unknown or deleted session ...) is a fitting status with a JSON message, never
an unhandled 500."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")

from starlette.testclient import TestClient

import sessiondb

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "chat_server.py"
TURN = {"turn_id": "t1", "text": "hello"}
ERRORS = [
    getattr(sessiondb, name)
    for name in sessiondb.__all__
    if isinstance(getattr(sessiondb, name), type) and issubclass(getattr(sessiondb, name), sessiondb.SessionDBError)
]


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
    [
        b"not json",
        b"\xff\xfe",
        b"[1, 2]",
        b'"text"',
        b"null",
        b'{"turn_id": 1, "text": "hi"}',
        b'{"text": "hi"}',
        # Nested deeper than the JSON decoder's recursion allows (RecursionError, not a ValueError): alone,
        # and inside a turn that is otherwise valid.
        b"[" * 2000 + b"]" * 2000,
        b'{"turn_id": "t1", "text": "hi", "extra": ' + b"[" * 2000 + b"]" * 2000 + b"}",
    ],
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


def test_a_turn_id_sent_again_with_other_text_is_a_409_and_the_stored_turn_stays(client: TestClient) -> None:
    assert client.post("/sessions/alice/turns", json={"turn_id": "t1", "text": "hello"}).status_code == 200
    answer = client.post("/sessions/alice/turns", json={"turn_id": "t1", "text": "DIFFERENT"})
    assert answer.status_code == 409
    assert answer.json()["kind"] == "TurnIdReused" and "'t1'" in answer.json()["error"]
    # The retry of what was stored is still a 200 with the stored reply; nothing of the other text was written.
    again = client.post("/sessions/alice/turns", json={"turn_id": "t1", "text": "hello"})
    assert again.status_code == 200 and again.json() == {"version": 3, "reply": "echo: hello"}
    assert client.get("/sessions/alice").json()["messages"] == [
        {"role": "user", "text": "hello"},
        {"role": "assistant", "text": "echo: hello"},
    ]
    # A later turn moves on; sending the first turn again then still answers with the first turn.
    assert client.post("/sessions/alice/turns", json={"turn_id": "t2", "text": "next"}).json()["version"] == 5
    assert client.post("/sessions/alice/turns", json={"turn_id": "t1", "text": "hello"}).json() == {
        "version": 3,
        "reply": "echo: hello",
    }
    assert client.post("/sessions/alice/turns", json={"turn_id": "t1", "text": "next"}).status_code == 409


def test_a_session_id_the_store_refuses_is_a_400(client: TestClient) -> None:
    long_id = "a" * 300
    for answer in (client.get(f"/sessions/{long_id}"), client.post(f"/sessions/{long_id}/turns", json=TURN)):
        assert answer.status_code == 400
        assert answer.json()["kind"] == "InvalidSessionIdError" and "bytes" in answer.json()["error"]


@pytest.mark.parametrize(("path", "status"), [("%FF", 404), ("%ED%A0%80", 404), ("%00", 400), ("a%00b", 400)])
def test_a_session_id_that_decodes_oddly_is_answered_in_json(client: TestClient, path: str, status: int) -> None:
    """Percent-escapes that are not UTF-8 (a lone surrogate's bytes too) or hold a NUL: JSON, never a 500."""
    for answer in (client.get(f"/sessions/{path}"), client.post(f"/sessions/{path}/turns", json=TURN)):
        expected = status if answer.request.method == "GET" else (200 if status == 404 else 400)
        assert answer.status_code == expected and answer.headers["content-type"] == "application/json", answer.text


def test_an_unknown_session_is_a_404(client: TestClient) -> None:
    answer = client.get("/sessions/nobody")
    assert answer.status_code == 404 and "'nobody'" in answer.json()["error"]


def test_a_session_another_process_deleted_is_a_410_and_not_recreated(client: TestClient, tmp_path: Path) -> None:
    assert client.post("/sessions/alice/turns", json=TURN).status_code == 200
    # Another process (a CLI, an admin job) deletes the session while the server runs.
    deleter = (
        "import asyncio, sys, sessiondb\n"
        "async def main():\n"
        "    async with sessiondb.open_store(sys.argv[1]) as store:\n"
        "        await store.delete_session('alice')\n"
        "asyncio.run(main())\n"
    )
    subprocess.run([sys.executable, "-c", deleter, str(tmp_path / "store")], check=True, timeout=120)
    for answer in (
        client.post("/sessions/alice/turns", json={"turn_id": "t2", "text": "still there?"}),
        client.post("/sessions/alice/turns", json=TURN),  # a retry of a turn it had stored
        client.get("/sessions/alice"),
    ):
        assert answer.status_code == 410
        assert answer.json()["kind"] == "SessionDeletedError" and "was deleted" in answer.json()["error"]


def test_a_turn_the_store_refuses_is_a_400(client: TestClient) -> None:
    assert client.post("/sessions/bob/turns", json=TURN).status_code == 200
    # Too long an id, a NUL in an id, a lone surrogate in the text (valid JSON, not storable UTF-8).
    for body in (
        b'{"turn_id": "' + b"x" * 300 + b'", "text": "x"}',
        b'{"turn_id": "t\\u0000", "text": "x"}',
        b'{"turn_id": "t", "text": "\\ud800"}',
    ):
        answer = client.post("/sessions/bob/turns", content=body)
        assert answer.status_code == 400 and "'bob'" in answer.json()["error"], answer.json()
    assert client.get("/sessions/bob").json()["version"] == 3  # nothing of them was written


@pytest.mark.parametrize("kind", sorted(ERRORS, key=lambda kind: kind.__name__))
def test_every_sessiondb_error_has_an_answer(kind: type[sessiondb.SessionDBError]) -> None:
    status = load_example().error_status(kind)
    if issubclass(kind, (sessiondb.InvalidInputError, sessiondb.SessionNotFoundError, sessiondb.ConflictError)):
        assert 400 <= status < 500
    elif issubclass(kind, (sessiondb.StoreClosedError, sessiondb.StoreBrokenError, sessiondb.BackendUnavailableError)):
        assert status == 503
    else:
        assert 400 <= status < 600
