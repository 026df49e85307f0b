"""open_store's and CompactionSettings' arguments: a wrong type or value is an InvalidInputError at once.

Not a plain ValueError, and never an AttributeError later at start() or in a background pass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import sessiondb
from sessiondb import CompactionSettings, InvalidInputError, Message

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("keep_segments", -1),
        ("keep_segments", 1.5),
        ("keep_segments", "3"),
        ("keep_seconds", -1),
        ("keep_seconds", float("inf")),
        ("interval_seconds", 0),
        ("interval_seconds", float("nan")),
        ("interval_seconds", "30"),
        ("min_tail_events", 0),
        ("min_tail_events", 2.0),
        ("min_tail_bytes", None),
        ("state_ratio", -0.5),
        ("snapshots_per_step", 0),
        ("pause_seconds", -1),
        ("background", "yes"),
        ("background", 1),
        ("checkpoint", None),
    ],
)
def test_compaction_settings_refuse_a_wrong_value(field: str, value: Any) -> None:
    with pytest.raises(InvalidInputError, match=rf"CompactionSettings\({field}=\.\.\.\) must be"):
        CompactionSettings(**{field: value})


def test_compaction_settings_take_what_they_document() -> None:
    CompactionSettings(keep_segments=None, keep_seconds=None)
    CompactionSettings(keep_segments=0, keep_seconds=0, interval_seconds=0.05, state_ratio=0, pause_seconds=0.5)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"compaction": {"keep_segments": 1}}, "compaction must be a sessiondb.CompactionSettings"),
        ({"read_only": "no"}, "read_only must be True or False"),
        ({"read_only": 1}, "read_only must be True or False"),
        ({"redact": "keys"}, "redact must be a function"),
        ({"file_system": object()}, "file_system must be a sessiondb FileSystem"),
        ({"max_batch": 0}, "max_batch must be a positive int"),
        ({"max_pending": 1.0}, "max_pending must be a positive int"),
        ({"segment_bytes": True}, "segment_bytes must be a positive int"),
        ({"file_mode": 0o400}, "file_mode must be"),
    ],
)
async def test_open_store_refuses_a_wrong_argument_before_anything_opens(
    tmp_path: Path, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        sessiondb.open_store(tmp_path / "store", **options)
    assert not (tmp_path / "store").exists()


def test_store_takes_a_backend() -> None:
    with pytest.raises(InvalidInputError, match="takes a Backend"):
        sessiondb.Store("dir")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"pool_size": "3"}, r"pool_size=\.\.\.\) must be a positive int"),
        ({"pool_size": 0}, r"pool_size=\.\.\.\) must be a positive int"),
        ({"connect_timeout": None}, r"connect_timeout=\.\.\.\) must be a number of seconds"),
        ({"poll_interval": float("nan")}, r"poll_interval=\.\.\.\) must be a number of seconds"),
        ({"notify": "yes"}, r"notify=\.\.\.\) must be True or False"),
        ({"read_only": 0}, r"read_only=\.\.\.\) must be True or False"),
    ],
)
def test_postgres_backend_refuses_a_wrong_option(options: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        sessiondb.PostgresBackend("postgresql://user@host/db", **options)


async def test_conversation_options_are_checked() -> None:
    with pytest.raises(InvalidInputError, match="threshold"):
        sessiondb.TokenThresholdPolicy(threshold="100")  # type: ignore[arg-type]
    async with sessiondb.open_store(":memory:") as store:
        sid = await store.create_session()
        await store.append(sid, Message.user("a"))
        with pytest.raises(InvalidInputError, match="move_boundary must be True or False"):
            await store.compact_conversation(sid, move_boundary="no")  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError, match="policy must be a TokenThresholdPolicy"):
            await store.compaction_due(sid, policy=5)  # type: ignore[arg-type]
