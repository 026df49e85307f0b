"""Interoperability with other session formats: claw-code JSONL files."""

from ._claw import ClawFile, SkippedLine, parse_claw_file, render_claw_session
from ._claw_store import (
    ClawImportReport,
    ImportedSession,
    claw_sessions_directory,
    export_claw_session,
    export_claw_sessions,
    import_claw_files,
)

__all__ = [
    "ClawFile",
    "ClawImportReport",
    "ImportedSession",
    "SkippedLine",
    "claw_sessions_directory",
    "export_claw_session",
    "export_claw_sessions",
    "import_claw_files",
    "parse_claw_file",
    "render_claw_session",
]
