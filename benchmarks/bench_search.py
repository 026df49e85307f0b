"""Search across sessions: query latency over a large store, and what the index costs each append.

Run: ``python -m benchmarks.bench_search [--events N] [--appends N] [--rounds N] [--dir DIR] [--json FILE]
[--script latin|cjk]``

``--script cjk`` writes the same corpus in Han characters without spaces between words (as Chinese
and Japanese are written), where every character is a word of the index (docs/search.md).

Sections (one run, side by side):

- ``build``: a directory store of ``--events`` events (default 1,000,000; conversation-like
  text with a Zipf word distribution: user and assistant messages, tool calls and results,
  prompts), then the first search, which indexes the whole log: seconds, events/s, and the
  index's bytes beside the log's.
- ``queries``: p50/p99 per query of ``store.search`` (catch-up check included) for five
  kinds of query (a rare word, a common word, two words, a phrase, a prefix), best-first
  and newest-first, 20 hits a page.
- ``append``: ``--appends`` single-message appends from 100 concurrent tasks into a fresh
  store without an index and into one whose index is kept current in the background
  (then caught up by a search, whose cost is counted), alternating ``--rounds`` times:
  process CPU (all threads) per append and bytes per append, log and index apart.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import json
import os
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import sessiondb
from sessiondb import CompactionSettings, Message, PromptRecorded, Text, ToolUse, Usage

NO_COMPACTION = CompactionSettings(background=False)
_SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "ta", "vo", "si", "de", "pa", "go", "fu", "zi", "be", "xo", "ly"]


# 3,000 Han characters for --script cjk (a common Chinese text uses about that many).
_HAN = [chr(code) for code in range(0x4E00, 0x4E00 + 3_000)]


def vocabulary(size: int, rng: random.Random, script: str = "latin") -> list[str]:
    syllables, longest = (_HAN, 3) if script == "cjk" else (_SYLLABLES, 4)
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(syllables) for _ in range(rng.randint(2, longest))))
    return sorted(words, key=lambda w: (len(w), w))


class Corpus:
    """Conversation-like text: words drawn by Zipf's law (P(rank k) ~ 1/k, as in English) from a fixed vocabulary."""

    def __init__(self, seed: int = 7, size: int = 30_000, script: str = "latin") -> None:
        self.rng = random.Random(seed)
        self.words = vocabulary(size, self.rng, script)
        self.cumulative = list(itertools.accumulate(1 / rank for rank in range(1, size + 1)))
        self.space = "" if script == "cjk" else " "  # CJK text runs its words together

    def word(self) -> str:
        return self.words[bisect.bisect(self.cumulative, self.rng.random() * self.cumulative[-1])]

    def text(self, low: int, high: int) -> str:
        return self.space.join(self.word() for _ in range(self.rng.randint(low, high)))

    def event(self, i: int) -> Any:
        kind = i % 10
        if kind < 4:
            return Message.user(self.text(8, 40))
        if kind < 7:
            return Message.assistant(self.text(10, 60), usage=Usage(input_tokens=1000, output_tokens=80))
        if kind == 7:
            call = ToolUse(f"t{i}", "bash", json.dumps({"cmd": f"grep -rn {self.word()} src/{self.word()}.py"}))
            return Message.assistant([Text(self.text(3, 10)), call])
        if kind == 8:
            return Message.tool_result(f"t{i}", "bash", self.text(20, 120))
        return PromptRecorded(self.text(5, 20), 1)


def _index_bytes(directory: Path) -> int:
    return sum(
        (directory / name).stat().st_size
        for name in ("search.sqlite", "search.sqlite-wal")
        if (directory / name).exists()
    )


async def build(directory: Path, events: int, corpus: Corpus) -> dict[str, Any]:
    started = time.perf_counter()
    # No background compaction: retention would remove old segments, and the index covers only what is readable.
    async with sessiondb.open_store(directory, compaction=NO_COMPACTION) as store:
        sessions = [await store.create_session(session_id=f"s{i}") for i in range(1_000)]
        written = len(sessions)
        group = 500
        while written < events:
            count = min(group, events - written)
            await store.append(sessions[written % len(sessions)], *(corpus.event(written + k) for k in range(count)))
            written += count
        log_bytes = store.statistics()["log_bytes"]
    appended = time.perf_counter() - started
    started = time.perf_counter()
    cpu = time.process_time()
    async with sessiondb.open_store(directory, compaction=NO_COMPACTION) as store:
        await store.search(corpus.words[0])
        documents = store.statistics()["search_events_indexed"]
        indexed = time.perf_counter() - started
        cpu = time.process_time() - cpu
    return {
        "events": events,
        "append_seconds": round(appended, 1),
        "index_seconds": round(indexed, 1),
        "index_cpu_seconds": round(cpu, 1),
        "events_indexed": documents,
        "indexed_events_per_second": round(documents / indexed),
        "log_bytes": log_bytes,
        "index_bytes": _index_bytes(directory),
        "index_to_log_ratio": round(_index_bytes(directory) / log_bytes, 2),
    }


async def queries(directory: Path, corpus: Corpus, per_kind: int) -> dict[str, Any]:
    rng = random.Random(11)
    words = corpus.words
    kinds: dict[str, list[str]] = {
        "rare word": [words[rng.randint(3_000, 10_000)] for _ in range(per_kind)],
        "common word": [words[rng.randint(0, 20)] for _ in range(per_kind)],  # each in 2-40% of the events
        "two words": [f"{words[rng.randint(20, 300)]} {words[rng.randint(20, 300)]}" for _ in range(per_kind)],
        "phrase": [f'"{words[rng.randint(0, 50)]} {words[rng.randint(0, 50)]}"' for _ in range(per_kind)],
        "prefix": [words[rng.randint(50, 500)][: rng.randint(3, 5)] + "*" for _ in range(per_kind)],
    }
    result: dict[str, Any] = {}
    async with sessiondb.open_store(directory, read_only=True, compaction=NO_COMPACTION) as store:
        await store.search(words[0])  # open the index
        for kind, texts in kinds.items():
            for order in ("relevance", "newest"):
                timings = []
                hits = []
                for text in texts:
                    started = time.perf_counter()
                    page = await store.search(text, order=order, limit=20)
                    timings.append((time.perf_counter() - started) * 1000)
                    hits.append(len(page.hits))
                timings.sort()
                result[f"{kind} / {order}"] = {
                    "p50_ms": round(statistics.median(timings), 2),
                    "p99_ms": round(timings[min(len(timings) - 1, int(len(timings) * 0.99))], 2),
                    "mean_hits_on_page": round(statistics.mean(hits), 1),
                }
    return result


async def _appends(directory: Path, count: int, corpus: Corpus, indexed: bool) -> dict[str, float]:
    async with sessiondb.open_store(directory, compaction=NO_COMPACTION) as store:
        sessions = [await store.create_session(session_id=f"s{i}") for i in range(100)]
        messages = [Message.user(corpus.text(8, 40)) for _ in range(count)]
        if indexed:
            await store.search("warmup")  # creates the index; it follows the log in the background from now on
        log_before = store.statistics()["log_bytes"]
        index_before = _index_bytes(directory)
        cpu = time.process_time()
        started = time.perf_counter()

        async def appender(task: int) -> None:
            for i in range(task, count, len(sessions)):
                await store.append(sessions[task], messages[i])

        await asyncio.gather(*(appender(t) for t in range(len(sessions))))
        if indexed:
            await store.search("warmup")  # whatever the background left is indexed now, and counted
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu
        log_bytes = store.statistics()["log_bytes"] - log_before
    return {
        "cpu_us_per_append": cpu / count * 1e6,
        "wall_us_per_append": wall / count * 1e6,
        "log_bytes_per_append": log_bytes / count,
        "index_bytes_per_append": (_index_bytes(directory) - index_before) / count,
    }


async def appends(root: Path, count: int, rounds: int, corpus: Corpus) -> dict[str, Any]:
    runs: dict[str, list[dict[str, float]]] = {"without index": [], "with index": []}
    for round_ in range(rounds):
        for name in ("without index", "with index") if round_ % 2 == 0 else ("with index", "without index"):
            directory = root / f"append-{round_}-{name.replace(' ', '-')}"
            runs[name].append(await _appends(directory, count, corpus, name == "with index"))
            shutil.rmtree(directory)
    summary = {
        name: {key: round(statistics.median(run[key] for run in results), 1) for key in results[0]}
        for name, results in runs.items()
    }
    without, with_ = summary["without index"], summary["with index"]
    summary["index cost"] = {
        "cpu_us_per_append": round(with_["cpu_us_per_append"] - without["cpu_us_per_append"], 1),
        "cpu_ratio": round(with_["cpu_us_per_append"] / without["cpu_us_per_append"], 2),
        "index_bytes_per_log_byte": round(with_["index_bytes_per_append"] / with_["log_bytes_per_append"], 2),
    }
    return summary


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the searched store (1,000,000)")
    parser.add_argument("--appends", type=int, default=20_000, help="appends per run of the cost section (20,000)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs per variant (3)")
    parser.add_argument("--queries", type=int, default=100, help="queries per kind and order (100)")
    parser.add_argument("--dir", help="where to build the stores (default: a temporary directory)")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--only", choices=["queries", "append"], help="one section only")
    parser.add_argument("--script", choices=["latin", "cjk"], default="latin", help="the corpus's writing (latin)")
    args = parser.parse_args()
    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="sessiondb-bench-search-"))
    root.mkdir(parents=True, exist_ok=True)
    corpus = Corpus(script=args.script)
    results: dict[str, Any] = {"machine": {"cpus": os.cpu_count()}, "script": args.script}
    try:
        if args.only != "append":
            store = root / "large"
            if not store.exists():
                results["build"] = await build(store, args.events, corpus)
                print(json.dumps({"build": results["build"]}, indent=2), flush=True)
            results["queries"] = await queries(store, corpus, args.queries)
            print(json.dumps({"queries": results["queries"]}, indent=2), flush=True)
        if args.only != "queries":
            results["append"] = await appends(root, args.appends, args.rounds, Corpus(seed=3, script=args.script))
            print(json.dumps({"append": results["append"]}, indent=2), flush=True)
    finally:
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
