"""``python -m sessiondb``: the command line."""

from .cli import main

raise SystemExit(main())
