"""Search across sessions: the index (SQLite FTS5 or PostgreSQL text search) and what a search returns."""

from ._model import SearchHit, SearchPage
from ._service import MAX_LIMIT, SearchService
from ._text import parse_query

__all__ = ["MAX_LIMIT", "SearchHit", "SearchPage", "SearchService", "parse_query"]
