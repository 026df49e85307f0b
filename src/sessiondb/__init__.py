"""sessiondb: a durable, async, event-sourced store for AI-agent conversation sessions.

::

    async with sessiondb.open_store("sessions/") as store:
        sid = await store.create_session(model="m")
        version = await store.append(sid, Message.user("hi"))   # durable on return
        session = await store.load(sid)
"""

from ._backends._base import Backend, SessionInfo, SessionPage
from ._backends._fs import FileSystem
from ._backends.local import LocalBackend
from ._backends.postgres import PostgresBackend  # asyncpg itself is imported only when it connects
from ._compactor import CompactionSettings
from ._conversation import TokenThresholdPolicy, plan_compaction, summarize_messages
from ._errors import (
    BackendUnavailableError,
    ConflictError,
    CorruptionError,
    DiskFullError,
    EventTooLargeError,
    ExportError,
    HistoryUnavailableError,
    ImportFormatError,
    InvalidInputError,
    InvalidSessionIdError,
    ResourceExhaustedError,
    SchemaVersionError,
    SessionDBError,
    SessionDeletedError,
    SessionExistsError,
    SessionNotFoundError,
    StoreBrokenError,
    StoreClosedError,
    StoreForkedError,
    StoreLockedError,
    StoreLoopError,
    StoreNotStartedError,
    StorePermissionError,
)
from ._events import (
    Block,
    Compacted,
    Custom,
    Event,
    Fork,
    Inherited,
    Message,
    PinChanged,
    PromptRecorded,
    RecordedEvent,
    Role,
    SessionDeleted,
    SessionStarted,
    TagsChanged,
    Text,
    Thinking,
    TitleChanged,
    ToolResult,
    ToolUse,
    Usage,
)
from ._interop import (
    ClawImportReport,
    claw_sessions_directory,
    export_claw_session,
    export_claw_sessions,
    import_claw_files,
    render_claw_session,
)
from ._projection import CompactionInfo, Projection, PromptEntry, Session
from ._redact import redact_api_keys
from ._search import SearchHit, SearchPage
from ._store import Store, open_store
from ._subscriptions import Subscription

__version__ = "0.1.0"

__all__ = [
    "Backend",
    "BackendUnavailableError",
    "Block",
    "ClawImportReport",
    "Compacted",
    "CompactionInfo",
    "CompactionSettings",
    "ConflictError",
    "CorruptionError",
    "Custom",
    "DiskFullError",
    "Event",
    "EventTooLargeError",
    "ExportError",
    "FileSystem",
    "Fork",
    "HistoryUnavailableError",
    "ImportFormatError",
    "Inherited",
    "InvalidInputError",
    "InvalidSessionIdError",
    "LocalBackend",
    "Message",
    "PinChanged",
    "Projection",
    "PromptEntry",
    "PostgresBackend",
    "PromptRecorded",
    "RecordedEvent",
    "ResourceExhaustedError",
    "Role",
    "SchemaVersionError",
    "SearchHit",
    "SearchPage",
    "Session",
    "SessionDBError",
    "SessionDeleted",
    "SessionDeletedError",
    "SessionExistsError",
    "SessionInfo",
    "SessionNotFoundError",
    "SessionPage",
    "SessionStarted",
    "Store",
    "StoreBrokenError",
    "StoreClosedError",
    "StoreForkedError",
    "StoreLockedError",
    "StoreLoopError",
    "StoreNotStartedError",
    "StorePermissionError",
    "Subscription",
    "TagsChanged",
    "Text",
    "Thinking",
    "TitleChanged",
    "TokenThresholdPolicy",
    "ToolResult",
    "ToolUse",
    "Usage",
    "__version__",
    "claw_sessions_directory",
    "export_claw_session",
    "export_claw_sessions",
    "import_claw_files",
    "open_store",
    "plan_compaction",
    "redact_api_keys",
    "render_claw_session",
    "summarize_messages",
]
