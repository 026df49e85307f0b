"""A chat server that records every turn in sessiondb: a Starlette app, served by uvicorn with several workers.

Run it::

    pip install '.[examples]'
    python examples/chat_server.py postgresql://localhost/chat --workers 4 --port 8000
    curl -X POST localhost:8000/sessions/alice/turns -d '{"turn_id": "t1", "text": "hello"}'
    curl localhost:8000/sessions/alice

or ``SESSIONDB_STORE=sessions/ uvicorn --app-dir examples chat_server:app``. The store is a directory or a
PostgreSQL URL. Each worker process opens the store in the app's lifespan (never at import time: a process
forked after a store was opened must not use it). ``POST /sessions/{id}/turns`` records the user's message and
the assistant's reply as ONE atomic append, keyed by ``turn_id`` so a retried request is not stored twice, and
answers 200 only once the turn is durable. A retry (the same ``turn_id`` and text) is answered with the turn as
stored; the same ``turn_id`` with other text is 409 ``{"error": message, "kind": "TurnIdReused"}`` (a turn id
names one turn) and stores nothing. The "assistant" here echoes; a real one would call a model first. A body
that is not a JSON object of two strings (not JSON, not UTF-8, nested too deep to decode) is 400 with what to
send. Every sessiondb error a route meets is answered as JSON ``{"error": message, "kind": class name}`` with
the status ``ERROR_STATUS`` gives it: 400 for a refused id or text, 404 unknown, 410 deleted (by any process),
503 when the store cannot serve now.

Several worker processes may share one store directory (each is one of several writers, taking a lock per
batch) on one host; PostgreSQL serves workers on any number of hosts.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import sessiondb
from sessiondb import Message, Text

STORE_VARIABLE = "SESSIONDB_STORE"


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    target = os.environ.get(STORE_VARIABLE)
    if not target:
        raise RuntimeError(f"set {STORE_VARIABLE} to a store directory or a PostgreSQL URL")
    async with sessiondb.open_store(target) as store:
        app.state.store = store
        yield


def reply_to(text: str) -> str:
    return f"echo: {text}"


async def record_turn(request: Request) -> JSONResponse:
    store: sessiondb.Store = request.app.state.store
    session_id = request.path_params["session_id"]
    body = await json_body(request)
    turn_id, text = (body.get("turn_id"), body.get("text")) if isinstance(body, dict) else (None, None)
    if not isinstance(turn_id, str) or not isinstance(text, str):
        return JSONResponse({"error": 'send {"turn_id": str, "text": str}'}, status_code=400)
    events = (Message.user(text), Message.assistant([Text(reply_to(text))]))
    ids = [f"{turn_id}/user", f"{turn_id}/assistant"]
    try:
        version = await store.append(session_id, *events, event_ids=ids)
    except sessiondb.SessionDeletedError:
        raise  # deleted (by any process): its id is never reused, so not created again; 410 below
    except sessiondb.SessionNotFoundError:
        with contextlib.suppress(sessiondb.SessionExistsError):  # another request created it first
            await store.create_session(session_id=session_id)
        version = await store.append(session_id, *events, event_ids=ids)
    # A retry is answered with the turn as stored (a model's reply may differ from one call to the next);
    # the same turn id with other text is another turn under a used name: 409, nothing written.
    asked, reply = await stored_turn(store, session_id, version, ids)
    if asked != text:
        message = (
            f"turn {turn_id!r} of session {session_id!r} is recorded already, with other text; a turn id names "
            "one turn: send a new turn_id for a new turn (nothing was written)"
        )
        return JSONResponse({"error": message, "kind": "TurnIdReused"}, status_code=409)
    return JSONResponse({"version": version, "reply": reply})


async def json_body(request: Request) -> object:
    """The request's JSON body, or None when it is not JSON that can be decoded here."""
    try:
        return await request.json()
    except (ValueError, RecursionError):
        # Not JSON (json.JSONDecodeError and UnicodeDecodeError are ValueErrors), or nested deeper than the
        # decoder's recursion allows ('[' * 2000 ...): a bad request either way, never a 500.
        return None


async def stored_turn(store: sessiondb.Store, session_id: str, version: int, ids: list[str]) -> tuple[str, str]:
    """(user text, reply) of the turn whose two events end at ``version`` (the append's, or its first attempt's)."""
    recorded = [event async for event in store.read(session_id, after=version - 2, up_to=version)]
    texts = {event.event_id: event.event.text for event in recorded if isinstance(event.event, Message)}
    return texts.get(ids[0], ""), texts.get(ids[1], "")


async def show_session(request: Request) -> JSONResponse:
    store: sessiondb.Store = request.app.state.store
    session = await store.load(request.path_params["session_id"])
    messages = [{"role": message.role, "text": message.text} for message in session.messages]
    return JSONResponse({"version": session.version, "messages": messages})


# The answer to each sessiondb error a route lets through (the most specific class listed wins): what the
# client sent is the problem (4xx), or the store cannot serve now (503, retry later). Always JSON.
ERROR_STATUS: dict[type[sessiondb.SessionDBError], int] = {
    sessiondb.InvalidInputError: 400,  # a bad session id (InvalidSessionIdError), text the store refuses ...
    sessiondb.EventTooLargeError: 413,
    sessiondb.SessionNotFoundError: 404,
    sessiondb.SessionDeletedError: 410,  # deleted, by this process or another: gone for good
    sessiondb.ConflictError: 409,
    sessiondb.HistoryUnavailableError: 410,
    sessiondb.StoreClosedError: 503,  # shutting down
    sessiondb.StoreBrokenError: 503,  # a failed write: an operator reopens the store (restarts the worker)
    sessiondb.BackendUnavailableError: 503,
    sessiondb.ResourceExhaustedError: 503,
    sessiondb.SessionDBError: 500,  # anything else (corruption ...) is the server's problem, said in JSON too
}


def error_status(kind: type[sessiondb.SessionDBError]) -> int:
    for base in kind.__mro__:
        if base in ERROR_STATUS:
            return ERROR_STATUS[base]  # type: ignore[index]
    return 500  # pragma: no cover - SessionDBError is in the table


async def sessiondb_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, sessiondb.SessionDBError)
    status = error_status(type(exc))
    headers = {"Retry-After": "1"} if status == 503 else None
    return JSONResponse({"error": str(exc), "kind": type(exc).__name__}, status_code=status, headers=headers)


async def health(request: Request) -> JSONResponse:
    """Which worker answered: its pid (the store opened in its lifespan, or it would not serve)."""
    return JSONResponse({"pid": os.getpid(), "closed": request.app.state.store.closed})


app = Starlette(
    routes=[
        Route("/sessions/{session_id}/turns", record_turn, methods=["POST"]),
        Route("/sessions/{session_id}", show_session),
        Route("/health", health),
    ],
    lifespan=lifespan,
    exception_handlers={sessiondb.SessionDBError: sessiondb_error},
)


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="a chat server recording every turn in sessiondb")
    parser.add_argument("store", help="a store directory or a PostgreSQL URL")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    os.environ[STORE_VARIABLE] = args.store  # the workers (spawned processes) read it in their lifespan
    uvicorn.run(
        "chat_server:app",
        app_dir=str(Path(__file__).resolve().parent),
        host=args.host,
        port=args.port,
        workers=args.workers,
    )


if __name__ == "__main__":
    main()
