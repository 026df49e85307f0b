"""The part of the backend conformance suite about scopes, labels and listings (mixed into BackendConformance)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import msgspec
import pytest

from .._backends._base import Backend, SessionInfo
from .._errors import InvalidInputError, SessionDeletedError, SessionNotFoundError
from .._events import Message, PinChanged, SessionDeleted, TagsChanged, TitleChanged
from .._labels import MAX_TAGS
from .._store import Store, open_store

BackendFactory = Callable[..., Backend]
_ORDERS = ("updated", "created", "title", "version")


_KEYS: dict[str, Callable[[SessionInfo], tuple[object, str]]] = {
    "updated": lambda i: (i.updated_at_ms, i.session_id),
    "created": lambda i: (i.created_at_ms, i.session_id),
    "title": lambda i: (i.title or "", i.session_id),
    "version": lambda i: (i.version, i.session_id),
}


def _labels(info: SessionInfo) -> tuple[object, ...]:
    return (info.scope, info.title, info.tags, info.pinned)


async def _page_all(store: Store, limit: int, **filters: object) -> list[SessionInfo]:
    found: list[SessionInfo] = []
    cursor = None
    while True:
        page = await store.page_sessions(**filters, limit=limit, cursor=cursor)  # type: ignore[arg-type]
        assert len(page.sessions) <= limit
        found.extend(page.sessions)
        if page.next_cursor is None:
            return found
        assert len(page.sessions) == limit
        cursor = page.next_cursor


class LabelConformance:
    """Scopes, titles, tags, pins and filtered, paged listings, through the public Store API."""

    async def test_labels_fold_into_the_summary_and_survive_reopen(self, backend_factory: BackendFactory) -> None:
        async with open_store(backend_factory()) as store:
            sid = await store.create_session(scope="proj-a")
            assert await store.set_title(sid, "Fix the parser") == 2
            assert await store.add_tags(sid, "bug", "parser", "bug") == 3
            assert await store.remove_tags(sid, "parser", "absent") == 4
            assert await store.set_pinned(sid, True) == 5
            # Nothing changes, nothing is written: the current version comes back.
            assert await store.set_pinned(sid, True) == 5
            assert await store.add_tags(sid, "bug") == 5
            assert await store.remove_tags(sid, "absent") == 5
            assert await store.set_title(sid, "Fix the parser") == 5
            info = await store.session_info(sid)
            assert _labels(info) == ("proj-a", "Fix the parser", ("bug",), True)
            assert info.version == 5 and info.message_count == 0
            session = await store.load(sid)
            assert (session.scope, session.title, session.tags, session.pinned) == _labels(info)
            events = [recorded.event async for recorded in store.read(sid, after=1)]
            assert events[0] == TitleChanged("Fix the parser")
            assert events[1] == TagsChanged(added=["bug", "parser"])
        async with open_store(backend_factory()) as store:
            assert _labels(await store.session_info(sid)) == ("proj-a", "Fix the parser", ("bug",), True)
            assert [i.session_id for i in await store.list_sessions(scope="proj-a", tag="bug", pinned=True)] == [sid]
            assert await store.set_title(sid, None) == 6
            assert (await store.session_info(sid)).title is None

    async def test_time_travel_shows_the_labels_of_that_version(self, store: Store) -> None:
        sid = await store.create_session(scope="s")
        await store.set_title(sid, "first")
        await store.add_tags(sid, "a", "b")
        await store.append(sid, Message.user("hi"))
        await store.set_title(sid, "second")
        await store.remove_tags(sid, "a")
        await store.set_pinned(sid, True)
        old = await store.load(sid, at_version=4)
        assert (old.scope, old.title, old.tags, old.pinned) == ("s", "first", ("a", "b"), False)
        assert len(old.messages) == 1
        now = await store.load(sid)
        assert (now.title, now.tags, now.pinned) == ("second", ("b",), True)
        assert (await store.load(sid, at_version=1)).title is None

    async def test_list_sessions_filters(self, store: Store) -> None:
        a = await store.create_session(scope="p1")
        b = await store.create_session(scope="p1")
        c = await store.create_session(scope="p2")
        d = await store.create_session()
        await store.set_title(a, "Parser crash on EMPTY input")
        await store.set_title(c, "empty Ünïcode title")
        await store.add_tags(a, "bug", "p0")
        await store.add_tags(c, "bug")
        await store.set_pinned(b, True)

        async def ids(**filters: object) -> set[str]:
            return {info.session_id for info in await store.list_sessions(**filters)}  # type: ignore[arg-type]

        assert await ids() == {a, b, c, d}
        assert await ids(scope="p1") == {a, b}
        assert await ids(scope="nope") == set()
        assert await ids(tag="bug") == {a, c}
        assert await ids(tag="bug", scope="p2") == {c}
        assert await ids(title="empty") == {a, c}
        assert await ids(title="ÜNÏ") == {c}
        assert await ids(pinned=True) == {b}
        assert await ids(pinned=False) == {a, c, d}
        assert await ids(scope="p1", pinned=False, tag="p0", title="crash") == {a}
        await store.delete_session(a)
        assert await ids(tag="bug") == {c}
        assert await ids(scope="p1") == {b}
        with pytest.raises(SessionDeletedError):
            await store.set_title(a, "x")

    async def test_orders_and_pages_agree_with_the_full_listing(self, store: Store) -> None:
        sids = [await store.create_session(scope="s" if i % 2 else None) for i in range(9)]
        for i, sid in enumerate(sids):
            if i % 3:
                await store.set_title(sid, f"title {(i * 7) % 5}")  # repeated titles: ties break by id
            await store.append(sid, *[Message.user("x")] * (i % 4 + 1))
        await store.append(sids[0], Message.user("latest"))
        for order in _ORDERS:
            for descending in (True, False):
                for filters in ({}, {"scope": "s"}):
                    full = await store.list_sessions(order=order, descending=descending, **filters)  # type: ignore[arg-type]
                    key = _KEYS[order]
                    assert [key(i) for i in full] == sorted((key(i) for i in full), reverse=descending)
                    for limit in (1, 2, 4, 50):
                        paged = await _page_all(store, limit, order=order, descending=descending, **filters)
                        assert [i.session_id for i in paged] == [i.session_id for i in full]
        default = [(i.updated_at_ms, i.session_id) for i in await store.list_sessions()]
        assert default == sorted(default, reverse=True)  # most recently updated first, as before

    async def test_paging_is_stable_while_sessions_are_appended(self, store: Store) -> None:
        sids = [await store.create_session(scope="p") for _ in range(12)]
        first = await store.page_sessions(scope="p", limit=4, order="created")
        assert first.next_cursor is not None
        # Between pages: new sessions, and appends that change other sessions' update times.
        newer = [await store.create_session(scope="p") for _ in range(3)]
        for sid in sids[::3]:
            await store.append(sid, Message.user("more"))
        rest = await _page_all_from(store, first.next_cursor, scope="p", limit=4, order="created")
        seen = [i.session_id for i in first.sessions + rest]
        # Newest created first: every session that existed is shown once, in order; the ones created
        # after the first page sort ahead of the cursor, so this pass does not show them.
        assert seen == list(reversed(sids))
        # Newest-updated first: a session updated after it was shown moves ahead of the cursor, never shown twice.
        page = await store.page_sessions(scope="p", limit=5)
        assert page.next_cursor is not None
        for info in page.sessions:
            await store.append(info.session_id, Message.user("again"))
        rest = await _page_all_from(store, page.next_cursor, scope="p", limit=5)
        shown = [i.session_id for i in page.sessions + rest]
        assert len(shown) == len(set(shown)) == len(sids) + len(newer)

    async def test_bad_listing_arguments_are_clear_errors(self, store: Store) -> None:
        sid = await store.create_session(scope="p")
        page = await store.page_sessions(limit=1)
        await store.create_session()
        page = await store.page_sessions(limit=1)
        assert page.next_cursor is not None
        for cursor in ("", "not a cursor", "e30", page.next_cursor[:-3], 12):
            with pytest.raises(InvalidInputError, match="cursor"):
                await store.page_sessions(limit=1, cursor=cursor)  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError, match="other filters or another order"):
            await store.page_sessions(limit=1, cursor=page.next_cursor, scope="p")
        with pytest.raises(InvalidInputError, match="other filters or another order"):
            await store.page_sessions(limit=1, cursor=page.next_cursor, order="created")
        with pytest.raises(InvalidInputError, match="order"):
            await store.list_sessions(order="name")
        for limit in (0, -1, 10_001, 2.5, "5"):
            with pytest.raises(InvalidInputError, match="limit"):
                await store.page_sessions(limit=limit)  # type: ignore[arg-type]
        for bad in ("", "a b", "-x", "+x", "x" * 65, "a\nb", 5):
            with pytest.raises(InvalidInputError, match=repr(sid)):
                await store.add_tags(sid, bad)  # type: ignore[arg-type]
            with pytest.raises(InvalidInputError):
                await store.list_sessions(tag=bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError, match="separate arguments"):
            await store.add_tags(sid, ["a", "b"])  # type: ignore[arg-type]
        for title in ("", "two\nlines", "x" * 501, "nul\x00", 3):
            with pytest.raises(InvalidInputError, match=repr(sid)):
                await store.set_title(sid, title)  # type: ignore[arg-type]
        for scope in ("", "a\tb", "x" * 513, 7):
            with pytest.raises(InvalidInputError, match="scope"):
                await store.create_session(scope=scope)  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError, match="set_pinned"):
            await store.set_pinned(sid, 1)  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError, match="set_title"):
            await store.append(sid, TitleChanged("sneaky"))
        with pytest.raises(SessionNotFoundError):
            await store.add_tags("no-such-session", "a")
        assert (await store.session_info(sid)).version == 1  # nothing was written

    async def test_errors_name_what_exists_and_new_labels_are_visible_text(self, store: Store) -> None:
        """No phantom generated id in an error; label events refused by append name the session; blank and
        bidi-control titles and scopes are refused when written (logs holding them still load)."""
        before = await store.list_sessions()
        for bad in ("", "   ", 5):
            with pytest.raises(InvalidInputError, match=r"^create_session: .*scope") as raised:
                await store.create_session(scope=bad)  # type: ignore[arg-type]
            assert "session-" not in str(raised.value)
        with pytest.raises(InvalidInputError, match=r"^create_session: model") as raised:
            await store.create_session(model=5)  # type: ignore[arg-type]
        parent = await store.create_session()
        with pytest.raises(InvalidInputError, match=f"^fork of session {parent!r}: .*scope") as raised:
            await store.fork(parent, scope="")
        assert len(await store.list_sessions()) == len(before) + 1  # only the parent was created
        with pytest.raises(InvalidInputError, match=f"session {parent!r}.*set_title"):
            await store.append(parent, TitleChanged("sneaky"))
        with pytest.raises(InvalidInputError, match=f"session {parent!r}.*delete_session"):
            await store.append(parent, SessionDeleted())
        for title in ("  ", "\u3000", "evil\u202egnp.exe", "a\u2066b\u2069"):
            with pytest.raises(InvalidInputError, match=rf"{parent!r}.*(blank|bidirectional)"):
                await store.set_title(parent, title)
        for scope in ("  ", "x\u202ay", "\u2067x"):
            with pytest.raises(InvalidInputError, match=r"blank|bidirectional"):
                await store.create_session(scope=scope)
        assert (await store.session_info(parent)).version == 1  # nothing was written
        # A stored title with a bidi control (written before the rule) still decodes and lists.
        old = msgspec.json.decode(msgspec.json.encode(TitleChanged("old\u202etitle")), type=TitleChanged)
        assert old.title == "old\u202etitle"
        assert (await store.set_title(parent, "  padded  ")) == 2  # whitespace around text is kept

    async def test_a_session_holds_at_most_max_tags(self, store: Store) -> None:
        sid = await store.create_session()
        await store.add_tags(sid, *[f"t{i}" for i in range(MAX_TAGS - 1)])
        with pytest.raises(InvalidInputError, match=f"{sid!r}.*limit of {MAX_TAGS}"):
            await store.add_tags(sid, "x", "y")
        await store.add_tags(sid, "x")
        # Concurrent adds are checked against the tags they race with: the limit still holds.
        await store.remove_tags(sid, "t0", "t1", "t2")
        results = await asyncio.gather(
            *(store.add_tags(sid, f"n{i}", f"m{i}") for i in range(4)), return_exceptions=True
        )
        assert len((await store.session_info(sid)).tags) <= MAX_TAGS
        assert sum(isinstance(r, InvalidInputError) for r in results) >= 2

    async def test_concurrent_identical_label_changes_write_once(self, store: Store) -> None:
        """Twenty concurrent ``set_title(sid, "same")`` wrote twenty events; a no-op must write nothing."""
        sid = await store.create_session()
        await store.add_tags(sid, "old")
        versions = await asyncio.gather(
            *(store.set_title(sid, "same") for _ in range(20)),
            *(store.set_pinned(sid, True) for _ in range(20)),
            *(store.remove_tags(sid, "old") for _ in range(20)),
            *(store.add_tags(sid, "new") for _ in range(20)),
        )
        kinds = [type(recorded.event) for recorded in [e async for e in store.read(sid)]]
        assert kinds.count(TitleChanged) == 1 and kinds.count(PinChanged) == 1, kinds
        assert kinds.count(TagsChanged) == 3, kinds  # "old" added, removed once, "new" added once
        assert max(versions) == (await store.session_info(sid)).version == 6
        # Across processes: tests/multiprocess/test_labels.py races three of them.

    async def test_label_events_in_one_batch_fold_like_a_replay(self, store: Store) -> None:
        sids = [await store.create_session(scope=f"s{i % 2}") for i in range(3)]
        operations = []
        for round_ in range(6):
            for sid in sids:
                operations += [
                    store.add_tags(sid, f"t{round_ % 3}", "common"),
                    store.remove_tags(sid, f"t{(round_ + 1) % 3}"),
                    store.set_title(sid, f"title {round_}" if round_ % 4 else None),
                    store.set_pinned(sid, bool(round_ % 2)),
                    store.append(sid, Message.user(str(round_))),
                ]
        await asyncio.gather(*operations)
        for sid in sids:
            info = await store.session_info(sid)
            session = await store.load(sid)
            assert (session.scope, session.title, session.tags, session.pinned) == _labels(info)
            listed = {i.session_id: i for i in await store.list_sessions(scope=info.scope)}
            assert _labels(listed[sid]) == _labels(info)
            for tag in info.tags:
                assert sid in {i.session_id for i in await store.list_sessions(tag=tag)}

    async def test_fork_keeps_the_scope_unless_told_and_starts_unlabelled(self, store: Store) -> None:
        parent = await store.create_session(scope="team")
        await store.set_title(parent, "parent")
        await store.add_tags(parent, "keep")
        await store.append(parent, Message.user("hi"))
        child = await store.fork(parent)
        other = await store.fork(parent, scope="elsewhere", at_version=2)
        info = await store.session_info(child)
        assert _labels(info) == ("team", None, (), False)
        session = await store.load(child)
        assert (session.scope, session.title, session.tags) == ("team", None, ())
        assert len(session.messages) == 1
        assert (await store.session_info(other)).scope == "elsewhere"
        assert {i.session_id for i in await store.list_sessions(scope="team")} == {parent, child}
        assert [i.session_id for i in await store.list_sessions(scope="elsewhere")] == [other]
        assert (await store.load(other)).scope == "elsewhere"
        plain = await store.create_session()
        assert (await store.session_info(await store.fork(plain))).scope is None


async def _page_all_from(store: Store, cursor: str, **arguments: object) -> list[SessionInfo]:
    found: list[SessionInfo] = []
    next_cursor: str | None = cursor
    while next_cursor is not None:
        page = await store.page_sessions(**arguments, cursor=next_cursor)  # type: ignore[arg-type]
        found.extend(page.sessions)
        next_cursor = page.next_cursor
    return found
