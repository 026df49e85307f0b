"""Turn a run's raw results into the Markdown report, the JSON file and the PNG plots."""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

from benchmarks.systems import LABELS

PEERS = ("naive", "openai-sqlite", "openai-advanced", "langgraph-sqlite", "adk-sqlite")


def _ok(result: dict[str, Any]) -> bool:
    return "error" not in result and "skipped" not in result


def aggregate_concurrent(raw: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    notes: dict[tuple[str, int], str] = {}
    for r in raw:
        key = (r["system"], r["sessions"])
        if _ok(r):
            groups.setdefault(key, []).append(r)
        else:
            notes.setdefault(key, r.get("skipped") or r.get("error", "").splitlines()[0][:120])
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for key, runs in groups.items():
        rates = [r["throughput"] for r in runs]
        out[key] = {
            "runs": len(runs),
            "throughput": statistics.median(rates),
            "min": min(rates),
            "max": max(rates),
            "p50_ms": _median(r["p50_ms"] for r in runs),
            "p99_ms": _median(r["p99_ms"] for r in runs),
            "max_ms": max((r["max_ms"] for r in runs if r["max_ms"] is not None), default=None),
            "rss_mb": max(r["peak_rss_mb"] for r in runs),
            "cpu_us": _median(r.get("cpu_us_per_append") for r in runs),
            "bytes_per_event": _median(r["bytes_per_event"] for r in runs),
            "time_capped": any(r["time_capped"] for r in runs),
            "errors": sum(r["errors"] for r in runs),
            "first_error": next((r["first_error"] for r in runs if r["first_error"]), None),
        }
    for key, note in notes.items():
        out.setdefault(key, {"note": note})
    return out


def _median(values: Any) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def aggregate_simple(
    raw: list[dict[str, Any]], group: tuple[str, ...], fields: tuple[str, ...]
) -> dict[Any, dict[str, Any]]:
    groups: dict[Any, list[dict[str, Any]]] = {}
    notes: dict[Any, str] = {}
    for r in raw:
        key = tuple(r[g] for g in group)
        if _ok(r):
            groups.setdefault(key, []).append(r)
        else:
            notes.setdefault(key, r.get("skipped") or r.get("error", "").splitlines()[0][:160])
    out: dict[Any, dict[str, Any]] = {}
    for key, runs in groups.items():
        entry: dict[str, Any] = {
            "runs": len(runs),
            "rss_mb": max(r["peak_rss_mb"] for r in runs),
            "time_capped": any(r.get("time_capped") for r in runs),
        }
        for field in fields:
            values = [r[field] for r in runs if r.get(field) is not None]
            entry[field] = statistics.median(values) if values else None
            entry[field + "_min"] = min(values) if values else None
            entry[field + "_max"] = max(values) if values else None
        out[key] = entry
    for key, note in notes.items():
        out.setdefault(key, {"note": note})
    return out


def _sessions(n: int) -> str:
    return "1 session" if n == 1 else f"{n:,} sessions"


def _rate(value: float) -> str:
    return f"{value:,.0f}"


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.2f}" if value < 10 else f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def _ratio(a: float | None, b: float | None) -> str:
    if not a or not b:
        return "-"
    ratio = a / b
    return f"{ratio:.2f}x" if ratio < 10 else f"{ratio:,.0f}x"


def goals(conc: dict[tuple[str, int], dict[str, Any]], loads: dict[Any, dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(goal, measured, verdict) rows for the issue's goals, from this run's numbers."""
    rows: list[tuple[str, str, str]] = []

    def get(system: str, sessions: int) -> dict[str, Any] | None:
        entry = conc.get((system, sessions))
        return entry if entry and "throughput" in entry else None

    for variant, raw_variant in (("sessiondb", "raw"), ("sessiondb-uvloop", "raw-uvloop")):
        s = get(variant, 1000)
        if s is None:
            continue
        loop = "uvloop" if "uvloop" in variant else "asyncio"
        r = get(raw_variant, 1000)
        ceiling = f" (raw loop: {_rate(r['throughput'])}/s, p99 {_ms(r['p99_ms'])} ms)" if r else ""
        rows.append(
            (
                f"1,000 sessions, {loop}: >= 100,000 durable appends/s",
                f"{_rate(s['throughput'])}/s{ceiling}",
                "met" if s["throughput"] >= 100_000 else "MISSED",
            )
        )
        if r:
            share = s["throughput"] / r["throughput"]
            rows.append(
                (
                    f"1,000 sessions, {loop}: >= 75% of the raw loop ({raw_variant})",
                    f"{share:.0%} ({_rate(s['throughput'])} vs {_rate(r['throughput'])}/s)",
                    "met" if share >= 0.75 else "MISSED",
                )
            )
        rows.append(
            (
                f"1,000 sessions, {loop}: p99 < 25 ms",
                f"{_ms(s['p99_ms'])} ms{ceiling}",
                "met" if s["p99_ms"] is not None and s["p99_ms"] < 25 else "MISSED",
            )
        )
        if variant == "sessiondb":
            for peer in ("openai-sqlite", "langgraph-sqlite"):
                p = get(peer, 1000)
                if p:
                    ratio = s["throughput"] / p["throughput"]
                    rows.append(
                        (
                            f"1,000 sessions: >= 100x {LABELS[peer]}",
                            f"{ratio:,.0f}x ({_rate(p['throughput'])}/s"
                            + (", time-capped)" if p["time_capped"] else ")"),
                            "met" if ratio >= 100 else "MISSED",
                        )
                    )
        s1, r1 = get(variant, 1), get(raw_variant, 1)
        if s1 and r1 and s1["p50_ms"] and r1["p50_ms"]:
            ratio = s1["p50_ms"] / r1["p50_ms"]
            rows.append(
                (
                    f"1 session, {loop}: p50 within 1.3x of the raw loop",
                    f"{ratio:.2f}x ({_ms(s1['p50_ms'])} vs {_ms(r1['p50_ms'])} ms)",
                    "met" if ratio <= 1.3 else "MISSED",
                )
            )
    sizes = sorted({k[1] for k in loads})
    if sizes:
        size = sizes[-1]
        mine = loads.get(("sessiondb", size), {}).get("resume_s")
        measured = {p: loads.get((p, size), {}).get("resume_s") for p in PEERS if p != "naive"}
        measured = {p: v for p, v in measured.items() if v}
        if mine and measured:
            fastest = min(measured, key=lambda p: measured[p])
            rows.append(
                (
                    f"resume of a {size:,}-event session faster than every peer",
                    f"sessiondb {mine * 1000:,.0f} ms; fastest peer {LABELS[fastest]} "
                    f"{measured[fastest] * 1000:,.0f} ms ({measured[fastest] / mine:.2f}x sessiondb's time)",
                    "met" if measured[fastest] > mine else "MISSED",
                )
            )
    return rows


def headline(
    conc: dict[tuple[str, int], dict[str, Any]], loads: dict[Any, dict[str, Any]], sessions: list[int]
) -> list[str]:
    """One line per session count: sessiondb's rate, its share of the raw loop, and its multiple of each peer."""
    lines = []
    for n in sessions:
        s = conc.get(("sessiondb", n), {})
        if "throughput" not in s:
            continue
        r = conc.get(("raw", n), {})
        parts = [f"**{_sessions(n)}**: sessiondb {_rate(s['throughput'])} durable appends/s"]
        if "throughput" in r:
            parts.append(f"{s['throughput'] / r['throughput']:.0%} of the raw loop")
        multiples = [
            f"{_ratio(s['throughput'], conc[(p, n)]['throughput'])} {LABELS[p]}"
            for p in PEERS
            if "throughput" in conc.get((p, n), {})
        ]
        if multiples:
            parts.append("vs " + ", ".join(multiples))
        lines.append("; ".join(parts))
    sizes = sorted({k[1] for k in loads})
    if sizes:
        size = sizes[-1]
        mine = loads.get(("sessiondb", size), {}).get("resume_s")
        if mine:
            others = [
                f"{LABELS[p]} {loads[(p, size)]['resume_s'] * 1000:,.0f} ms"
                for p in ("raw", *PEERS)
                if loads.get((p, size), {}).get("resume_s")
            ]
            lines.append(f"**resume of {size:,} events**: sessiondb {mine * 1000:,.0f} ms; " + ", ".join(others))
    return lines


def markdown(document: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    raw = document["raw"]
    config = document["config"]
    conc = aggregate_concurrent(raw["concurrent"])
    bursts = aggregate_simple(raw["burst"], ("system",), ("throughput", "p50_ms", "p99_ms", "max_ms"))
    loads = aggregate_simple(raw["load"], ("system", "events"), ("open_s", "load_s", "resume_s"))
    lists = aggregate_simple(raw["list"], ("system",), ("open_s", "list_s", "total_s"))
    systems = [s for s in config["systems"]]
    sessions = config["sessions"]
    machine = document["machine"]
    lines: list[str] = []
    add = lines.append
    add("# sessiondb benchmarks")
    add("")
    add(f"Command: `{document['command']}`  ")
    add(f"Run: {document['started']} to {document['finished']} (UTC)  ")
    add(
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory']} RAM, {machine['os']}, "
        f"disk {machine['disk']}, Python {machine['python']}, load average at start "
        f"{', '.join(f'{x:.2f}' for x in machine['load_average'])}  "
    )
    add(f"sessiondb engine: commit {machine.get('engine', 'unknown')}  ")
    add("Packages: " + ", ".join(f"{k} {v}" for k, v in machine["packages"].items()))
    add("")
    mix = (
        "the seeded agent mix: user text, assistant thinking + text + tool_use with usage, tool results "
        "from 200 B to 48 KiB"
        if config.get("mix", "agent") == "agent"
        else "the small mix: ~200-byte user and assistant messages"
    )
    add(
        f"Each agent loop awaits every append before the next (a message of {mix}); every system "
        f"acknowledges only once the data is durable. Conversations are {config['conversation_length']} messages "
        f"long, then the loop starts a new one. Warm-up {config['warmup_s']} s, window {config['duration_s']} s, "
        f"{config['repeat']} repetition(s) per cell ({config.get('peer_repeat', config['repeat'])} for the "
        f"OpenAI, LangGraph and ADK peers), systems interleaved; the median is shown, with min-max."
    )
    if config.get("unavailable"):
        add("")
        add("Not run: " + "; ".join(f"{k} ({v})" for k, v in config["unavailable"].items()))
    add("")
    add("## Headline")
    add("")
    for line in headline(conc, loads, sessions):
        add(f"- {line}")
    add("")
    add("## Goals")
    add("")
    add("| goal | measured | verdict |")
    add("|---|---|---|")
    for goal, measured, verdict in goals(conc, loads):
        add(f"| {goal} | {measured} | {verdict} |")
    add("")
    add("## Durable appends per second, concurrent agent loops")
    add("")
    add("| system | " + " | ".join(_sessions(n) for n in sessions) + " |")
    add("|---|" + "---:|" * len(sessions))
    for system in systems:
        cells = []
        for n in sessions:
            e = conc.get((system, n))
            if e is None:
                cells.append("-")
            elif "throughput" not in e:
                cells.append("n/a¹")
            else:
                cell = _rate(e["throughput"])
                if e["runs"] > 1:
                    cell += f" ({_rate(e['min'])}-{_rate(e['max'])})"
                if e["time_capped"]:
                    cell += " ²"
                if e["errors"]:
                    cell += " ³"
                cells.append(cell)
        add(f"| {LABELS[system]} | " + " | ".join(cells) + " |")
    add("")
    add("## Ratios from the same run (throughput)")
    add("")
    add("| system | " + " | ".join(f"{n:,}: x raw / x sessiondb" for n in sessions) + " |")
    add("|---|" + "---:|" * len(sessions))
    for system in systems:
        cells = []
        for n in sessions:
            e = conc.get((system, n), {})
            raw_name = "raw-uvloop" if system.endswith("-uvloop") else "raw"
            r = conc.get((raw_name, n), {})
            s = conc.get(("sessiondb", n), {})
            cells.append(
                _ratio(e.get("throughput"), r.get("throughput"))
                + " / "
                + _ratio(e.get("throughput"), s.get("throughput"))
            )
        add(f"| {LABELS[system]} | " + " | ".join(cells) + " |")
    add("")
    add("## Append latency p50 / p99 / max (ms)")
    add("")
    add("| system | " + " | ".join(_sessions(n) for n in sessions) + " |")
    add("|---|" + "---:|" * len(sessions))
    for system in systems:
        cells = []
        for n in sessions:
            e = conc.get((system, n))
            if e is None or "throughput" not in e:
                cells.append("-")
            else:
                cells.append(f"{_ms(e['p50_ms'])} / {_ms(e['p99_ms'])} / {_ms(e['max_ms'])}")
        add(f"| {LABELS[system]} | " + " | ".join(cells) + " |")
    add("")
    add("## CPU time per durable append (µs, all threads of the process)")
    add("")
    add(
        "Less sensitive to a busy machine than throughput: the work each system does per append "
        "(user + system CPU of the whole child process over the window, divided by the appends)."
    )
    add("")
    add("| system | " + " | ".join(_sessions(n) for n in sessions) + " |")
    add("|---|" + "---:|" * len(sessions))
    for system in systems:
        cells = []
        for n in sessions:
            e = conc.get((system, n))
            cells.append(f"{e['cpu_us']:,.0f}" if e and e.get("cpu_us") else "-")
        add(f"| {LABELS[system]} | " + " | ".join(cells) + " |")
    add("")
    add("## Peak RSS (MB) and bytes on disk per event")
    add("")
    add("| system | " + " | ".join(_sessions(n) for n in sessions) + " |")
    add("|---|" + "---:|" * len(sessions))
    for system in systems:
        cells = []
        for n in sessions:
            e = conc.get((system, n))
            if e is None or "throughput" not in e:
                cells.append("-")
            else:
                bpe = e["bytes_per_event"]
                cells.append(f"{e['rss_mb']:.0f} MB, {bpe:,.0f} B" if bpe else f"{e['rss_mb']:.0f} MB")
        add(f"| {LABELS[system]} | " + " | ".join(cells) + " |")
    add("")
    notes = [(k, e) for k, e in sorted(conc.items()) if "note" in e or e.get("errors")]
    add(
        "¹ not run (see notes). ² time-capped: fewer appends completed in the window than there are sessions, so not "
        "every loop finished even one append; latencies then cover only the appends that did. ³ errors during the run."
    )
    for (system, n), e in notes:
        add(
            f"- {LABELS[system]} at {n:,} sessions: "
            + (e.get("note") or f"{e['errors']} errors, first: {e['first_error']}")
        )
    add("")
    if bursts:
        add(f"## Burst: {config['burst_events']:,} single-message appends into one session at once")
        add("")
        add("| system | events/s | x sessiondb | p50 ms | p99 ms | max ms | peak RSS MB |")
        add("|---|---:|---:|---:|---:|---:|---:|")
        base = bursts.get(("sessiondb",), {}).get("throughput")
        for system in systems:
            e = bursts.get((system,))
            if e is None:
                continue
            if "note" in e:
                add(f"| {LABELS[system]} | n/a: {e['note']} | | | | | |")
                continue
            capped = " ²" if e.get("time_capped") else ""
            add(
                f"| {LABELS[system]} | {_rate(e['throughput'])}{capped} | {_ratio(e['throughput'], base)} | "
                f"{_ms(e['p50_ms'])} | "
                f"{_ms(e['p99_ms'])} | {_ms(e['max_ms'])} | {e['rss_mb']:.0f} |"
            )
        add("")
    if loads:
        sizes = config["load_sizes"]
        add("## Resume: open in a fresh process, then read one session back")
        add("")
        add("Resume time in ms = open + read (median); x sessiondb in parentheses; peak RSS of the process.")
        add("")
        add("| system | " + " | ".join(f"{n:,} events" for n in sizes) + " |")
        add("|---|" + "---:|" * len(sizes))
        for system in systems:
            if not any((system, n) in loads for n in sizes):
                continue
            cells = []
            for n in sizes:
                e = loads.get((system, n))
                base = loads.get(("sessiondb", n), {}).get("resume_s")
                if e is None:
                    cells.append("-")
                elif "note" in e:
                    cells.append("n/a: " + e["note"])
                else:
                    cells.append(
                        f"{e['resume_s'] * 1000:,.1f} = {e['open_s'] * 1000:,.1f} + {e['load_s'] * 1000:,.1f} "
                        f"({_ratio(e['resume_s'], base)}), {e['rss_mb']:.0f} MB"
                    )
            add(f"| {LABELS[system]} | " + " | ".join(cells) + " |")
        add("")
    if lists:
        add(f"## Listing {config['list_sessions']:,} sessions from a fresh process")
        add("")
        add("| system | open + list ms | open ms | list ms | peak RSS MB |")
        add("|---|---:|---:|---:|---:|")
        for system in systems:
            e = lists.get((system,))
            if e is None:
                continue
            if "note" in e:
                add(f"| {LABELS[system]} | n/a: {e['note']} | | | |")
                continue
            add(
                f"| {LABELS[system]} | {e['total_s'] * 1000:,.1f} | {e['open_s'] * 1000:,.1f} | "
                f"{e['list_s'] * 1000:,.1f} | {e['rss_mb']:.0f} |"
            )
        add("")
    add("## Configurations measured")
    add("")
    seen: dict[str, dict[str, Any]] = {}
    for kind in ("concurrent", "burst", "load", "list"):
        for r in raw[kind]:
            if "settings" in r and r["system"] not in seen:
                seen[r["system"]] = r["settings"]
    for system in systems:
        if system in seen:
            add(f"- **{LABELS[system]}**: " + "; ".join(f"{k}: {v}" for k, v in seen[system].items()))
    add("")
    for extra in raw.get("extra", []):
        add(f"## benchmarks.{extra['module']} ({extra['status']})")
        add("")
        add("```")
        add(extra["output"].strip())
        add("```")
        add("")
    aggregated = {
        "concurrent": {f"{s}@{n}": v for (s, n), v in conc.items()},
        "burst": {s[0]: v for s, v in bursts.items()},
        "load": {f"{s}@{n}": v for (s, n), v in loads.items()},
        "list": {s[0]: v for s, v in lists.items()},
        "goals": goals(conc, loads),
    }
    return "\n".join(lines), aggregated


def plots(document: dict[str, Any], out: Path, stem: str) -> list[Path]:
    try:
        import matplotlib
    except ImportError:  # a run outside `make bench`: the tables are still written
        print("matplotlib is not installed (`make bench` installs it): no plots", file=sys.stderr)
        return []

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    config = document["config"]
    conc = aggregate_concurrent(document["raw"]["concurrent"])
    loads = aggregate_simple(document["raw"]["load"], ("system", "events"), ("resume_s",))
    styles = {
        "sessiondb": ("C0", "o", "-", 2.5),
        "sessiondb-uvloop": ("C0", "o", "--", 2.0),
        "raw": ("k", "s", "-", 1.5),
        "raw-uvloop": ("k", "s", "--", 1.2),
        "naive": ("C7", "v", "-", 1.2),
        "openai-sqlite": ("C1", "^", "-", 1.2),
        "openai-advanced": ("C1", "^", ":", 1.2),
        "langgraph-sqlite": ("C2", "D", "-", 1.2),
        "adk-sqlite": ("C3", "P", "-", 1.2),
    }
    written = []
    for metric, ylabel, name, title in (
        ("throughput", "durable appends per second", "throughput", "Throughput vs concurrent sessions"),
        ("p99_ms", "p99 append latency (ms)", "p99", "p99 latency vs concurrent sessions"),
    ):
        if not conc:
            continue
        fig, ax = plt.subplots(figsize=(8, 5))
        for system in config["systems"]:
            points = [
                (n, conc[(system, n)][metric])
                for n in config["sessions"]
                if (system, n) in conc and conc[(system, n)].get(metric)
            ]
            if not points:
                continue
            color, marker, line, width = styles.get(system, ("C9", "x", "-", 1.0))
            ax.plot(
                *zip(*points, strict=True),
                marker=marker,
                linestyle=line,
                color=color,
                linewidth=width,
                label=LABELS[system],
            )
            hollow = [(n, v) for n, v in points if conc[(system, n)]["time_capped"]]
            if hollow:
                ax.plot(*zip(*hollow, strict=True), marker=marker, linestyle="", color=color, markerfacecolor="white")
            if metric == "throughput":
                lows = [conc[(system, n)]["min"] for n, _ in points]
                highs = [conc[(system, n)]["max"] for n, _ in points]
                ax.fill_between([n for n, _ in points], lows, highs, color=color, alpha=0.12)
        if metric == "p99_ms":
            ax.axhline(25, linestyle=":", color="red", linewidth=1, label="goal at 1,000 sessions: p99 < 25 ms")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("concurrent sessions (each awaits every append); hollow marker = time-capped")
        ax.set_ylabel(ylabel)
        ax.set_title(title + f" ({document['started'][:10]})")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out / f"{stem}-{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    if loads:
        fig, ax = plt.subplots(figsize=(8, 5))
        for system in config["systems"]:
            points = [
                (n, loads[(system, n)]["resume_s"] * 1000)
                for n in config["load_sizes"]
                if (system, n) in loads and loads[(system, n)].get("resume_s")
            ]
            if not points:
                continue
            color, marker, line, width = styles.get(system, ("C9", "x", "-", 1.0))
            ax.plot(
                *zip(*points, strict=True),
                marker=marker,
                linestyle=line,
                color=color,
                linewidth=width,
                label=LABELS[system],
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("events in the session")
        ax.set_ylabel("resume time: open + read, fresh process (ms)")
        ax.set_title(f"Resume time vs session length ({document['started'][:10]})")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out / f"{stem}-load.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def write(document: dict[str, Any], out: Path, stem: str) -> list[Path]:
    text, aggregated = markdown(document)
    written = plots(document, out, stem)
    text += "\n## Plots\n\n" + "\n".join(f"![{p.stem}]({p.name})" for p in written) + "\n"
    md = out / f"{stem}.md"
    md.write_text(text)
    data = out / f"{stem}.json"
    tmp = data.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({**document, "aggregated": aggregated}, indent=1, default=str))
    tmp.replace(data)
    return [md, data, *written]
