"""A scripted Anthropic Messages API on 127.0.0.1, for running the real Claude Code program offline.

Every ``POST /v1/messages`` gets the scripted reply whose cue appears in the request's
last user message (``"OK."`` when none does, e.g. for a side request the program makes on
its own), streamed as server-sent events when the request asks for a stream, as one
JSON message otherwise. Each request body is kept in ``requests`` for the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

USAGE = {"input_tokens": 21, "output_tokens": 7, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}


class ScriptedMessagesAPI:
    def __init__(self, replies: dict[str, str]) -> None:
        self.replies = replies
        self.requests: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self.base_url = ""

    def _reply_text(self, body: dict[str, Any]) -> str:
        users = [m for m in body.get("messages") or [] if m.get("role") == "user"] or [{}]
        last = json.dumps(users[-1].get("content", ""))
        return next((reply for cue, reply in self.replies.items() if cue in last), "OK.")

    async def messages(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        text = self._reply_text(body)
        message = {
            "id": f"msg_scripted_{next(self._ids)}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "claude-sonnet-4-5"),
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": USAGE,
        }
        if not body.get("stream"):
            return JSONResponse(message)
        return StreamingResponse(_events(message), media_type="text/event-stream")

    async def count_tokens(self, request: Request) -> Response:
        return JSONResponse({"input_tokens": 21})

    async def other(self, request: Request) -> Response:
        return JSONResponse({})

    @contextlib.asynccontextmanager
    async def serve(self) -> AsyncIterator[ScriptedMessagesAPI]:
        app = Starlette(
            routes=[
                Route("/v1/messages", self.messages, methods=["POST"]),
                Route("/v1/messages/count_tokens", self.count_tokens, methods=["POST"]),
                Route("/{path:path}", self.other, methods=["GET", "POST"]),
            ]
        )
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
        try:
            while not server.started:
                await asyncio.sleep(0.01)  # uvicorn has no started event to await
            yield self
        finally:
            server.should_exit = True
            await asyncio.wait_for(task, timeout=30)
            sock.close()


async def _events(message: dict[str, Any]) -> AsyncIterator[str]:
    start = {**message, "content": [], "stop_reason": None, "usage": {**USAGE, "output_tokens": 1}}
    text = message["content"][0]["text"]
    for kind, data in (
        ("message_start", {"type": "message_start", "message": start}),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": 7},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ):
        yield f"event: {kind}\ndata: {json.dumps(data)}\n\n"
