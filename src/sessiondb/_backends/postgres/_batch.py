"""Turning a batch of AppendRequests into the column arrays of one ``append_batch`` call, and back.

The database decides each append's outcome; this module only lays the batch
out (payloads encoded, summary deltas precomputed so the server never parses
an event) and applies the outcome codes it returns to the requests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from ..._counts import CLEARED, COUNTED, compose, count_change
from ..._errors import ConflictError, EventTooLargeError, InvalidInputError, SessionExistsError, SessionNotFoundError
from ..._events import Compacted, Custom, Message, PinChanged, SessionDeleted, SessionStarted, TagsChanged, TitleChanged
from .._base import AppendRequest, SessionInfo, apply_to_info, compaction_error
from ._schema import (
    CONFLICT,
    DUPLICATE,
    EXISTS,
    FLAG_CHECK_REMOVED,
    FLAG_COMPACTED,
    FLAG_DELETED,
    LABEL_ADD_TAG,
    LABEL_CLEAR_TITLE,
    LABEL_PIN,
    LABEL_REMOVE_TAG,
    LABEL_SET_TITLE,
    LABEL_UNPIN,
    NOT_FOUND,
    OK,
    PARTIAL_RETRY,
    REMOVES_TOO_MANY,
)

_INT4_MAX = 2**31 - 1


# The columns of an ``append_batch`` call after its three scalars, in order, with their SQL types.
# Numbers travel as array literals ('{1,2,3}', parsed by the server's array_in): asyncpg's
# array encoder runs several isinstance checks per element, which cost more than the append.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("a_sess", "text[]"), ("a_kind", "integer[]"), ("a_expected", "integer[]"), ("a_cnt", "integer[]"),
    ("a_prev", "integer[]"), ("a_last", "boolean[]"), ("a_ts", "bigint[]"), ("a_nids", "integer[]"),
    ("a_msgs", "integer[]"), ("a_tin", "bigint[]"), ("a_tout", "bigint[]"), ("a_tcc", "bigint[]"),
    ("a_tcr", "bigint[]"), ("a_flags", "integer[]"), ("a_ncomp", "integer[]"), ("c_removed", "integer[]"),
    ("c_after", "integer[]"), ("a_base", "integer[]"), ("a_created", "bigint[]"), ("a_model", "text[]"),
    ("a_ws", "text[]"), ("a_parent", "text[]"), ("a_branch", "text[]"), ("e_ai", "integer[]"),
    ("e_k", "integer[]"), ("e_id", "text[]"), ("e_payload", "bytea[]"), ("a_first", "integer[]"),
    ("e_carrier", "integer[]"), ("a_scope", "text[]"), ("l_ai", "integer[]"), ("l_op", "integer[]"),
    ("l_arg", "text[]"), ("l_fold", "text[]"), ("k_ai", "integer[]"), ("k_floor", "bigint[]"),
    ("k_delta", "bigint[]"), ("k_cp", "integer[]"),
)  # fmt: skip
_COLUMNS = tuple(name for name, _ in COLUMNS)
_LITERAL = frozenset(name for name, sql_type in COLUMNS if sql_type in ("integer[]", "bigint[]"))
_BOOLEAN = frozenset(name for name, sql_type in COLUMNS if sql_type == "boolean[]")
# Text columns that are often all NULL: sent empty then (unnest pads a short array with NULLs).
_SPARSE = frozenset(("a_model", "a_ws", "a_parent", "a_branch", "e_id", "a_scope", "l_arg", "l_fold"))


def placeholders(first: int) -> str:
    """The call's column parameters, numbered from ``first``, cast the way ``arguments`` sends them."""
    parts = []
    for number, (name, sql_type) in enumerate(COLUMNS, first):
        literal = name in _LITERAL or name in _BOOLEAN
        parts.append(f"${number}::text::{sql_type}" if literal else f"${number}")
    return ", ".join(parts)


class BatchArrays:
    """The arguments of one ``append_batch`` call (in ``_COLUMNS`` order) and the requests they stand for."""

    __slots__ = ("sent", "simple", "sizes", *_COLUMNS)
    COLUMN_COUNT = len(_COLUMNS)

    sent: list[AppendRequest]
    simple: bool  # every session at most once, no compaction: the database's fast path
    sizes: list[int]  # encoded bytes of each sent request (not sent: for the compactor's tail counts)
    a_sess: list[str]
    a_kind: list[int]
    a_expected: list[int]
    a_cnt: list[int]
    a_prev: list[int]
    a_last: list[bool]
    a_ts: list[int]
    a_nids: list[int]
    a_msgs: list[int]
    a_tin: list[int]
    a_tout: list[int]
    a_tcc: list[int]
    a_tcr: list[int]
    a_flags: list[int]
    a_ncomp: list[int]
    c_removed: list[int]
    c_after: list[int]
    a_base: list[int]
    a_created: list[int]
    a_model: list[str | None]
    a_ws: list[str | None]
    a_parent: list[str | None]
    a_branch: list[str | None]
    e_ai: list[int]
    e_k: list[int]
    e_id: list[str | None]
    e_payload: list[bytes]
    # Only for the ordered path with event ids: each append's first event (1-based), and per
    # event -1 (no id), 0 (no earlier append of the batch has it) or the event that had it before.
    a_first: list[int]
    e_carrier: list[int]
    a_scope: list[str | None]
    # Label operations (rare), in batch order: the append (1-based), the operation (_schema.LABEL_*), its text.
    l_ai: list[int]
    l_op: list[int]
    l_arg: list[str | None]
    l_fold: list[str | None]  # a set title's str.casefold() (the title filter's form)
    # Count changes (rare: _counts.COUNTED events), one per append that has any: the append (1-based),
    # the item count's floor and delta (count = max(floor, count + delta)), the checkpoints added.
    k_ai: list[int]
    k_floor: list[int]
    k_delta: list[int]
    k_cp: list[int]

    def __init__(self) -> None:
        self.sent = []
        self.simple = True
        self.sizes = []
        for name in _COLUMNS:
            setattr(self, name, [])

    def arguments(self) -> tuple[Any, ...]:
        values: list[Any] = [self.simple]
        for name in _COLUMNS:
            column = getattr(self, name)
            if name in _LITERAL:
                values.append("{" + ",".join(map(str, column)) + "}")
            elif name in _BOOLEAN:
                values.append("{" + ",".join(["t" if value else "f" for value in column]) + "}")
            elif name in _SPARSE and column.count(None) == len(column):
                values.append([])
            else:
                values.append(column)
        return tuple(values)

    @property
    def event_count(self) -> int:
        return len(self.e_ai)


def build_batch(batch: Sequence[AppendRequest], max_event_bytes: int, encode: Callable[[Any], bytes]) -> BatchArrays:
    """Lay ``batch`` out as arrays; requests refused here (too large) get their error and are left out."""
    arrays = BatchArrays()
    sent = arrays.sent
    a_sess, a_kind, a_expected, a_cnt = arrays.a_sess, arrays.a_kind, arrays.a_expected, arrays.a_cnt
    a_prev, a_last, a_ts, a_nids = arrays.a_prev, arrays.a_last, arrays.a_ts, arrays.a_nids
    a_base, a_created, a_model, a_ws = arrays.a_base, arrays.a_created, arrays.a_model, arrays.a_ws
    a_parent, a_branch, a_scope = arrays.a_parent, arrays.a_branch, arrays.a_scope
    e_ai, e_k, e_id, e_payload = arrays.e_ai, arrays.e_k, arrays.e_id, arrays.e_payload
    last_index: dict[str, int] = {}
    for request in batch:
        session_id = request.session_id
        events = request.events
        try:
            payloads = [encode(event) for event in events]
        except (TypeError, ValueError, RecursionError, msgspec.EncodeError) as exc:
            request.error = InvalidInputError(
                f"an event for session {session_id!r} cannot be encoded ({exc}); nothing was written"
            )
            continue
        problem = _text_problem(request)
        if not -(2**63) <= request.timestamp_ms < 2**63:
            problem = f"timestamp_ms {request.timestamp_ms}, outside a 64-bit integer"

        if problem is not None:
            request.error = InvalidInputError(
                f"the append to session {session_id!r} has {problem}, which PostgreSQL cannot store; "
                "nothing was written"
            )
            continue
        too_large = next((len(p) for p in payloads if len(p) > max_event_bytes), None)
        if too_large is not None:
            request.error = EventTooLargeError(
                f"an event for session {session_id!r} encodes to {too_large} bytes, over the store's "
                f"max_event_bytes of {max_event_bytes}; split it or raise the limit"
            )
            continue
        sent.append(request)
        arrays.sizes.append(sum(map(len, payloads)))
        index = len(sent)
        previous = last_index.get(session_id, 0)
        if previous:
            a_last[previous - 1] = False
            arrays.simple = False
        last_index[session_id] = index
        a_sess.append(session_id)
        a_prev.append(previous)
        a_last.append(True)
        a_cnt.append(len(events))
        a_ts.append(request.timestamp_ms)
        expected = request.expected_version
        # A version is an int4: a larger expectation can never match (and must not break the batch).
        a_expected.append(-1 if expected is None else min(expected, _INT4_MAX))
        event_ids = request.event_ids
        if event_ids is None:
            a_nids.append(0)
            e_id.extend([None] * len(events))
        else:
            a_nids.append(sum(1 for event_id in event_ids if event_id is not None))
            e_id.extend(event_ids)
        if len(payloads) == 1:
            e_ai.append(index)
            e_k.append(1)
            e_payload.append(payloads[0])
        else:
            for k, payload in enumerate(payloads, 1):
                e_ai.append(index)
                e_k.append(k)
                e_payload.append(payload)
        if request.creates:
            _add_create(arrays, request)
        else:
            a_kind.append(0)
            a_base.append(0)
            a_created.append(0)
            a_model.append(None)
            a_ws.append(None)
            a_parent.append(None)
            a_branch.append(None)
            a_scope.append(None)
            _add_deltas(arrays, events, request.full_check)
    if not arrays.simple and any(arrays.a_nids):
        _link_repeated_ids(arrays)
    return arrays


def _text_problem(request: AppendRequest) -> str | None:
    """What makes a text value of ``request`` unstorable in a text column (NUL, lone surrogates), if anything."""
    texts: list[str | None] = list(request.event_ids) if request.event_ids is not None else []
    if request.creates:
        started = request.events[0]
        if isinstance(started, SessionStarted):
            texts += [started.model, started.workspace_root]
            if started.fork is not None:
                texts += [started.fork.parent_session_id, started.fork.branch_name]
    for text in texts:
        if text is None:
            continue
        if "\x00" in text:
            return f"a NUL character in {text!r}"
        try:
            text.encode()
        except UnicodeEncodeError:
            return f"a lone surrogate in {text!r}"
    return None


def _link_repeated_ids(arrays: BatchArrays) -> None:
    """Point each event id at the same id in an earlier append to the same session in this batch."""
    last_seen: dict[tuple[str, str], int] = {}
    first = 1
    for index, count in enumerate(arrays.a_cnt):
        arrays.a_first.append(first)
        session_id = arrays.a_sess[index]
        for n in range(first, first + count):
            event_id = arrays.e_id[n - 1]
            if event_id is None:
                arrays.e_carrier.append(-1)
                continue
            key = (session_id, event_id)
            arrays.e_carrier.append(last_seen.get(key, 0))
            last_seen[key] = n
        first += count


def _add_deltas(arrays: BatchArrays, events: Sequence[Any], check_removed: bool = False) -> None:
    """The summary change of a plain append, as numbers the database adds (compactions as a small program).

    ``check_removed`` (the store's ``full_check``): the database refuses the append when one of
    its compactions removes more than the live messages, under the session's lock.
    """
    messages = tin = tout = tcc = tcr = flags = compactions = 0
    c_after = arrays.c_after
    for event in events:
        kind = type(event)
        if kind is Message:
            if compactions:
                c_after[-1] += 1
            else:
                messages += 1
            usage = event.usage
            if usage is not None:
                tin += usage.input_tokens
                tout += usage.output_tokens
                tcc += usage.cache_creation_input_tokens
                tcr += usage.cache_read_input_tokens
        elif kind is Compacted:
            if event.rewrite_context:
                compactions += 1
                arrays.c_removed.append(min(event.removed_message_count, _INT4_MAX))
                c_after.append(0)
        elif kind is SessionDeleted:
            flags |= FLAG_DELETED
        elif kind is TitleChanged or kind is TagsChanged or kind is PinChanged:
            _add_label(arrays, event)
        elif kind is Custom and event.name in COUNTED:
            _add_counted(arrays, event)
    arrays.a_msgs.append(messages)
    arrays.a_tin.append(tin)
    arrays.a_tout.append(tout)
    arrays.a_tcc.append(tcc)
    arrays.a_tcr.append(tcr)
    if compactions and check_removed:
        flags |= FLAG_CHECK_REMOVED
    arrays.a_flags.append(flags)
    arrays.a_ncomp.append(compactions)
    if compactions:
        arrays.simple = False


def _add_label(arrays: BatchArrays, event: Any) -> None:
    """A label event of the append being laid out (the last sent) as operations the database applies in order."""
    index = len(arrays.sent)
    ops: Sequence[tuple[int, str | None]]
    if type(event) is TitleChanged:
        ops = [(LABEL_SET_TITLE, event.title) if event.title is not None else (LABEL_CLEAR_TITLE, None)]
    elif type(event) is TagsChanged:
        ops = [(LABEL_REMOVE_TAG, tag) for tag in event.removed] + [(LABEL_ADD_TAG, tag) for tag in event.added]
    else:
        ops = [(LABEL_PIN if event.pinned else LABEL_UNPIN, None)]
    for op, arg in ops:
        arrays.l_ai.append(index)
        arrays.l_op.append(op)
        arrays.l_arg.append(arg)
        arrays.l_fold.append(arg.casefold() if op == LABEL_SET_TITLE and arg is not None else None)


def _add_count(arrays: BatchArrays, items: tuple[int, int], checkpoints: int) -> None:
    """The count change of the append being laid out (the last sent), applied by the database after its row."""
    arrays.k_ai.append(len(arrays.sent))
    arrays.k_floor.append(items[0])
    arrays.k_delta.append(items[1])
    arrays.k_cp.append(checkpoints)


def _add_counted(arrays: BatchArrays, event: Any) -> None:
    """A counted event (``_counts.COUNTED``) of the append being laid out, composed into its one change."""
    checkpoint, floor, delta = count_change(event.name, event.data)
    if not arrays.k_ai or arrays.k_ai[-1] != len(arrays.sent):
        _add_count(arrays, (0, 0), 0)  # the identity change: max(0, count + 0)
    if checkpoint:
        arrays.k_cp[-1] += delta
    else:
        arrays.k_floor[-1], arrays.k_delta[-1] = compose((arrays.k_floor[-1], arrays.k_delta[-1]), (floor, delta))


def _add_create(arrays: BatchArrays, request: AppendRequest) -> None:
    """A create starts from nothing, so its whole summary is computed here."""
    started = request.events[0]
    fork = started.fork if isinstance(started, SessionStarted) else None
    base = fork.parent_version if fork is not None else 0
    info = SessionInfo(request.session_id)
    for k, event in enumerate(request.events, 1):
        apply_to_info(info, event, base + k, request.timestamp_ms)
        if type(event) is TitleChanged or type(event) is TagsChanged or type(event) is PinChanged:
            _add_label(arrays, event)  # applied after the session's row is inserted
    arrays.a_kind.append(1)
    arrays.a_base.append(base)
    arrays.a_created.append(info.created_at_ms)
    arrays.a_model.append(info.model)
    arrays.a_ws.append(info.workspace_root)
    arrays.a_parent.append(fork.parent_session_id if fork is not None else None)
    arrays.a_branch.append(fork.branch_name if fork is not None else None)
    arrays.a_scope.append(info.scope)
    arrays.a_msgs.append(info.message_count)
    arrays.a_tin.append(info.input_tokens)
    arrays.a_tout.append(info.output_tokens)
    arrays.a_tcc.append(info.cache_creation_input_tokens)
    arrays.a_tcr.append(info.cache_read_input_tokens)
    arrays.a_flags.append((FLAG_DELETED if info.deleted else 0) | (FLAG_COMPACTED if info.compacted else 0))
    arrays.a_ncomp.append(0)
    if info.item_count or info.checkpoint_count:  # the row starts at 0: set both (a fork's inherited part too)
        _add_count(arrays, (info.item_count, CLEARED), info.checkpoint_count)


def apply_outcomes(arrays: BatchArrays, codes: Sequence[int], versions: Sequence[int], base: int) -> int:
    """Set each sent request's outcome from the database's answer; return the last position written.

    An event's position is ``base`` plus its ordinal among the events sent, so a
    refused append leaves a gap and an admitted one has consecutive positions.
    """
    first = 1
    last = 0
    for request, code, version in zip(arrays.sent, codes, versions, strict=True):
        count = len(request.events)
        if code == OK:
            request.version = version
            request.first_position = base + first
            last = base + first + count - 1
        elif code == DUPLICATE:
            request.version = version
            request.duplicate = True
        elif code == CONFLICT:
            assert request.expected_version is not None
            request.error = ConflictError(request.session_id, request.expected_version, version)
        elif code == NOT_FOUND:
            request.error = SessionNotFoundError(request.session_id)
        elif code == EXISTS:
            request.error = SessionExistsError(request.session_id)
        elif code == REMOVES_TOO_MANY:
            # ``version`` is the live message count before the append: the same fold gives the same message.
            request.error = compaction_error(request.session_id, version, False, request.events) or InvalidInputError(
                f"session {request.session_id!r} has {version} live message(s), fewer than a compaction of this "
                "append removes; nothing was written"
            )
        elif code == PARTIAL_RETRY:
            request.error = InvalidInputError(
                f"some event ids of this append to session {request.session_id!r} are already stored and "
                "some are not; a retry must repeat the same events with the same ids"
            )
        else:  # pragma: no cover - the function only returns the codes above
            raise AssertionError(f"append_batch returned unknown outcome code {code}")
        first += count
    return last


def split_batch(batch: Sequence[AppendRequest], max_events: int) -> list[Sequence[AppendRequest]]:
    """Split a batch whose events would not fit in one transaction's position range (practically never)."""
    total = sum(len(request.events) for request in batch)
    if total <= max_events:
        return [batch]
    chunks: list[Sequence[AppendRequest]] = []
    chunk: list[AppendRequest] = []
    count = 0
    for request in batch:
        if chunk and count + len(request.events) > max_events:
            chunks.append(chunk)
            chunk, count = [], 0
        chunk.append(request)
        count += len(request.events)
    if chunk:
        chunks.append(chunk)
    return chunks
