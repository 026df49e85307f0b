"""The PostgreSQL search index: a documents table with a ``tsvector`` and a GIN index, in the store's schema.

Filled like the SQLite index: chunks read from the log by position, each in one
transaction with the position it reaches (``search_state``, locked ``for update``,
so indexers on several hosts take turns and skip what another already indexed).
The words are found here (``_text.lexemes``: SQLite's ``unicode61`` rules) and sent
as a ready ``tsvector`` (the ``simple`` configuration would lower-case only, and
PostgreSQL's parser would keep ``foo.bar`` as one word), so both engines match the
same documents. Each column's positions follow the previous column's with a gap,
so a phrase never spans two columns (as in FTS5). PostgreSQL's limits: positions
stop at 16,383 (phrases later in a longer document may match loosely), at most
256 positions are kept per word, and a document's tsvector is capped near 1 MB
(words past that are not indexed). Ranking is ``ts_rank``; snippets are made here.
The tables are created by this module (under an advisory lock), not by the
backend's migrations: they are derived data that a later format may drop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._backends.postgres import PostgresBackend
from .._backends.postgres._schema import MIGRATION_LOCK_KEY
from .._events import RecordedEvent
from ._model import Cursor, SearchHit
from ._sqlite import fingerprint
from ._text import COLUMN_KINDS, Document, Filters, Query, lexemes, plan_chunk, snippet, tags_document

# 2: CJK characters are words of their own (``_text.word_spans``); the tables of format 1 are dropped and refilled.
FORMAT = 2
_MAX_POSITION = 16_383
_MAX_POSITIONS_PER_WORD = 256
_MAX_WORD_BYTES = 2_046
_MAX_TSVECTOR_BYTES = 900_000


def tsvector_text(columns: Sequence[str]) -> str:
    """The tsvector literal of a document's columns (words already normalized, so no parser runs)."""
    entries: dict[str, list[int]] = {}
    size = 0
    position = 1
    for column in columns:
        for word in lexemes(column):
            place = min(position, _MAX_POSITION)
            position += 1
            positions = entries.get(word)
            if positions is None:
                length = len(word.encode())
                if length > _MAX_WORD_BYTES or size + length + 8 > _MAX_TSVECTOR_BYTES:
                    continue
                size += length + 8
                entries[word] = [place]
            elif len(positions) < _MAX_POSITIONS_PER_WORD and positions[-1] != place:
                size += 2
                positions.append(place)
        position += 1  # the gap between columns
    return " ".join(f"'{word}':{','.join(map(str, positions))}" for word, positions in entries.items())


def _pg_text(text: str) -> str:
    return text.replace("\x00", " ") if "\x00" in text else text  # text columns cannot hold NUL


class PostgresIndex:
    """The search index of a PostgreSQL store, kept in that store's schema."""

    def __init__(self, backend: PostgresBackend) -> None:
        self.backend = backend
        self.rebuilds = 0
        s = backend.schema
        self._state = f"{s}.search_state"
        self._docs = f"{s}.search_docs"
        self._labels = f"{s}.search_labels"
        self._vectors: dict[int, str] = {}  # the chunk being applied: position -> tsvector text

    async def open(self) -> None:

        async def run(conn: Any) -> None:
            async with conn.transaction():
                await conn.execute(
                    "select pg_advisory_xact_lock($1, $2)", MIGRATION_LOCK_KEY + 1, self.backend._lock_class
                )
                await conn.execute(
                    f"create table if not exists {self._state} (id integer primary key check (id = 1), "
                    "format integer not null, position bigint not null, fingerprint text not null)"
                )
                row = await conn.fetchrow(f"select format from {self._state} where id = 1")
                if row is not None and row[0] != FORMAT:
                    await conn.execute(f"drop table if exists {self._docs}")
                    await conn.execute(f"drop table if exists {self._labels}")
                    await conn.execute(f"delete from {self._state}")
                await conn.execute(
                    f"create table if not exists {self._docs} (position bigint primary key, "
                    'session_id text collate "C" not null, version integer not null, timestamp_ms bigint not null, '
                    "kind text not null, columns text[] not null, tsv tsvector not null)"
                )
                await conn.execute(f"create index if not exists search_docs_tsv on {self._docs} using gin (tsv)")
                await conn.execute(f"create index if not exists search_docs_session on {self._docs} (session_id, kind)")
                await conn.execute(
                    f'create table if not exists {self._labels} (session_id text collate "C" primary key, '
                    "scope text, tags text[] not null default '{}')"
                )
                await conn.execute(f"create index if not exists search_labels_scope on {self._labels} (scope)")
                await conn.execute(f"create index if not exists search_labels_tags on {self._labels} using gin (tags)")
                await conn.execute(
                    f"insert into {self._state} values (1, $1, 0, '') on conflict (id) do nothing", FORMAT
                )

        await self.backend.with_connection(run)

    async def aclose(self) -> None:
        return None  # the backend owns the connections

    async def state(self) -> tuple[int, str]:
        row = await self.backend.with_connection(
            lambda conn: conn.fetchrow(f"select position, fingerprint from {self._state} where id = 1")
        )
        return (int(row[0]), str(row[1])) if row is not None else (0, "")

    async def reset(self) -> None:
        async def run(conn: Any) -> None:
            async with conn.transaction():
                await conn.execute(f"select 1 from {self._state} where id = 1 for update")
                await conn.execute(f"truncate {self._docs}, {self._labels}")
                await conn.execute(f"update {self._state} set position = 0, fingerprint = '' where id = 1")

        await self.backend.with_connection(run)
        self.rebuilds += 1

    async def count(self) -> int:
        return int(await self.backend.with_connection(lambda conn: conn.fetchval(f"select count(*) from {self._docs}")))

    async def apply(self, after: int, events: Sequence[RecordedEvent]) -> int:
        if not events:
            return after
        last = events[-1]
        # The words are found before the transaction: an open one holds back every reader's horizon.
        planned = plan_chunk(events)
        vectors = {d.position: tsvector_text(d.columns) for d in planned.documents}

        async def run(conn: Any) -> int:
            async with conn.transaction():
                stored = int(await conn.fetchval(f"select position from {self._state} where id = 1 for update"))
                if stored < after or stored >= last.position:
                    return stored  # emptied meanwhile (start again from there), or indexed by another process
                plan = planned if stored == after else plan_chunk([e for e in events if e.position > stored])
                self._vectors = vectors
                await self._insert(conn, plan.documents)
                for session_id, title in plan.titles.items():
                    await self._delete_kind(conn, session_id, "title")
                    if title is not None:
                        await self._insert(conn, [title])
                for session_id, (change, where) in plan.tags.items():
                    before = await conn.fetchval(f"select tags from {self._labels} where session_id = $1", session_id)
                    tags = change.apply(before or ())
                    await conn.execute(
                        f"insert into {self._labels} (session_id, tags) values ($1, $2) "
                        "on conflict (session_id) do update set tags = excluded.tags",
                        session_id,
                        list(tags),
                    )
                    await self._delete_kind(conn, session_id, "tags")
                    document = tags_document(session_id, where, tags)
                    if document is not None:
                        await self._insert(conn, [document])
                for session_id, scope in plan.scopes.items():
                    await conn.execute(
                        f"insert into {self._labels} (session_id, scope) values ($1, $2) "
                        "on conflict (session_id) do update set scope = excluded.scope",
                        session_id,
                        scope,
                    )
                if plan.deleted:
                    deleted = list(plan.deleted)
                    await conn.execute(f"delete from {self._docs} where session_id = any($1::text[])", deleted)
                    await conn.execute(f"delete from {self._labels} where session_id = any($1::text[])", deleted)
                if last.position > stored:
                    await conn.execute(
                        f"update {self._state} set position = $1, fingerprint = $2 where id = 1",
                        last.position,
                        fingerprint(last),
                    )
                return max(stored, last.position)

        result: int = await self.backend.with_connection(run)
        return result

    async def _insert(self, conn: Any, documents: list[Document]) -> None:
        if not documents:
            return
        await conn.execute(
            f"insert into {self._docs} select p, s, v, t, k, array[c0, c1, c2, c3], tv::tsvector "
            "from unnest($1::bigint[], $2::text[], $3::integer[], $4::bigint[], $5::text[], $6::text[], "
            "$7::text[], $8::text[], $9::text[], $10::text[]) as u(p, s, v, t, k, c0, c1, c2, c3, tv) "
            "on conflict (position) do nothing",
            [d.position for d in documents],
            [d.session_id for d in documents],
            [d.version for d in documents],
            [d.timestamp_ms for d in documents],
            [d.kind for d in documents],
            *([_pg_text(d.columns[i]) for d in documents] for i in range(4)),
            [self._vectors.get(d.position) or tsvector_text(d.columns) for d in documents],
        )

    async def _delete_kind(self, conn: Any, session_id: str, kind: str) -> None:
        await conn.execute(f"delete from {self._docs} where session_id = $1 and kind = $2", session_id, kind)

    async def query(
        self, query: Query, *, filters: Filters, order: str, limit: int, ceiling: int, cursor: Cursor | None
    ) -> list[SearchHit]:
        params: list[Any] = [query.tsquery(), ceiling]
        sql = [
            "select d.position, d.session_id, d.version, d.timestamp_ms, d.kind, d.columns, ts_rank(d.tsv, q) as r "
            f"from {self._docs} as d, (select $1::tsquery as q) as query where d.tsv @@ q and d.position <= $2"
        ]
        if filters.session_id is not None:
            params.append(filters.session_id)
            sql.append(f"and d.session_id = ${len(params)}")
        if filters.scope is not None or filters.tag is not None:
            conditions = []
            if filters.scope is not None:
                params.append(filters.scope)
                conditions.append(f"l.scope = ${len(params)}")
            if filters.tag is not None:
                params.append([filters.tag])
                conditions.append(f"l.tags @> ${len(params)}::text[]")
            sql.append(
                f"and d.session_id in (select l.session_id from {self._labels} as l where {' and '.join(conditions)})"
            )
        if order == "newest":
            if cursor is not None:
                params.append(cursor.position)
                sql.append(f"and d.position < ${len(params)}")
            sql.append("order by d.position desc")
        else:
            sql.append("order by r desc, d.position desc")
        params.append(limit)
        sql.append(f"limit ${len(params)}")
        params.append(cursor.offset if cursor is not None and order != "newest" else 0)
        sql.append(f"offset ${len(params)}")
        text = " ".join(sql)
        rows = await self.backend.with_connection(lambda conn: conn.fetch(text, *params))
        hits = []
        for row in rows:
            best_column, best_count = 0, -1
            best: tuple[str, tuple[tuple[int, int], ...]] = ("", ())
            for column, content in enumerate(row[5]):
                if not content:
                    continue
                plain, highlights, count = snippet(content, query)
                if count > best_count:
                    best_column, best, best_count = column, (plain, highlights), count
            kind = COLUMN_KINDS[best_column] if row[4] == "message" else row[4]
            hits.append(SearchHit(row[1], row[2], row[0], kind, best[0], float(row[6]), row[3], best[1]))
        return hits
