"""HTML rendering: one Jinja2 environment with autoescape on, its filters, and the shared stylesheet.

Every string from a store reaches the page through a template expression, so Jinja2
escapes it (``&``, ``<``, ``>``, ``"`` and ``'``); nothing here marks content safe
except the highlighted search snippet, built from escaped pieces.
"""

from __future__ import annotations

import functools
import json
import time
from importlib import resources
from typing import Any

import jinja2
from markupsafe import Markup, escape

from .._counts import describe

_SOURCES = {
    "openai_agents": "OpenAI Agents",
    "claude_code": "Claude Code",
    "langgraph": "LangGraph",
    "custom": "custom event",
}


def _iso(ms: int) -> str:
    """A commit time (ms since the epoch) as UTC, to the second."""
    if not ms:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ms / 1000))


iso = _iso


def _clock(ms: int) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(ms / 1000)) if ms else ""


def _tokens(count: int) -> str:
    return f"{count:,}".replace(",", "\u202f")


def _pretty_json(raw: str) -> str:
    """A tool input (stored as a JSON string) indented for reading; anything else as given.

    Done when a call is rendered, not when the timeline is built: only a page's calls pay for it.
    """
    try:
        return json.dumps(json.loads(raw), indent=2, ensure_ascii=False)
    except ValueError:
        return raw


def _snippet(hit: Any) -> Markup:
    """A search hit's snippet with its match bounds marked; each piece escaped on its own."""
    text: str = hit.snippet
    out: list[str] = []
    at = 0
    for start, end in sorted(getattr(hit, "highlights", ())):
        if start < at or end > len(text) or start >= end:
            continue
        out.append(str(escape(text[at:start])))
        out.append(f'<mark class="hl">{escape(text[start:end])}</mark>')
        at = end
    out.append(str(escape(text[at:])))
    return Markup("".join(out))


@functools.cache
def environment() -> jinja2.Environment:
    """The templates shipped in this package (``templates/``), autoescaped whatever their names."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("sessiondb.web", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.Undefined,
    )
    env.filters.update(
        iso=_iso,
        clock=_clock,
        pretty_json=_pretty_json,
        tokens=_tokens,
        snippet=_snippet,
        source_label=lambda source: _SOURCES.get(source, source),
        contents=lambda info: describe(info.message_count, info.item_count, info.checkpoint_count, scope=info.scope),
    )
    return env


@functools.cache
def stylesheet() -> str:
    return resources.files("sessiondb.web").joinpath("templates/style.css").read_text(encoding="utf-8")


def render(template: str, **context: Any) -> str:
    """The named template rendered with the stylesheet and ``context``."""
    return environment().get_template(template).render(css=stylesheet(), **context)


def render_entries(entries: Any, **context: Any) -> str:
    """Entries as HTML fragments (the live tail sends these), with the page's macros."""
    module = environment().get_template("_entries.html").make_module(vars={**context})
    return "".join(str(module.entry(entry)) for entry in entries)  # type: ignore[attr-defined]


def render_results(calls: Any, **context: Any) -> str:
    """Results that arrived after their calls were shown, each marked with its call's id (``data-result-for``)."""
    module = environment().get_template("_entries.html").make_module(vars={**context})
    return "".join(str(module.tool_result(call, True)) for call in calls)  # type: ignore[attr-defined]


def render_turn_head(number: int, usage: Any, **context: Any) -> str:
    """A turn's heading with the usage of its model calls (the live tail sends it again as the turn grows)."""
    module = environment().get_template("_entries.html").make_module(vars={**context})
    return str(module.turn_head(number, usage))  # type: ignore[attr-defined]


__all__ = ["environment", "iso", "render", "render_entries", "render_results", "render_turn_head", "stylesheet"]
