"""The viewer's guards: the access token, the response headers, and which addresses count as local.

Pure ASGI (not ``BaseHTTPMiddleware``) so the live tail's event stream passes through
unbuffered. The token is compared in constant time (``hmac.compare_digest``).
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, urlencode

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

COOKIE = "sessiondb_token"
# Host names a loopback server answers to: any other Host header is a DNS-rebinding attempt.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a bind address) only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# A token travels in a URL, a cookie and a header: only characters none of them needs to quote
# (RFC 3986 unreserved). Others broke the cookie (a space, ``;``, ``"``) or the response (non-latin-1).
TOKEN_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")
MIN_TOKEN_LENGTH = 16


def new_token() -> str:
    return secrets.token_urlsafe(24)


def token_problem(token: str) -> str | None:
    """Why ``token`` cannot be the viewer's access token, or None when it can."""
    if len(token) < MIN_TOKEN_LENGTH:
        return f"must be at least {MIN_TOKEN_LENGTH} characters long"
    bad = sorted({c for c in token if c not in TOKEN_ALPHABET})
    if bad:
        shown = " ".join(repr(c) for c in bad[:5])
        return (
            f"may only use the letters A-Z a-z, digits and - _ . ~ (it has {shown}); "
            "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(24))'"
        )
    return None


def _headers(scope: Scope) -> dict[str, str]:
    return {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope.get("headers", [])}


def _presented(scope: Scope) -> tuple[str | None, bool]:
    """The token a request carries (header, cookie or ``?token=``) and whether it came in the query."""
    headers = _headers(scope)
    authorization = headers.get("authorization", "")
    if authorization.lower().startswith("bearer "):
        return authorization[7:].strip(), False
    for name, value in parse_qsl(scope.get("query_string", b"").decode("latin-1")):
        if name == "token":
            return value, True
    cookie = SimpleCookie()
    try:
        cookie.load(headers.get("cookie", ""))
    except Exception:  # a malformed Cookie header carries no token
        return None, False
    morsel = cookie.get(COOKIE)
    return (morsel.value if morsel is not None else None), False


class Guard:
    """Security headers on every response; with a token, every request must present it.

    A first visit with ``?token=T`` gets the token as an HttpOnly, SameSite=Strict
    cookie and a redirect to the same URL without it (so it leaves the address bar
    and the history); later requests present the cookie, or ``Authorization: Bearer T``.
    """

    def __init__(self, app: ASGIApp, *, token: str | None) -> None:
        self.app = app
        self.token = token.encode() if token is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nonce = secrets.token_urlsafe(16)
        scope.setdefault("state", {})["nonce"] = nonce
        if self.token is not None:
            presented, in_query = _presented(scope)
            if presented is None or not hmac.compare_digest(presented.encode(), self.token):
                await _plain(send, 401, "This sessiondb viewer needs its access token: open the URL it printed.")
                return
            if in_query:
                await self._set_cookie_and_redirect(scope, send, presented)
                return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += _security_headers(nonce)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)

    async def _set_cookie_and_redirect(self, scope: Scope, send: Send, token: str) -> None:
        query = [(k, v) for k, v in parse_qsl(scope.get("query_string", b"").decode("latin-1")) if k != "token"]
        location = scope.get("root_path", "") + scope["path"] + ("?" + urlencode(query) if query else "")
        cookie = f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/"
        await send(
            {
                "type": "http.response.start",
                "status": 303,
                "headers": [
                    (b"location", location.encode("latin-1", "replace")),
                    (b"set-cookie", cookie.encode("latin-1")),
                    *_security_headers(None),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b""})


def _security_headers(nonce: str | None) -> list[tuple[bytes, bytes]]:
    script = f"'nonce-{nonce}'" if nonce else "'none'"
    policy = (
        f"default-src 'none'; script-src {script}; style-src {script}; connect-src 'self'; "
        "img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )
    return [
        (b"content-security-policy", policy.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"x-frame-options", b"DENY"),
        (b"cache-control", b"no-store"),
    ]


async def _plain(send: Send, status: int, text: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain; charset=utf-8"), *_security_headers(None)],
        }
    )
    await send({"type": "http.response.body", "body": text.encode()})


__all__ = [
    "COOKIE",
    "LOOPBACK_HOSTS",
    "MIN_TOKEN_LENGTH",
    "TOKEN_ALPHABET",
    "Guard",
    "is_loopback",
    "new_token",
    "token_problem",
]
