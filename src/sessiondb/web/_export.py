"""``sessiondb export --html``: one session as one self-contained HTML file (no script, styles inline)."""

from __future__ import annotations

import os

from .._errors import InvalidInputError
from .._files import make_private_directories, write_private_file
from .._paths import names_directory, not_a_directory, user_path
from .._store import Store
from .._threads import run_to_completion
from ._app import origin_of
from ._history import timeline_at
from ._render import render
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
    timeline = await timeline_at(store, session_id, shown, summary=info)
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


HTML_SUFFIX = ".html"


def html_export_path(session_id: str, destination: str | os.PathLike[str]) -> str:
    """Where ``export_session_html`` writes: ``destination``, or ``<destination>/<session_id>.html`` when it
    names a directory (an existing one, or a ``str`` ending in a separator), as the JSONL export does."""
    text = user_path(destination, what="an export destination")
    if names_directory(text) or os.path.isdir(text):
        return os.path.join(text, f"{session_id}{HTML_SUFFIX}")
    return text


async def export_session_html(
    store: Store, session_id: str, path: str | os.PathLike[str], *, at_version: int | None = None
) -> int:
    """Write the session's page to ``path`` (replaced atomically); return the bytes written.

    ``path`` may name a directory, as for ``export_claw_session``: an existing one, or a ``str`` ending in a
    separator (created if missing); the page is then ``<session_id>.html`` in it (``html_export_path``).
    """
    directory = names_directory(path)
    target = html_export_path(session_id, path)
    data = (await render_session_html(store, session_id, at_version=at_version)).encode("utf-8")
    # 0600 like the store's own files: a transcript holds what the agent saw.
    await run_to_completion(_write_page, target, data, directory)
    return len(data)


def _write_page(target: str, data: bytes, create_directory: bool) -> None:
    parent = os.path.dirname(target)
    try:
        if create_directory:
            make_private_directories(parent)
        write_private_file(target, data)
    except (FileExistsError, NotADirectoryError):
        raise InvalidInputError(f"cannot write {target}: " + not_a_directory(parent, "a directory")) from None


__all__ = ["export_session_html", "html_export_path", "render_session_html"]
