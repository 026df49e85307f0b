"""``sessiondb export --html``: one session as one self-contained HTML file (no script, styles inline)."""

from __future__ import annotations

import contextlib
import os

from .._errors import InvalidInputError
from .._store import Store
from .._threads import run_to_completion
from ._app import origin_of
from ._history import readable_history
from ._render import render
from ._timeline import build_timeline
from ._tree import fork_tree


async def render_session_html(store: Store, session_id: str, *, at_version: int | None = None) -> str:
    """The whole session (up to ``at_version``) as one HTML page: every event, no paging, no links out.

    Raises what ``Store.session_info`` and ``Store.read`` raise (``SessionNotFoundError``,
    ``InvalidInputError`` for a version the session does not have).
    """
    info = await store.session_info(session_id)
    if at_version is not None and (type(at_version) is not int or not 0 <= at_version <= info.version):
        raise InvalidInputError(f"session {session_id!r} has versions 0..{info.version}; got {at_version!r}")
    shown = info.version if at_version is None else at_version
    history = await readable_history(store, session_id, shown)
    timeline = build_timeline(session_id, history.events, version=shown, floor=history.floor, before=history.before)
    return render(
        "session.html",
        root="",
        nonce=None,
        store_label=f"{session_id} at v{shown}",
        session_url=None,
        links=False,
        export=True,
        owner=session_id,
        info=info,
        t=timeline,
        latest=info.version,
        version_param=None,
        tree=fork_tree(info, await store.list_sessions()),
        live=None,
        origin=origin_of(session_id),
        title=timeline.title,
        tags=timeline.tags,
        pinned=timeline.pinned,
        scope=info.scope,
    )


def _write_durably(path: str, data: bytes) -> None:
    """Temp file, fsync, rename over ``path``, fsync the directory: a reader sees the old file or the new one."""
    directory = os.path.dirname(os.path.abspath(path))
    temporary = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        # 0600 like the store's own files: a transcript holds what the agent saw.
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


async def export_session_html(
    store: Store, session_id: str, path: str | os.PathLike[str], *, at_version: int | None = None
) -> int:
    """Write the session's page to ``path`` (replaced atomically); return the bytes written."""
    data = (await render_session_html(store, session_id, at_version=at_version)).encode("utf-8")
    await run_to_completion(_write_durably, os.fspath(path), data)
    return len(data)


__all__ = ["export_session_html", "render_session_html"]
