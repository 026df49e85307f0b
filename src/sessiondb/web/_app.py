"""The viewer's ASGI app (Starlette): the session list, the session page and its live tail. GET only.

The app reads through a ``Store`` and never calls a method that writes; a store it
opens itself (from a path or URL) is a directory store opened ``read_only`` (no
lock taken, nothing changed on disk, another process may keep writing) or a
PostgreSQL store.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import quote, urlencode

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response, StreamingResponse
from starlette.routing import Route

from .._errors import (
    HistoryUnavailableError,
    InvalidInputError,
    InvalidSessionIdError,
    SessionDeletedError,
    SessionNotFoundError,
)
from .._events import Compacted, RecordedEvent, SessionDeleted, Usage
from .._store import Store, open_store
from ..integrations._claude_keys import decode_session_id
from ._history import timeline_at
from ._listing import (
    PINNED_CHOICES,
    SEARCH_ORDERS,
    SORTS,
    BadListRequest,
    ListFilters,
    search_page,
    session_page,
)
from ._model import ToolCall
from ._render import iso, render, render_entries, render_results, render_turn_head
from ._security import LOOPBACK_HOSTS, Guard, token_problem
from ._timeline import entries_of, pair_tools, pending_calls
from ._tree import fork_tree

# Top-level entries per session page and sessions per list page: pages stay small whatever the session's size.
DEFAULT_PAGE_SIZE = 200
DEFAULT_LIST_SIZE = 50
# Seconds between keep-alive comments on an idle event stream.
KEEPALIVE_SECONDS = 15.0
MAX_LIST_SIZE = 500


class _HTTPProblem(Exception):
    def __init__(self, status: int, heading: str, message: str) -> None:
        super().__init__(message)
        self.status, self.heading, self.message = status, heading, message
        self.deleted: SessionDeletedError | None = None  # set when the session was deleted


def session_url(root: str) -> Callable[..., str]:
    """The URL builder the templates call: ``session_url(sid, version=None, page=None)``."""

    def build(session_id: str, version: int | None = None, page: int | None = None) -> str:
        query = {}
        if version is not None:
            query["v"] = str(version)
        if page is not None:
            query["page"] = str(page)
        return f"{root}/s/{quote(session_id, safe='')}" + ("?" + urlencode(query) if query else "")

    return build


def _int_param(request: Request, name: str, *, minimum: int, empty_ok: bool = True) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or (raw == "" and empty_ok):
        return None
    try:
        value = int(raw)
    except ValueError:
        raise _HTTPProblem(400, "Bad request", f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise _HTTPProblem(400, "Bad request", f"{name} must be at least {minimum}, got {value}")
    return value


def origin_of(session_id: str) -> str | None:
    """Where a session came from when its id says so (Claude Code transcripts name project and session)."""
    key = decode_session_id(session_id)
    if key is None:
        return None
    text = f"Claude Code: project {key.project_key}, session {key.session_id}"
    if key.subpath:
        text += f", {key.subpath}"
    return text


class Viewer:
    """The pages, over one open store."""

    def __init__(self, store: Store | None, *, label: str, page_size: int) -> None:
        self.store = store
        self.label = label
        self.page_size = page_size
        self.keepalive_seconds = KEEPALIVE_SECONDS

    def _context(self, request: Request) -> dict[str, Any]:
        root = request.scope.get("root_path", "")
        return {
            "root": root,
            "nonce": request.scope.get("state", {}).get("nonce"),
            "store_label": self.label,
            "session_url": session_url(root),
            "links": True,
            "export": False,
        }

    def _store(self) -> Store:
        assert self.store is not None, "the store opens in the app's lifespan"
        return self.store

    async def _info(self, session_id: str) -> Any:
        """The session's summary, or the page every view of a missing session shows (410 deleted, 404 unknown)."""
        try:
            return await self._store().session_info(session_id)
        except SessionDeletedError as exc:
            raise _deleted(exc) from None
        except (SessionNotFoundError, InvalidSessionIdError):
            raise _HTTPProblem(404, "No such session", f"This store has no session {session_id!r}.") from None

    async def list_page(self, request: Request) -> Response:
        params = request.query_params
        filters = ListFilters(
            title=params.get("title", ""),
            tag=params.get("tag", ""),
            scope=params.get("scope", ""),
            pinned=params.get("pinned", ""),
            sort=params.get("sort", "updated") or "updated",
        )
        limit = _int_param(request, "limit", minimum=1) or DEFAULT_LIST_SIZE
        if limit > MAX_LIST_SIZE:
            raise _HTTPProblem(400, "Bad request", f"limit must be at most {MAX_LIST_SIZE}, got {limit}")
        cursor = params.get("cursor") or None
        query = params.get("q", "").strip()
        # Search hits are events, not sessions: the title, pinned and sort controls do not apply to them.
        ignored = [n for n in ("title", "pinned", "sort") if query and params.get(n, "") not in ("", "updated")]
        within = params.get("session") or None
        order = params.get("order", "relevance") or "relevance"
        sessions: list[Any] = []
        hits: list[Any] | None = None
        try:
            if query:
                if within is not None:
                    await self._info(within)
                hits, next_cursor = await search_page(
                    self._store(), query, filters, session_id=within, order=order, limit=limit, cursor=cursor
                )
            else:
                sessions, next_cursor = await session_page(self._store(), filters, limit=limit, cursor=cursor)
        except BadListRequest as exc:
            raise _HTTPProblem(400, "Bad request", str(exc)) from None
        kept = {k: v for k, v in params.items() if k not in ("cursor", "token") and v}
        root = request.scope.get("root_path", "")
        next_url = f"{root}/?" + urlencode({**kept, "cursor": next_cursor}) if next_cursor else None
        first_url = f"{root}/?" + urlencode(kept) if cursor else None
        return HTMLResponse(
            render(
                "list.html",
                **self._context(request),
                sessions=sessions,
                hits=hits,
                q=query,
                within=within,
                order=order,
                search_orders=SEARCH_ORDERS,
                f_title=filters.title,
                f_tag=filters.tag,
                f_scope=filters.scope,
                f_pinned=filters.pinned,
                pinned_choices=PINNED_CHOICES,
                sort=filters.sort,
                sorts=SORTS,
                ignored=ignored,
                filtered=any(kept.get(k) for k in ("q", "title", "tag", "scope", "pinned")),
                next_url=next_url,
                first_url=first_url,
            )
        )

    async def session(self, request: Request) -> Response:
        session_id = request.path_params["session_id"]
        version = _int_param(request, "v", minimum=0, empty_ok=False)  # docs/viewer.md: "v=" is not a version
        page = _int_param(request, "page", minimum=1)
        store = self._store()
        info = await self._info(session_id)
        if version is not None and version > info.version:
            raise _HTTPProblem(
                404,
                "No such version",
                f"Session {session_id!r} has versions 0 to {info.version}; there is no v{version}.",
            )
        shown = info.version if version is None else version
        try:
            timeline = await timeline_at(store, session_id, shown, page=page, page_size=self.page_size, summary=info)
        except HistoryUnavailableError:
            raise _HTTPProblem(
                410, "No longer stored", f"Session {session_id!r} at v{shown} was removed by retention."
            ) from None
        tree = fork_tree(info, await store.list_sessions())
        root = request.scope.get("root_path", "")
        live = None
        if shown == info.version and timeline.page == timeline.pages:
            live = f"{root}/s/{quote(session_id, safe='')}/events?after={shown}"
        return HTMLResponse(
            render(
                "session.html",
                **self._context(request),
                owner=session_id,
                info=info,
                t=timeline,
                latest=info.version,
                version_param=version,
                tree=tree,
                live=live,
                origin=origin_of(session_id),
                title=timeline.title,
                tags=timeline.tags,
                pinned=timeline.pinned,
                scope=info.scope,
            )
        )

    async def events(self, request: Request) -> Response:
        """Server-sent events: each new event of the session as rendered HTML (``event: entry``)."""
        session_id = request.path_params["session_id"]
        after = _int_param(request, "after", minimum=0) or 0
        last_id = request.headers.get("last-event-id", "")
        if last_id.isdigit():  # a reconnecting browser resumes after what it already has
            after = max(after, int(last_id))
        try:
            info = await self._info(session_id)
        except _HTTPProblem as problem:
            if problem.deleted is None:
                raise
            # Deleted before the stream (re)connected: say so as the stream would have, not as an error
            # the browser would retry (or show as "interrupted").
            return _gone_response(problem.deleted)
        if after > info.version:  # the stream would wait for versions that may never come, without saying why
            raise _HTTPProblem(
                400,
                "Bad request",
                f"Session {session_id!r} is at v{info.version}; after={after} is past it (use 0 to {info.version}).",
            )
        context = self._context(request)
        context["owner"] = session_id
        live = LiveTail(session_id, context)
        try:
            await live.start(self._store(), after, self.page_size)
        except SessionDeletedError as exc:
            return _gone_response(exc)
        subscription = self._store().subscribe(session_id, after=after)

        async def stream() -> AsyncIterator[str]:
            yield "retry: 2000\n\n"
            async with subscription:
                async for recorded in _with_keepalive(subscription, self.keepalive_seconds):
                    if recorded is None:
                        yield ": keepalive\n\n"  # a comment: proxies keep the stream open, a gone client is noticed
                        continue
                    yield live.event(recorded)
                    if type(recorded.event) is SessionDeleted:
                        return

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"cache-control": "no-store", "x-accel-buffering": "no"}
        )


async def _with_keepalive(
    subscription: AsyncIterator[RecordedEvent], seconds: float
) -> AsyncIterator[RecordedEvent | None]:
    """The subscription's events, and None after every ``seconds`` without one."""
    pending: asyncio.Future[RecordedEvent] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(subscription))
            done, _ = await asyncio.wait((pending,), timeout=seconds)
            if not done:
                yield None
                continue
            try:
                recorded = pending.result()
            except StopAsyncIteration:
                return
            pending = None
            yield recorded
    finally:
        if pending is not None:
            pending.cancel()


async def _no_icon(_request: Request) -> Response:
    return Response(status_code=204)


class LiveTail:
    """What one live tail has shown: the page it follows, then each new event as a reload would place it.

    The calls the page shows without a result, its last turn's number and usage are learned
    when the stream starts. A result arriving for such a call is sent as
    ``<div class="result" data-result-for=ID>``, which the page's script puts in place of
    the call's "no result recorded"; a user message starts the next turn; a turn whose
    usage grew gets its heading again (``data-turn-head=N``). A conversation compaction
    moves messages the page shows into its fold: the tail asks for a reload (``event: reload``).
    """

    def __init__(self, session_id: str, context: dict[str, Any]) -> None:
        self.session_id = session_id
        self.context = context
        self.seen: set[str] = set()  # integration message ids shown (LangGraph checkpoints repeat them)
        self.pending: dict[str, ToolCall] = {}
        self.turn = 0
        self.turn_usage = Usage()

    async def start(self, store: Store, after: int, page_size: int) -> None:
        """Learn what the newest page at ``after`` shows (the page this stream continues)."""
        try:
            timeline = await timeline_at(store, self.session_id, after, page_size=page_size, seen=self.seen)
        except HistoryUnavailableError:
            return  # nothing of it is stored: the page showed no call either
        self.pending = pending_calls(timeline)
        if timeline.turns:
            self.turn, self.turn_usage = timeline.turns[-1].number, timeline.turns[-1].usage

    def event(self, recorded: RecordedEvent) -> str:
        """One server-sent event: ``gone`` for the deletion, ``reload`` for a compaction, else ``entry``."""
        event = recorded.event
        if type(event) is SessionDeleted:
            return _gone_event(recorded.version)
        if type(event) is Compacted and event.rewrite_context:
            return f"id: {recorded.version}\nevent: reload\ndata: compaction\n\n"
        late: list[ToolCall] = []
        entries = pair_tools(entries_of(recorded, self.session_id, self.seen), self.pending, late)
        html = render_results(late, **self.context)
        grown: dict[int, Usage] = {}
        for entry in entries:
            if entry.kind == "message" and entry.role == "user":
                self.turn, self.turn_usage = self.turn + 1, Usage()
            html += render_entries([entry], **self.context)
            if entry.usage is not None:
                self.turn_usage = self.turn_usage + entry.usage
                grown[self.turn] = self.turn_usage
        html += "".join(render_turn_head(number, usage, **self.context) for number, usage in grown.items())
        data = "".join(f"data: {line}\n" for line in html.splitlines() or [""])
        return f"id: {recorded.version}\nevent: entry\n{data}\n"


def _gone_event(version: int | None) -> str:
    return f"id: {version or ''}\nevent: gone\ndata: deleted\n\n"


def _gone_response(exc: SessionDeletedError) -> Response:
    async def stream() -> AsyncIterator[str]:
        yield _gone_event(exc.version)

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"cache-control": "no-store"})


def _deleted(exc: SessionDeletedError) -> _HTTPProblem:
    """The page of a deleted session: which, when, and that its history is not readable any more."""
    when = f" at v{exc.version}" if exc.version is not None else ""
    if exc.deleted_at_ms:
        when += f" ({iso(exc.deleted_at_ms)})"
    problem = _HTTPProblem(
        410,
        "Session deleted",
        f"Session {exc.session_id!r} was deleted{when}. A deleted session's history is not readable "
        "through the store (its space is freed by storage compaction), and its id is not reused.",
    )
    problem.deleted = exc
    return problem


def create_app(
    store: Store | str,
    *,
    token: str | None = None,
    allow_any_host: bool = False,
    page_size: int = DEFAULT_PAGE_SIZE,
    label: str | None = None,
    keepalive_seconds: float = KEEPALIVE_SECONDS,
    host: str | None = None,
) -> Starlette:
    """The viewer as an ASGI app over ``store``: an open ``Store``, or a store directory or PostgreSQL URL.

    A path or URL is opened in the app's lifespan (a directory read-only) and closed
    after it; an open ``Store`` stays the caller's. ``token``: every request must
    present it (``?token=`` once, then a cookie; or ``Authorization: Bearer``).
    Without ``allow_any_host`` only requests whose Host header names this machine
    (127.0.0.1, localhost, ::1, and ``host``: the address it is bound to, e.g. 127.0.0.2)
    are served, which stops DNS-rebinding pages. A ``token`` outside ``A-Za-z0-9-_.~`` or
    shorter than 16 characters is ``InvalidInputError`` (it must fit a URL and a cookie unquoted).
    ``label`` names the store in the page header (default: the path or URL, without a password).
    An idle live tail sends a keep-alive comment every ``keepalive_seconds``.
    """
    if token is not None and (why := token_problem(token)) is not None:
        raise InvalidInputError(f"the viewer's token {why}")
    owned = isinstance(store, str)
    if label is None:
        label = store if isinstance(store, str) else "store"
    viewer = Viewer(None if isinstance(store, str) else store, label=_label(label), page_size=page_size)
    viewer.keepalive_seconds = keepalive_seconds

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        if not isinstance(store, str):
            yield
            return
        url = store.startswith(("postgresql://", "postgres://"))
        async with open_store(store, read_only=not url) as opened:
            viewer.store = opened
            yield

    async def problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, _HTTPProblem)
        html = render(
            "error.html", **viewer._context(request), status=exc.status, heading=exc.heading, message=exc.message
        )
        return HTMLResponse(html, status_code=exc.status)

    hosts = ["*"] if allow_any_host else list(LOOPBACK_HOSTS)
    if host is not None and not allow_any_host:  # Host: 127.0.0.2:8765 or [::1]:8765 (the port is not compared)
        bare = host.strip("[]").lower()
        hosts += [bare, f"[{bare}]"] if ":" in bare else [bare]
    app = Starlette(
        routes=[
            Route("/", viewer.list_page, methods=["GET"]),
            Route("/s/{session_id}", viewer.session, methods=["GET"]),
            Route("/s/{session_id}/events", viewer.events, methods=["GET"]),
            Route("/favicon.ico", _no_icon, methods=["GET"]),  # browsers ask; a 404 would log an error
        ],
        middleware=[Middleware(Guard, token=token), Middleware(TrustedHostMiddleware, allowed_hosts=hosts)],
        exception_handlers={_HTTPProblem: problem},
        lifespan=lifespan if owned else None,
    )
    return app


def _label(target: str) -> str:
    """A store as the header shows it: a URL without its password."""
    if "://" in target and "@" in target:
        scheme, rest = target.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        return f"{scheme}://{credentials.split(':', 1)[0]}@{host}"
    return target


__all__ = ["DEFAULT_PAGE_SIZE", "Viewer", "create_app", "origin_of", "session_url"]
