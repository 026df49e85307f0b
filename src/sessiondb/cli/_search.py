"""``sessiondb search``: find events across sessions (the store's full-text index)."""

from __future__ import annotations

import argparse

from .._errors import InvalidInputError
from .._search import SearchHit
from .._search._model import decode_cursor, search_key
from ._context import CommandError, _Output, _reading, shown_store
from ._render import Style, format_time, iso_time


async def cmd_search(args: argparse.Namespace, out: _Output) -> int:
    order = "newest" if args.newest else "relevance"
    if args.cursor is not None:
        # Checked here so the message names the option, not the library's cursor= argument.
        try:
            decode_cursor(args.cursor, search_key(args.query, order, args.scope, args.tag, args.session))
        except InvalidInputError:
            raise CommandError(
                f"--cursor {args.cursor[:40]!r} is not one this search printed (the query, --newest, --scope, "
                "--tag and --session must be the same as the page that gave it); start again without --cursor"
            ) from None
    async with _reading(args.store) as store:
        page = await store.search(
            args.query,
            scope=args.scope,
            tag=args.tag,
            session_id=args.session,
            order=order,
            limit=args.limit,
            cursor=args.cursor,
        )
    if args.json:
        out.json(
            {
                "hits": [
                    {
                        "session_id": hit.session_id,
                        "version": hit.version,
                        "position": hit.position,
                        "kind": hit.kind,
                        "snippet": hit.snippet,
                        "highlights": [list(span) for span in hit.highlights],
                        "score": hit.score,
                        "timestamp_ms": hit.timestamp_ms,
                        "time": iso_time(hit.timestamp_ms),
                    }
                    for hit in page.hits
                ],
                "next_cursor": page.next_cursor,
            }
        )
        return 0
    if not page.hits:
        out.note(f"no match for {args.query!r} in {shown_store(args.store)}")
        return 0
    for hit in page.hits:
        out.line(f"{out.style.bold(f'{hit.session_id}@{hit.version}')}  {hit.kind}  {format_time(hit.timestamp_ms)}")
        out.line("    " + _marked(hit, out.style).replace("\n", " ⏎ "))
    if page.next_cursor is not None:
        out.note(f"more: add --cursor {page.next_cursor}")
    return 0


def _marked(hit: SearchHit, style: Style) -> str:
    """The snippet with its matches in bold (on a terminal) or [brackets] (piped)."""
    parts = []
    done = 0
    for start, end in hit.highlights:
        parts.append(hit.snippet[done:start])
        word = hit.snippet[start:end]
        parts.append(style.bold(word) if style.enabled else f"[{word}]")
        done = end
    parts.append(hit.snippet[done:])
    return "".join(parts)
