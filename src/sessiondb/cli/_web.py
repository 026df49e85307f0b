"""``serve`` (the read-only web viewer under uvicorn) and ``export --html``; the web extra is imported here only."""

from __future__ import annotations

import argparse
import gc
import os
import socket
from typing import Any
from urllib.parse import quote

from .._paths import names_directory
from ._context import PROG, CommandError, _Output, _reading, _session_info, shown_store

TOKEN_VARIABLE = "SESSIONDB_VIEWER_TOKEN"


def _web() -> Any:
    try:
        from .. import web
    except ImportError as exc:
        raise CommandError(
            f"the web viewer needs the web extra ({exc.name} is missing): pip install '.[web]' in the sessiondb "
            "checkout (-e '.[web]' for an editable install)"
        ) from None
    return web


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket, bound before uvicorn starts so ``--port 0`` can print the port it got."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise CommandError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


async def cmd_serve(args: argparse.Namespace, out: _Output) -> int:
    web = _web()
    import uvicorn

    loopback = web.is_loopback(args.host)
    if not loopback and not args.allow_remote:
        raise CommandError(
            f"{args.host} is not a loopback address: other machines could read every session. "
            "Pass --allow-remote to serve them (every request must then carry the printed token)"
        )
    token = args.token or os.environ.get(TOKEN_VARIABLE) or None
    if not loopback and token is None:
        token = web.new_token()
    if token is not None and (problem := web.token_problem(token)) is not None:
        source = "--token" if args.token else f"${TOKEN_VARIABLE}"
        raise CommandError(f"{source} {problem}")
    async with _reading(args.store) as store:
        # The opened store's index is long-lived: frozen, full collections (set off by the
        # events a page decodes) no longer rescan it; they cost 150 ms at 10,000 sessions.
        gc.freeze()
        sock = _bind(args.host, args.port)
        port = sock.getsockname()[1]
        app = web.create_app(
            store, token=token, allow_any_host=not loopback, label=shown_store(args.store), host=args.host
        )
        shown = f"[{args.host}]" if ":" in args.host else args.host
        url = f"http://{shown}:{port}/" + (f"?token={quote(token, safe='')}" if token else "")
        out.line(f"{PROG} viewer of {shown_store(args.store)} on {url}  (read-only; Ctrl-C stops)")
        out.stdout.flush()
        config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2, access_log=False)
        server = uvicorn.Server(config)
        try:
            await server.serve(sockets=[sock])
        finally:
            sock.close()
    return 0


async def export_html(args: argparse.Namespace, out: _Output) -> int:
    web = _web()
    if args.all:
        raise CommandError("export --html writes one session: sessiondb export --html STORE SESSION FILE")
    if args.file is None:
        raise CommandError("export --html needs a session and a file: sessiondb export --html STORE SESSION FILE")
    target = os.path.expanduser(args.file)
    # As the JSONL export: "newdir/" names a directory (created if missing), and an existing directory
    # receives SESSION.html; otherwise the file's directory must exist (a typo should not create one).
    if not names_directory(target) and not os.path.isdir(target):
        parent = os.path.dirname(os.path.abspath(target))
        if not os.path.isdir(parent):
            raise CommandError(f"cannot write {args.file}: directory {parent} does not exist")
    async with _reading(args.store) as store:
        await _session_info(store, args)
        info = await store.session_info(args.session)
        if args.at is not None and args.at > info.version:
            raise CommandError(f"session {args.session!r} has versions 0..{info.version}; --at {args.at} is past them")
        written = await web.export_session_html(store, args.session, target, at_version=args.at)
    out.note(
        f"exported session {args.session} to {web.html_export_path(args.session, target)} ({written} bytes of HTML)"
    )
    return 0


__all__ = ["cmd_serve", "export_html"]
