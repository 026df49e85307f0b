"""SessionDBSession refuses what the SDK's own SQLiteSession refuses, and reads back what it reads back.

Side by side with the real ``agents.SQLiteSession`` (no mocks): the same items go to
both; either both raise the same exception type, or both read back equal items.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

agents = pytest.importorskip("agents")

from agents import SQLiteSession  # noqa: E402

import sessiondb  # noqa: E402
from sessiondb.integrations.openai_agents import SessionDBSession  # noqa: E402

pytestmark = pytest.mark.anyio


class Colour(enum.Enum):
    RED = "red"


@dataclass
class Point:
    x: int


def _circular() -> dict[str, Any]:
    value: dict[str, Any] = {"role": "user"}
    value["self"] = value
    return value


# Values SQLiteSession refuses with TypeError (json.dumps cannot write them); msgspec
# would have turned each into a string, a list or an object without a word.
REFUSED_BY_SDK = {
    "bytes": b"hi",
    "datetime": datetime.datetime(2026, 1, 2, 3, 4, 5),
    "date": datetime.date(2026, 1, 2),
    "uuid": uuid.UUID(int=7),
    "decimal": decimal.Decimal("1.5"),
    "set": {1, 2},
    "frozenset": frozenset({1}),
    "enum": Colour.RED,
    "dataclass": Point(1),
    "object": object(),
    "tuple_key": {(1, 2): "x"},
    "struct": sessiondb.Text("hi"),
}

# Values SQLiteSession accepts and reads back (possibly converted the way json.dumps converts).
ACCEPTED_BY_SDK = {
    "plain": {"role": "user", "content": "hi"},
    "nested": {"a": [1, 2.5, None, True, {"b": "ü\u2028"}]},
    "tuple": {"content": (1, 2)},
    "int_keys": {1: "one", 2.5: "x", None: "n", False: "f"},
    "big_int": {"n": 10**30},
    "negative_zero": {"f": -0.0},
}


async def _both(tmp_path: Path, items: list[Any]) -> tuple[Any, Any]:
    """What each session does with ``add_items(items)``: the exception type, or what it reads back."""
    reference = SQLiteSession("s", tmp_path / "ref.sqlite")
    try:
        try:
            await reference.add_items(items)
            expected: Any = await reference.get_items()
        except Exception as exc:
            expected = type(exc)
    finally:
        reference.close()
    async with sessiondb.open_store(tmp_path / "store") as store:
        session = SessionDBSession("s", store)
        try:
            await session.add_items(items)
            got: Any = await session.get_items()
        except Exception as exc:
            got = type(exc)
    async with sessiondb.open_store(tmp_path / "store") as store:  # and after reopen, nothing half-added
        after = await SessionDBSession("s", store).get_items()
    if isinstance(got, list):
        assert after == got
    else:
        assert after == []
    return expected, got


@pytest.mark.parametrize("name", sorted(REFUSED_BY_SDK))
async def test_refuses_what_sqlite_session_refuses(tmp_path: Path, name: str) -> None:
    items = [{"role": "user", "content": "first"}, {"role": "user", "value": REFUSED_BY_SDK[name]}]
    expected, got = await _both(tmp_path, items)
    assert expected is TypeError
    assert got is TypeError


async def test_the_refusal_names_the_session_and_the_item(tmp_path: Path) -> None:
    async with sessiondb.open_store(tmp_path / "store") as store:
        session = SessionDBSession("conv-9", store)
        with pytest.raises(TypeError, match=r"session 'conv-9': add_items item 1: .*bytes"):
            await session.add_items([{"ok": 1}, {"bad": b"x"}])


async def test_a_circular_item_is_a_value_error_as_in_the_sdk(tmp_path: Path) -> None:
    expected, got = await _both(tmp_path, [_circular()])
    assert expected is ValueError
    assert got is ValueError


@pytest.mark.parametrize("name", sorted(ACCEPTED_BY_SDK))
async def test_reads_back_what_sqlite_session_reads_back(tmp_path: Path, name: str) -> None:
    expected, got = await _both(tmp_path, [ACCEPTED_BY_SDK[name]])
    assert isinstance(expected, list)
    assert got == expected
    assert [type(v) for v in got[0].values()] == [type(v) for v in expected[0].values()]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
async def test_nan_and_infinity_are_refused_not_turned_into_null(tmp_path: Path, value: float) -> None:
    # SQLiteSession writes non-standard JSON for these; the store keeps strict JSON and refuses
    # them (before: msgspec wrote null, so the item read back changed).
    async with sessiondb.open_store(tmp_path / "store") as store:
        session = SessionDBSession("s", store)
        with pytest.raises(ValueError, match="session 's': add_items item 0"):
            await session.add_items([{"score": value}])
        assert await session.get_items() == []


async def test_a_lone_surrogate_is_refused(tmp_path: Path) -> None:
    async with sessiondb.open_store(tmp_path / "store") as store:
        session = SessionDBSession("s", store)
        with pytest.raises(ValueError, match="lone surrogate"):
            await session.add_items([{"content": "a\ud800b"}])


@pytest.mark.parametrize("settings", [{"limitt": 1}, {"limit": 1, "extra": 2}, 5, "limit=1"])
async def test_session_settings_are_checked_as_the_sdk_checks_them(store: sessiondb.Store, settings: Any) -> None:
    with pytest.raises(TypeError) as expected:
        SQLiteSession("s", session_settings=settings)
    with pytest.raises(TypeError) as got:
        SessionDBSession("s", store, session_settings=settings)
    assert str(got.value) == str(expected.value)


async def test_session_settings_dict_with_known_keys_still_works(store: sessiondb.Store) -> None:
    session = SessionDBSession("s", store, session_settings={"limit": 1})
    await session.add_items([{"n": 1}, {"n": 2}])
    assert await session.get_items() == [{"n": 2}]
