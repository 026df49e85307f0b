"""Read the journal and sync settings a SQLite file actually runs with, for the report."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

SYNCHRONOUS = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


def sqlite_settings(path: Path) -> dict[str, Any]:
    """journal_mode is stored in the file (WAL persists); synchronous is per connection and
    none of the peers sets it, so a fresh connection shows the value they get."""
    connection = sqlite3.connect(path)
    try:
        journal = connection.execute("PRAGMA journal_mode").fetchone()[0]
        synchronous = connection.execute("PRAGMA synchronous").fetchone()[0]
    finally:
        connection.close()
    return {
        "sqlite": sqlite3.sqlite_version,
        "journal_mode": journal,
        "synchronous": SYNCHRONOUS.get(synchronous, synchronous),
    }
