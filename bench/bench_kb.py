"""Knowledge-base search latency: p50 over 10,000 chunks on SQLite (target: under 5 ms).

Builds a knowledge base of synthetic documents (a vocabulary of 5,000 words with a Zipf-like
frequency, so that common words match thousands of chunks and rare ones a few), in a fresh SQLite
file, then times `KnowledgeBase.search` (the library call the tool, the CLI and the API use: query
parsing, the FTS5 query with BM25 ranking, the thread hop) for queries of 1 to 4 words, half of them
drawn from the 50 most frequent words (stop words, to the search: see `_kb_sqlite.COMMON`), half from
the whole vocabulary. ``--tenants 2`` puts as many chunks of another tenant in the same tables.

    .venv/bin/python bench/bench_kb.py [--chunks 10000] [--queries 500] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time

from loomiq.tools.builtin import KnowledgeBase


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main(chunks: int, queries: int, tenants: int) -> dict[str, object]:
    """Fill, then time `queries` searches of tenant t0; the p50/p90/p99 in milliseconds."""
    rng = random.Random(7)
    vocab = [f"w{i}x{rng.randrange(10**6)}" for i in range(5000)]
    weights = [1 / (i + 1) for i in range(len(vocab))]
    folder = tempfile.mkdtemp(prefix="loomiq-bench-kb-")
    url = f"sqlite:///{folder}/kb.db"
    kb = await KnowledgeBase.open(url, chunk_chars=1000, overlap_chars=0)
    fill_started = time.perf_counter()
    per_doc = 20  # chunks per document (each ~900 characters, one chunk each with overlap 0)
    total = 0
    doc = 0
    while total < chunks * tenants:
        paragraphs = [" ".join(rng.choices(vocab, weights, k=120)) for _ in range(per_doc)]
        text = "\n\n".join(p[:900] for p in paragraphs)
        added = await kb.add(f"t{doc % tenants}", f"doc{doc}.txt", text, kind="text")
        total += added.chunks
        doc += 1
    fill_s = time.perf_counter() - fill_started
    times: list[float] = []
    hits: list[int] = []
    for _ in range(queries):
        words = [rng.choice(vocab[:50]) if rng.random() < 0.5 else rng.choice(vocab) for _ in range(rng.randint(1, 4))]
        started = time.perf_counter()
        result = await kb.search("t0", " ".join(words), limit=10)
        times.append((time.perf_counter() - started) * 1000)
        hits.append(len(result))
    await kb.close()
    return {
        "bench": "kb_search_sqlite",
        "chunks_per_tenant": chunks,
        "tenants": tenants,
        "chunks_total": total,
        "documents": doc,
        "fill_s": round(fill_s, 2),
        "queries": queries,
        "search_ms": {"p50": round(statistics.median(times), 3), "p90": round(_pct(times, 0.9), 3),
                      "p99": round(_pct(times, 0.99), 3)},
        "mean_hits": round(sum(hits) / len(hits), 2),
        "target_p50_ms": 5.0,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "loadavg": [round(x, 2) for x in os.getloadavg()]},
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=10_000, help="chunks of the searched tenant")
    parser.add_argument("--tenants", type=int, default=1, help="tenants holding as many chunks each")
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--out", default=None)
    opts = parser.parse_args()
    report = asyncio.run(main(opts.chunks, opts.queries, opts.tenants))
    text = json.dumps(report, indent=2)
    if opts.out:
        with open(opts.out, "w") as fh:
            fh.write(text + "\n")
    sys.stdout.write(text + "\n")
