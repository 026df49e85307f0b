"""The ``sessiondb`` command line (the console script and ``python -m sessiondb``).

``_main.py`` parses arguments and runs the commands; ``_render.py`` formats
sessions and events for a terminal; ``_tail.py`` follows a log another process
writes; ``_progress.py`` draws progress bars on stderr.
"""

from ._main import build_parser, main, run

__all__ = ["build_parser", "main", "run"]
