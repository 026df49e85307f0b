"""A compaction removes at most the live messages, checked as the backend commits, on every backend.

Checked before the append joined its batch (against ``info()``), concurrent compactions
all passed: each saw the context before the others, and three compactions of the same four
messages were all accepted. A refused one must fail alone, never its batch.
"""

from __future__ import annotations

import asyncio

import pytest

from sessiondb import InvalidInputError, Message

from .conftest import StoreOpener

pytestmark = pytest.mark.anyio


async def test_concurrent_compactions_remove_at_most_the_live_messages(opener: StoreOpener) -> None:
    async with opener.open() as store:
        sid = await store.create_session()
        await store.append(sid, *[Message.user(f"m{i}") for i in range(4)])
        results = await asyncio.gather(
            *[store.record_compaction(sid, summary=f"s{k}", removed_message_count=4) for k in range(3)],
            store.append(sid, Message.user("alongside")),
            return_exceptions=True,
        )
        accepted = [r for r in results[:3] if not isinstance(r, BaseException)]
        refused = [r for r in results[:3] if isinstance(r, BaseException)]
        assert len(accepted) == 1, results
        for error in refused:  # each fails alone, saying which session and how many are live
            assert isinstance(error, InvalidInputError), results
            assert repr(sid) in str(error) and "live message(s)" in str(error) and "cannot remove 4" in str(error)
        assert isinstance(results[3], int)  # the plain append of the same batch is not failed with them
        assert not store.broken
        session = await store.load(sid)
        assert session.compaction is not None and session.compaction.count == 1
        assert [m.text for m in session.messages[1:]] == ["alongside"]
        assert (await store.session_info(sid)).message_count == 2  # the summary and "alongside"
        # One at a time, as before: the next compaction may remove what is live now, no more.
        with pytest.raises(InvalidInputError, match="has 1 live message"):
            await store.record_compaction(sid, summary="more", removed_message_count=2)
        await store.record_compaction(sid, summary="all", removed_message_count=1)


async def test_a_compaction_counts_the_messages_appended_before_it_in_the_same_batch(opener: StoreOpener) -> None:
    async with opener.open() as store:
        sid = await store.create_session()
        await store.append(sid, Message.user("a"))
        # Appends started together: the messages are planned before the compaction that follows them.
        results = await asyncio.gather(
            store.append(sid, Message.user("b")),
            store.append(sid, Message.user("c"), Message.user("d")),
            store.record_compaction(sid, summary="s", removed_message_count=4),
            store.record_compaction(sid, summary="t", removed_message_count=1),
            return_exceptions=True,
        )
        assert isinstance(results[0], int) and isinstance(results[1], int) and isinstance(results[2], int), results
        assert isinstance(results[3], InvalidInputError) and "has 0 live message" in str(results[3]), results
        session = await store.load(sid)
        assert len(session.messages) == 1 and session.compaction is not None and session.compaction.summary == "s"
