"""The PostgreSQL backend's schema: its tables, its batch-commit function, and their migrations.

Everything lives in one schema (``sessiondb`` unless configured), so several
stores can share a database and tests can use a fresh schema per run. Each
migration is applied once, in order, inside one transaction that holds an
advisory lock, so processes opening the store at the same time do not race.

Positions
---------
An event's store-wide position is ``(xid << 24) + n``: the 64-bit id of the
transaction that wrote it (``pg_current_xact_id()``) shifted left 24 bits, plus
its ordinal among the events the batch sent (refused appends leave gaps). A reader of the global order asks
only for positions below ``pg_snapshot_xmin(pg_current_snapshot()) << 24``:
every transaction with a smaller id has finished, so nothing can later commit
below that line. A transaction gets its id only after it holds the advisory
lock of every session it appends to, so a session's later appends always get
larger positions than its earlier ones. ``docs/postgres.md`` explains it.
"""

from __future__ import annotations

import re

from ..._counts import LANGGRAPH_CHECKPOINT, OPENAI_CLEAR, OPENAI_ITEMS, OPENAI_POP
from ..._errors import InvalidInputError

SCHEMA_VERSION = 7
POSITION_SHIFT = 24
# xid << 24 must stay below 2**63.
MAX_XID = 2 ** (63 - POSITION_SHIFT) - 1
# Events one transaction may hold: the ordinal part of a position.
MAX_EVENTS_PER_TRANSACTION = 2**POSITION_SHIFT - 1

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

# Advisory lock keys: (class, key) pairs. The class is derived from the schema name
# so that two stores in one database do not serialise on each other's sessions.
MIGRATION_LOCK_KEY = 0x5E55
# A process that listens for NOTIFY holds a shared session-level advisory lock on the
# one-key (bigint) lock ``listener_lock_key(class)``: a key space apart from the
# (class, session hash) pairs, so it never blocks an append. append_batch tries the
# same key exclusively; failing means someone may listen, so a NOTIFY is worth sending.
LISTENER_LOCK_SPACE = 0x5E55_0001


def listener_lock_key(lock_class: int) -> int:
    return (LISTENER_LOCK_SPACE << 32) | lock_class


# The same key computed in append_batch from its lock class.
_LISTENER_KEY_SQL = f"(({LISTENER_LOCK_SPACE}::bigint << 32) | p_lock_class)"


def check_schema_name(schema: str) -> str:
    if not isinstance(schema, str) or not _IDENTIFIER.match(schema):
        raise InvalidInputError(
            f"schema name {schema!r} is not a plain lower-case SQL identifier (a-z, 0-9, _; at most 63 characters)"
        )
    return schema


def _version_1(s: str) -> list[str]:
    """The original layout: sessions, events, and the batch-commit function."""
    return [
        f"""
        create table {s}.sessions (
            session_id text collate "C" primary key,
            version integer not null,
            base integer not null default 0,
            created_at_ms bigint not null default 0,
            updated_at_ms bigint not null default 0,
            message_count integer not null default 0,
            input_tokens bigint not null default 0,
            output_tokens bigint not null default 0,
            cache_creation_input_tokens bigint not null default 0,
            cache_read_input_tokens bigint not null default 0,
            model text,
            workspace_root text,
            parent_session_id text,
            branch_name text,
            deleted boolean not null default false,
            compacted boolean not null default false
        ) with (fillfactor = 70)
        """,
        f"""
        create table {s}.events (
            position bigint primary key,
            session_id text collate "C" not null,
            version integer not null,
            timestamp_ms bigint not null,
            event_id text collate "C",
            payload bytea not null
        )
        """,
        f"create unique index events_session_version on {s}.events (session_id, version)",
        f"create index events_session_event_id on {s}.events (session_id, event_id) where event_id is not null",
        f"""
        create view {s}.events_json as
            select position, session_id, version, timestamp_ms, event_id,
                   convert_from(payload, 'UTF8')::jsonb as event
            from {s}.events
        """,
    ]


def _version_2(s: str) -> list[str]:
    """Batch outcomes, so a commit whose reply was lost with the connection can be resolved."""
    return [
        f"""
        create table {s}.batches (
            token uuid primary key,
            codes integer[] not null,
            versions integer[] not null,
            base bigint not null,
            created_at timestamptz not null default now()
        )
        """,
        _append_batch_function(s),
    ]


def _version_3(s: str) -> list[str]:
    """Snapshots for the compactor: the newest per session, with a checksum."""
    return [
        f"""
        create table {s}.snapshots (
            session_id text collate "C" primary key,
            version integer not null,
            data bytea not null,
            crc bigint not null,
            created_at timestamptz not null default now()
        )
        """,
    ]


# A migration that changes append_batch's arguments or results drops every version of it first.
_DROP_APPEND_BATCH = """
    do $drop$ declare f regprocedure; begin
        for f in select p.oid::regprocedure from pg_proc as p
                  where p.proname = 'append_batch' and p.pronamespace = '{s}'::regnamespace loop
            execute 'drop function ' || f::text;
        end loop;
    end $drop$
"""


def _version_4(s: str) -> list[str]:
    """Scopes and labels: columns and indexes for filtered, paged listings; append_batch folds label events."""
    return [
        f"""
        alter table {s}.sessions
            add column scope text collate "C",
            add column title text collate "C",
            add column title_folded text collate "C",
            add column tags text[] collate "C" not null default '{{}}',
            add column pinned boolean not null default false
        """,
        # Keyset pages of a scope (or of everything) newest-updated first walk these in order.
        f"create index sessions_scope_updated on {s}.sessions (scope, updated_at_ms, session_id) where not deleted",
        f"create index sessions_updated on {s}.sessions (updated_at_ms, session_id) where not deleted",
        f"create index sessions_tags on {s}.sessions using gin (tags) where not deleted",
        _DROP_APPEND_BATCH.format(s=s),
        _apply_labels_function(s),
        _append_batch_function(s),
    ]


def _version_5(s: str) -> list[str]:
    """append_batch plans its statements once per connection and says whether anyone listens for NOTIFY."""
    return [_DROP_APPEND_BATCH.format(s=s), _append_batch_function(s)]


def _version_6(s: str) -> list[str]:
    """The integrations' counts (``_counts``): two columns, filled from the stored events; append_batch keeps them."""
    return [
        f"""
        alter table {s}.sessions
            add column item_count integer not null default 0,
            add column checkpoint_count integer not null default 0
        """,
        _DROP_APPEND_BATCH.format(s=s),
        _apply_counts_function(s),
        _append_batch_function(s),
        # Sessions written before: fold their counted events in order (once, at the upgrade). A fork made
        # before keeps 0 for what it inherited (its start event holds no count), as on a directory store.
        f"""
        do $fill$ declare r record; begin
            for r in
                select e.session_id, x.j ->> 'name' as name, x.j -> 'data' -> 'items' as items
                  from {s}.events as e
                 cross join lateral (select convert_from(e.payload, 'UTF8')::jsonb as j) as x
                 where position(convert_to('"type":"custom"', 'UTF8') in e.payload) > 0
                   and x.j ->> 'type' = 'custom'
                   and x.j ->> 'name' in ('{OPENAI_ITEMS}', '{OPENAI_POP}', '{OPENAI_CLEAR}', '{LANGGRAPH_CHECKPOINT}')
                 order by e.session_id, e.version
            loop
                update {s}.sessions set
                    item_count = case r.name
                        when '{OPENAI_ITEMS}' then item_count
                             + (case when jsonb_typeof(r.items) = 'array' then jsonb_array_length(r.items) else 0 end)
                        when '{OPENAI_POP}' then greatest(0, item_count - 1)
                        when '{OPENAI_CLEAR}' then 0
                        else item_count end,
                    checkpoint_count = checkpoint_count
                        + (case when r.name = '{LANGGRAPH_CHECKPOINT}' then 1 else 0 end)
                 where session_id = r.session_id;
            end loop;
        end $fill$
        """,
    ]


def _version_7(s: str) -> list[str]:
    """append_batch refuses a compaction (flagged by the client) that removes more than the live messages."""
    return [_DROP_APPEND_BATCH.format(s=s), _append_batch_function(s)]


MIGRATIONS = {
    1: _version_1,
    2: _version_2,
    3: _version_3,
    4: _version_4,
    5: _version_5,
    6: _version_6,
    7: _version_7,
}

# Label operations of append_batch's l_op array (one per title set, tag added or removed, pin).
LABEL_SET_TITLE, LABEL_CLEAR_TITLE, LABEL_ADD_TAG, LABEL_REMOVE_TAG, LABEL_PIN, LABEL_UNPIN = 1, 2, 3, 4, 5, 6


def _in_batch_order(s: str, name: str, arguments: str, index: str, assignments: str) -> str:
    """A function applying rare per-append operations one at a time, in batch order, to admitted appends only.

    Run after the batch's session rows are written (a create's too), so several appends to one
    session in one batch fold exactly as the log replays them. ``index`` names the argument
    holding each operation's append (1-based); ``assignments`` is the SET list, one row per operation.
    """
    return f"""
    create function {s}.{name}(a_sess text[], codes integer[], {arguments})
    returns void language plpgsql as $fn$
    declare
        j integer;
    begin
        for j in 1 .. coalesce(cardinality({index}), 0) loop
            continue when codes[{index}[j]] <> 0;
            update {s}.sessions as t set
                {assignments}
             where t.session_id = a_sess[{index}[j]];
        end loop;
    end
    $fn$
    """


def _apply_labels_function(s: str) -> str:
    # title_folded is the title's str.casefold(), computed by the client, so that the title filter
    # (a substring of the folded title) means exactly what it means on the directory store.
    return _in_batch_order(
        s,
        "apply_labels",
        "l_ai integer[], l_op integer[], l_arg text[], l_fold text[]",
        "l_ai",
        f"""title = case l_op[j] when {LABEL_SET_TITLE} then l_arg[j] when {LABEL_CLEAR_TITLE} then null
                        else t.title end,
                title_folded = case l_op[j] when {LABEL_SET_TITLE} then l_fold[j] when {LABEL_CLEAR_TITLE} then null
                               else t.title_folded end,
                tags = case l_op[j]
                       when {LABEL_ADD_TAG} then array(select distinct x collate "C" from
                                                       unnest(array_append(t.tags, l_arg[j])) as u(x) order by 1)
                       when {LABEL_REMOVE_TAG} then array_remove(t.tags, l_arg[j])
                       else t.tags end,
                pinned = case l_op[j] when {LABEL_PIN} then true when {LABEL_UNPIN} then false else t.pinned end""",
    )


def _apply_counts_function(s: str) -> str:
    # Counted custom events (``_counts``): one change per append that has any, count =
    # greatest(floor, count + delta), which composes over one append's events.
    return _in_batch_order(
        s,
        "apply_counts",
        "k_ai integer[], k_floor bigint[], k_delta bigint[], k_cp integer[]",
        "k_ai",
        """item_count = greatest(k_floor[j], t.item_count + k_delta[j]),
                checkpoint_count = t.checkpoint_count + k_cp[j]""",
    )


# Outcome codes of append_batch, per append. REMOVES_TOO_MANY: a compaction of an append flagged
# FLAG_CHECK_REMOVED removes more than the live messages; its version is the live count before the append.
OK, DUPLICATE, CONFLICT, NOT_FOUND, EXISTS, PARTIAL_RETRY, REMOVES_TOO_MANY = 0, 1, 2, 3, 4, 5, 6
# a_flags bits: the append deletes its session, a create starts compacted, check compactions' removals.
FLAG_DELETED, FLAG_COMPACTED, FLAG_CHECK_REMOVED = 1, 2, 4


def _append_batch_function(s: str) -> str:
    # One call commits one batch: lock the batch's sessions (advisory locks, taken
    # in key order so writers never deadlock, and before this transaction has an
    # xid), read their heads and the event ids already stored, decide each
    # append's outcome in order (appends to one session chain through a_prev),
    # then insert every admitted event with one statement and write the summaries.
    # ``listened``: whether the listener lock (listener_lock_key) is taken, i.e. some process
    # may be waiting for a NOTIFY. When it is free, this transaction holds it till commit,
    # so a listener that starts meanwhile waits for the commit and then reads past it:
    # skipping the NOTIFY loses no wake-up. (Another writer holding it reads as a listener:
    # one NOTIFY too many, never one too few.)
    # Arrays are indexed by append (a_*), by compaction (c_*) or by event (e_*).
    return f"""
    create function {s}.append_batch(
        p_lock_class integer, p_token uuid, p_simple boolean,
        a_sess text[], a_kind integer[], a_expected integer[], a_cnt integer[], a_prev integer[],
        a_last boolean[], a_ts bigint[], a_nids integer[],
        a_msgs integer[], a_tin bigint[], a_tout bigint[], a_tcc bigint[], a_tcr bigint[],
        a_flags integer[], a_ncomp integer[], c_removed integer[], c_after integer[],
        a_base integer[], a_created bigint[], a_model text[], a_ws text[], a_parent text[], a_branch text[],
        e_ai integer[], e_k integer[], e_id text[], e_payload bytea[], a_first integer[], e_carrier integer[],
        a_scope text[], l_ai integer[], l_op integer[], l_arg text[], l_fold text[],
        k_ai integer[], k_floor bigint[], k_delta bigint[], k_cp integer[],
        out codes integer[], out versions integer[], out base bigint, out listened boolean)
    language plpgsql
    -- Plan each statement once per connection: re-planning them for every call (custom
    -- plans) was about half of a one-append call's server time. Batch sizes are unknown
    -- to either kind of plan (unnest of a parameter), so the plans do not get worse.
    set plan_cache_mode = force_generic_plan
    as $fn$
    declare
        n integer := cardinality(a_sess);
        d_ver integer[]; d_deleted boolean[]; d_msgs integer[]; d_compacted boolean[];
        d_tin bigint[]; d_tout bigint[]; d_tcc bigint[]; d_tcr bigint[];
        ev_found integer[]; found integer; maxv integer; v integer; q integer;
        s_ver integer[]; s_exists boolean[]; s_deleted boolean[]; s_msgs integer[]; s_compacted boolean[];
        s_tin bigint[]; s_tout bigint[]; s_tcc bigint[]; s_tcr bigint[]; s_ts bigint[];
        s_touched boolean[]; s_created boolean[];
        start_v integer[];
        i integer; j integer; p integer; code integer; c integer := 1; admitted integer := 0;
        ex boolean; del boolean; comp boolean; touched boolean; created boolean;
        head integer; msgs integer; m integer; cm boolean; tin bigint; tout bigint; tcc bigint; tcr bigint; ts bigint;
        xid bigint;
    begin
        perform pg_advisory_xact_lock(p_lock_class, h)
            from (select distinct hashtext(x) as h from unnest(a_sess) as x order by 1) as keys;

        if p_simple then
            -- Each session at most once and no compaction in the batch (the usual case):
            -- every outcome follows from the stored heads, so decide them all in one query.
            select array_agg(d.code order by d.i),
                   array_agg(case d.code when 0 then coalesce(d.head, d.base) + d.cnt when 1 then d.found_v
                                         when 2 then d.head else 0 end order by d.i),
                   count(*) filter (where d.code = 0)
              into codes, versions, admitted
              from (select a.i, a.cnt, a.base, t.version as head, f.v as found_v,
                           case when a.kind = 1 then (case when t.session_id is null then 0 else 4 end)
                                when t.session_id is null or t.deleted then 3
                                when a.nids > 0 and f.n is not null
                                     then (case when f.n < a.nids then 5 else 1 end)
                                when a.expected >= 0 and a.expected <> t.version then 2
                                else 0 end as code
                              from unnest(a_sess, a_kind, a_expected, a_cnt, a_nids, a_base)
                                   with ordinality as a(sid, kind, expected, cnt, nids, base, i)
                              left join {s}.sessions as t on t.session_id = a.sid
                              left join (select e.ai, count(*)::integer as n, max(m.v) as v
                                           from (select u.ai, u.id, a2.sid from unnest(e_ai, e_id) as u(ai, id)
                                                   join unnest(a_sess) with ordinality as a2(sid, i) on a2.i = u.ai
                                                  where u.id is not null) as e
                                          cross join lateral (
                                              select max(x.version) as v from {s}.events as x
                                               where x.session_id = e.sid and x.event_id = e.id) as m
                                          where m.v is not null
                                          group by e.ai) as f on f.ai = a.i) as d;
            base := 0;
            if admitted = 0 then
                return;
            end if;
            xid := pg_current_xact_id()::text::bigint;
            if xid > {MAX_XID} then
                raise exception 'transaction id % is too large for sessiondb positions', xid;
            end if;
            base := xid << {POSITION_SHIFT};
            insert into {s}.events (position, session_id, version, timestamp_ms, event_id, payload)
            select base + e.n, a_sess[e.ai], versions[e.ai] - a_cnt[e.ai] + e.k, a_ts[e.ai], e.id, e.payload
              from unnest(e_ai, e_k, e_id, e_payload) with ordinality as e(ai, k, id, payload, n)
             where codes[e.ai] = 0;
            if 1 = any(a_kind) then
            insert into {s}.sessions (session_id, version, base, created_at_ms, updated_at_ms, message_count,
                                      input_tokens, output_tokens, cache_creation_input_tokens,
                                      cache_read_input_tokens, model, workspace_root, parent_session_id,
                                      branch_name, deleted, compacted, scope)
            select u.sid, u.base + u.cnt, u.base, u.created, u.ts, u.msgs, u.tin, u.tout, u.tcc, u.tcr,
                   u.model, u.ws, u.parent, u.branch, (u.flags & 1) <> 0, (u.flags & 2) <> 0, u.scope
              from unnest(a_sess, a_kind, codes, a_cnt, a_base, a_created, a_ts, a_msgs, a_tin, a_tout, a_tcc, a_tcr,
                          a_model, a_ws, a_parent, a_branch, a_flags, a_scope)
                   as u(sid, kind, code, cnt, base, created, ts, msgs, tin, tout, tcc, tcr,
                        model, ws, parent, branch, flags, scope)
             where u.kind = 1 and u.code = 0;
            end if;
            update {s}.sessions as t
               set version = u.ver, updated_at_ms = u.ts, message_count = t.message_count + u.msgs,
                   input_tokens = t.input_tokens + u.tin, output_tokens = t.output_tokens + u.tout,
                   cache_creation_input_tokens = t.cache_creation_input_tokens + u.tcc,
                   cache_read_input_tokens = t.cache_read_input_tokens + u.tcr,
                   deleted = t.deleted or (u.flags & 1) <> 0
              from unnest(a_sess, a_kind, codes, versions, a_ts, a_msgs, a_tin, a_tout, a_tcc, a_tcr, a_flags)
                   as u(sid, kind, code, ver, ts, msgs, tin, tout, tcc, tcr, flags)
             where u.kind = 0 and u.code = 0 and t.session_id = u.sid;
            if cardinality(l_ai) > 0 then
                perform {s}.apply_labels(a_sess, codes, l_ai, l_op, l_arg, l_fold);
            end if;
            if cardinality(k_ai) > 0 then
                perform {s}.apply_counts(a_sess, codes, k_ai, k_floor, k_delta, k_cp);
            end if;
            listened := not pg_try_advisory_xact_lock({_LISTENER_KEY_SQL});
            insert into {s}.batches (token, codes, versions, base) values (p_token, codes, versions, base);
            return;
        end if;

        -- The general case: appends to one session chain through a_prev; decide them in order.

        select array_agg(coalesce(t.version, -1) order by a.i),
               array_agg(coalesce(t.deleted, false) order by a.i),
               array_agg(coalesce(t.message_count, 0) order by a.i),
               array_agg(coalesce(t.compacted, false) order by a.i),
               array_agg(coalesce(t.input_tokens, 0) order by a.i),
               array_agg(coalesce(t.output_tokens, 0) order by a.i),
               array_agg(coalesce(t.cache_creation_input_tokens, 0) order by a.i),
               array_agg(coalesce(t.cache_read_input_tokens, 0) order by a.i)
          into d_ver, d_deleted, d_msgs, d_compacted, d_tin, d_tout, d_tcc, d_tcr
          from unnest(a_sess) with ordinality as a(sid, i)
          left join {s}.sessions as t on t.session_id = a.sid;

        -- The version each event's id already has in the database (NULL: none), aligned with e_*.
        if exists (select 1 from unnest(a_nids) as x where x > 0) then
            select array_agg(m.v order by e.n) into ev_found
              from unnest(e_ai, e_id) with ordinality as e(ai, id, n)
              join unnest(a_sess) with ordinality as a2(sid, i) on a2.i = e.ai
             cross join lateral (
                 select case when e.id is null then null else
                        (select max(x.version) from {s}.events as x
                          where x.session_id = a2.sid and x.event_id = e.id) end as v) as m;
        end if;

        codes := array_fill(0, array[n]); versions := array_fill(0, array[n]);
        start_v := array_fill(0, array[n]);
        s_ver := array_fill(0, array[n]); s_msgs := array_fill(0, array[n]); s_ts := array_fill(0::bigint, array[n]);
        s_tin := s_ts; s_tout := s_ts; s_tcc := s_ts; s_tcr := s_ts;
        s_exists := array_fill(false, array[n]); s_deleted := s_exists; s_compacted := s_exists;
        s_touched := s_exists; s_created := s_exists;

        for i in 1 .. n loop
            p := a_prev[i];
            if p > 0 then
                ex := s_exists[p]; del := s_deleted[p]; head := s_ver[p]; msgs := s_msgs[p]; comp := s_compacted[p];
                tin := s_tin[p]; tout := s_tout[p]; tcc := s_tcc[p]; tcr := s_tcr[p]; ts := s_ts[p];
                touched := s_touched[p]; created := s_created[p];
            else
                ex := d_ver[i] >= 0; del := d_deleted[i]; head := d_ver[i]; msgs := d_msgs[i]; comp := d_compacted[i];
                tin := d_tin[i]; tout := d_tout[i]; tcc := d_tcc[i]; tcr := d_tcr[i]; ts := 0;
                touched := false; created := false;
            end if;
            code := 0;
            found := 0;
            maxv := 0;
            if a_nids[i] > 0 and a_kind[i] <> 1 and ex and not del then
                -- An id counts as stored if the database has it, or an earlier append of this
                -- batch admitted it (e_carrier chains each id to its previous carrier in the batch).
                for q in a_first[i] .. a_first[i] + a_cnt[i] - 1 loop
                    if e_carrier[q] >= 0 then
                        v := ev_found[q];
                        j := e_carrier[q];
                        while v is null and j > 0 loop
                            if codes[e_ai[j]] = 0 then
                                v := start_v[e_ai[j]] + e_k[j];
                            else
                                j := e_carrier[j];
                            end if;
                        end loop;
                        if v is not null then
                            found := found + 1;
                            maxv := greatest(maxv, v);
                        end if;
                    end if;
                end loop;
            end if;
            if a_kind[i] = 1 then
                if ex then
                    code := 4;
                else
                    ex := true; created := true; touched := true;
                    head := a_base[i] + a_cnt[i]; msgs := a_msgs[i]; comp := (a_flags[i] & 2) <> 0;
                    del := (a_flags[i] & 1) <> 0;
                    tin := a_tin[i]; tout := a_tout[i]; tcc := a_tcc[i]; tcr := a_tcr[i]; ts := a_ts[i];
                end if;
            elsif not ex or del then
                code := 3;
            elsif found > 0 then
                if found < a_nids[i] then
                    code := 5;
                else
                    code := 1;
                    versions[i] := maxv;
                end if;
            elsif a_expected[i] >= 0 and a_expected[i] <> head then
                code := 2;
                versions[i] := head;
            else
                -- Compactions fold in order; a flagged one may remove at most the live messages before
                -- it (an earlier summary not counted), checked here under the session's lock.
                m := msgs + a_msgs[i];
                cm := comp;
                for j in 1 .. a_ncomp[i] loop
                    if (a_flags[i] & {FLAG_CHECK_REMOVED}) <> 0
                       and c_removed[c + j - 1] > m - (case when cm then 1 else 0 end) then
                        code := {REMOVES_TOO_MANY};
                        versions[i] := msgs - (case when comp then 1 else 0 end);
                        exit;
                    end if;
                    m := 1 + greatest(0, m - (case when cm then 1 else 0 end) - c_removed[c + j - 1])
                         + c_after[c + j - 1];
                    cm := true;
                end loop;
                if code = 0 then
                    head := head + a_cnt[i];
                    msgs := m;
                    comp := cm;
                    tin := tin + a_tin[i]; tout := tout + a_tout[i]; tcc := tcc + a_tcc[i]; tcr := tcr + a_tcr[i];
                    del := del or (a_flags[i] & 1) <> 0;
                    ts := a_ts[i];
                    touched := true;
                end if;
            end if;
            c := c + a_ncomp[i];
            codes[i] := code;
            if code = 0 then
                versions[i] := head;
                start_v[i] := head - a_cnt[i];
                admitted := admitted + 1;
            end if;
            s_exists[i] := ex; s_deleted[i] := del; s_ver[i] := head; s_msgs[i] := msgs; s_compacted[i] := comp;
            s_tin[i] := tin; s_tout[i] := tout; s_tcc[i] := tcc; s_tcr[i] := tcr; s_ts[i] := ts;
            s_touched[i] := touched; s_created[i] := created;
        end loop;

        base := 0;
        if admitted = 0 then
            return;
        end if;
        -- The first write: this transaction gets its id only now, with every lock held.
        xid := pg_current_xact_id()::text::bigint;
        if xid > {MAX_XID} then
            raise exception 'transaction id % is too large for sessiondb positions', xid;
        end if;
        base := xid << {POSITION_SHIFT};

        insert into {s}.events (position, session_id, version, timestamp_ms, event_id, payload)
        select base + e.n, a_sess[e.ai], start_v[e.ai] + e.k, a_ts[e.ai], e.id, e.payload
          from unnest(e_ai, e_k, e_id, e_payload) with ordinality as e(ai, k, id, payload, n)
         where codes[e.ai] = 0;

        insert into {s}.sessions (session_id, version, base, created_at_ms, updated_at_ms, message_count,
                                  input_tokens, output_tokens, cache_creation_input_tokens, cache_read_input_tokens,
                                  model, workspace_root, parent_session_id, branch_name, deleted, compacted, scope)
        select u.sid, u.ver, u.base, u.created, u.ts, u.msgs, u.tin, u.tout, u.tcc, u.tcr,
               u.model, u.ws, u.parent, u.branch, u.del, u.comp, u.scope
          from unnest(a_sess, a_kind, codes, a_base, a_created, s_ts, s_ver, s_msgs, s_tin, s_tout, s_tcc, s_tcr,
                      a_model, a_ws, a_parent, a_branch, s_deleted, s_compacted, a_scope)
               as u(sid, kind, code, base, created, ts, ver, msgs, tin, tout, tcc, tcr,
                    model, ws, parent, branch, del, comp, scope)
         where u.kind = 1 and u.code = 0;

        update {s}.sessions as t
           set version = u.ver, updated_at_ms = u.ts, message_count = u.msgs,
               input_tokens = u.tin, output_tokens = u.tout,
               cache_creation_input_tokens = u.tcc, cache_read_input_tokens = u.tcr,
               deleted = u.del, compacted = u.comp
          from unnest(a_sess, a_last, s_touched, s_ver, s_ts, s_msgs, s_tin, s_tout, s_tcc, s_tcr,
                      s_deleted, s_compacted)
               as u(sid, last, touched, ver, ts, msgs, tin, tout, tcc, tcr, del, comp)
         where u.last and u.touched and t.session_id = u.sid;

        if cardinality(l_ai) > 0 then
            perform {s}.apply_labels(a_sess, codes, l_ai, l_op, l_arg, l_fold);
        end if;
        if cardinality(k_ai) > 0 then
            perform {s}.apply_counts(a_sess, codes, k_ai, k_floor, k_delta, k_cp);
        end if;

        listened := not pg_try_advisory_xact_lock({_LISTENER_KEY_SQL});
        insert into {s}.batches (token, codes, versions, base) values (p_token, codes, versions, base);
    end
    $fn$
    """
