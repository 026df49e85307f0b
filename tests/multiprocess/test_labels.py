"""Another process's scoped sessions and label changes show up in this process's filtered listings.

A child process creates scoped sessions, titles, tags, pins, unpins, untags and deletes
them, one round at a time; after each round this process (with its store open all along,
appending to a session of its own in between, so its index learns frames both ways)
checks that every filter (scope, tag, title, pinned) and every page of ``page_sessions``
agree with the labels the child reports: the index sets follow what others appended.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

import sessiondb
from sessiondb import Message, PinChanged, TagsChanged, TitleChanged

from ._helpers import result_of, wait_line
from .conftest import Children

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(240)]

ROUNDS = 12


async def test_labels_written_by_another_process_are_listed(store_target: str, children: Children) -> None:
    async with sessiondb.open_store(store_target) as store:
        own = await store.create_session(session_id="own", scope="scope-0")
        child = children.start("labeler", store_target)
        await wait_line(child, "READY")
        assert child.stdin is not None
        for n in range(ROUNDS):
            child.stdin.write(f"GO {n}\n")
            child.stdin.flush()
            labels: dict[str, list[Any]] = json.loads(await wait_line(child, f"DONE {n} "))
            await _check(store, labels, own)
            await store.append(own, Message.user(f"between rounds {n}"))
        child.stdin.write("END\n")
        child.stdin.flush()
        assert (await result_of(child))["failures"] == []
    async with sessiondb.open_store(store_target) as reopened:  # and after a reopen (from a checkpoint)
        await _check(reopened, labels, own)


async def _check(store: sessiondb.Store, labels: dict[str, list[Any]], own: str) -> None:
    async def ids(**filters: Any) -> set[str]:
        return {info.session_id for info in await store.list_sessions(**filters)} - {own}

    for scope in ("scope-0", "scope-1", "scope-2"):
        expected = {sid for sid, (s, _t, _g, _p) in labels.items() if s == scope}
        assert await ids(scope=scope) == expected, scope
        paged: list[str] = []
        cursor = None
        while True:
            page = await store.page_sessions(scope=scope, limit=2, cursor=cursor)
            paged += [info.session_id for info in page.sessions if info.session_id != own]
            if (cursor := page.next_cursor) is None:
                break
        assert sorted(paged) == sorted(expected)
    for tag in ("child", "round-0", "round-1", "round-2", "round-3"):
        assert await ids(tag=tag) == {sid for sid, (_s, _t, g, _p) in labels.items() if tag in g}, tag
    assert await ids(pinned=True) == {sid for sid, (_s, _t, _g, p) in labels.items() if p}
    assert await ids(title="round") == {sid for sid, (_s, t, _g, _p) in labels.items() if t is not None}
    for sid, (scope, title, tags, pinned) in labels.items():
        info = await store.session_info(sid)
        assert [info.scope, info.title, list(info.tags), info.pinned] == [scope, title, tags, pinned]


async def test_the_same_label_change_from_several_processes_is_written_once(
    store_target: str, children: Children
) -> None:
    """A change another writer already made writes nothing: one event per change across three processes."""
    async with sessiondb.open_store(store_target) as store:
        sid = await store.create_session(session_id="raced")
        await store.add_tags(sid, "old")
    racers = [children.start("relabel", store_target, "raced") for _ in range(3)]
    for racer in racers:
        await wait_line(racer, "READY")
    for racer in racers:
        assert racer.stdin is not None
        racer.stdin.write("GO\n")
        racer.stdin.flush()
    for racer in racers:
        assert (await result_of(racer))["failures"] == []
    async with sessiondb.open_store(store_target) as store:
        kinds = [type(recorded.event) for recorded in [e async for e in store.read(sid)]]
        assert kinds.count(TitleChanged) == 1 and kinds.count(PinChanged) == 1, kinds
        assert kinds.count(TagsChanged) == 2, kinds  # the add, then one removal
        info = await store.session_info(sid)
        assert (info.title, info.pinned, info.tags, info.version) == ("same", True, (), 5)
