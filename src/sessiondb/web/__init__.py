"""The read-only web viewer (``sessiondb serve``) and the HTML export (``sessiondb export --html``).

Needs the ``web`` extra (``pip install '.[web]'`` from a checkout: Starlette, uvicorn, Jinja2);
nothing else in sessiondb imports this package. See docs/viewer.md.
"""

from ._app import create_app
from ._export import export_session_html, html_export_path, render_session_html
from ._security import is_loopback, new_token, token_problem

__all__ = [
    "create_app",
    "export_session_html",
    "html_export_path",
    "is_loopback",
    "new_token",
    "render_session_html",
    "token_problem",
]
