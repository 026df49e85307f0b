"""The commands that label a session: title, tag, pin (each one durable append beside other writers)."""

from __future__ import annotations

import argparse

from .._backends._base import SessionInfo
from ._context import CommandError, _Output, _session_info, _writing, shown_store


def _labels_text(info: SessionInfo) -> str:
    parts = [f"title {info.title!r}" if info.title is not None else "no title"]
    parts.append("tags " + " ".join(info.tags) if info.tags else "no tags")
    if info.pinned:
        parts.append("pinned")
    return ", ".join(parts)


async def cmd_title(args: argparse.Namespace, out: _Output) -> int:
    if args.clear == (args.text is not None):
        raise CommandError("give the new title, or --clear to remove it (not both)")
    if args.text is not None and not args.text.strip():
        raise CommandError(
            "a title cannot be empty or blank; "
            f"`sessiondb title {shown_store(args.store)} {args.session} --clear` removes it"
        )
    async with _writing(args.store) as store:
        await _session_info(store, args)
        version = await store.set_title(args.session, None if args.clear else args.text)
        info = await store.session_info(args.session)
    _report(out, args, info, version)
    return 0


async def cmd_tag(args: argparse.Namespace, out: _Output) -> int:
    # -TAG removes wherever it stands, after -- too: no tag starts with '-', so it cannot mean a tag to add.
    added = [tag[1:] if tag.startswith("+") else tag for tag in args.changes if not tag.startswith("-")]
    added += list(args.add or [])
    removed = [tag[1:] for tag in args.changes if tag.startswith("-")] + list(args.removals) + list(args.remove or [])
    both = sorted(set(added) & set(removed))
    if both:
        raise CommandError(
            f"tag {both[0]!r} is both added and removed for session {args.session!r}; say one or the other"
        )
    async with _writing(args.store) as store:
        info = await _session_info(store, args)
        version = info.version
        if removed:
            version = await store.remove_tags(args.session, *removed)
        if added:
            version = await store.add_tags(args.session, *added)
        info = await store.session_info(args.session)
    _report(out, args, info, version)
    return 0


async def cmd_pin(args: argparse.Namespace, out: _Output) -> int:
    async with _writing(args.store) as store:
        await _session_info(store, args)
        version = await store.set_pinned(args.session, not args.off)
        info = await store.session_info(args.session)
    _report(out, args, info, version)
    return 0


def _report(out: _Output, args: argparse.Namespace, info: SessionInfo, version: int) -> None:
    if args.json:
        out.json(
            {
                "session_id": info.session_id,
                "version": version,
                "title": info.title,
                "tags": list(info.tags),
                "pinned": info.pinned,
            }
        )
    else:
        out.line(f"{info.session_id} (version {version}): {_labels_text(info)}")


__all__ = ["cmd_pin", "cmd_tag", "cmd_title"]
