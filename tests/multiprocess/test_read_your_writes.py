"""Read-your-writes across processes: B's reads that start after A's append returned show it, both directions.

Two processes take turns: one appends (to a shared session, to its own, or to
one it just created), then writes the session, version and text to a pipe;
the other, woken by the pipe, checks that ``load``, ``read``,
``list_sessions`` and ``read_all`` all show that append, then appends in turn.
On PostgreSQL ``read_all`` may lag while any transaction is open on the server
(docs/postgres.md): there the child awaits the event through ``subscribe_all``
before it checks ``read_all``.
"""

from __future__ import annotations

import os

import pytest

from ._helpers import create_sessions, result_of, wait_line
from .conftest import Children

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(240)]

ROUNDS = 60


async def test_reads_in_another_process_see_an_append_that_returned(store_target: str, children: Children) -> None:
    await create_sessions(store_target, ["ryw-shared", "ryw-a", "ryw-b"])
    a_to_b = os.pipe()
    b_to_a = os.pipe()
    try:
        a = children.start(
            "ryw", store_target, "a", str(ROUNDS), str(b_to_a[0]), str(a_to_b[1]), "1", pass_fds=(b_to_a[0], a_to_b[1])
        )
        b = children.start(
            "ryw", store_target, "b", str(ROUNDS), str(a_to_b[0]), str(b_to_a[1]), "0", pass_fds=(a_to_b[0], b_to_a[1])
        )
    finally:
        for fd in (*a_to_b, *b_to_a):
            os.close(fd)  # only the children hold the pipes: one dying gives the other EOF, not a hang
    await wait_line(a, "READY")
    await wait_line(b, "READY")
    results = [await result_of(a), await result_of(b)]
    assert [r["failures"] for r in results] == [[], []]
    assert [r["checked"] for r in results] == [ROUNDS, ROUNDS]
