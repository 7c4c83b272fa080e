"""Where a soaked process's memory went: ``python bench/soak_probe/report.py FOLDER [--from S] [--rate R]``.

Reads the ``*.jsonl`` lines `sitecustomize.py` wrote in FOLDER (``bench/soak.py --probe FOLDER``) and,
for each process and each figure (RSS and its parts, glibc malloc, pymalloc, SQLite, tracemalloc),
prints its value at ``--from`` seconds (the end of the warm-up) and at the end, and its least-squares
slope in KB per minute; with ``--rate`` (tasks finished per second) also in KB per task.
The figure whose slope matches RSS's is where the growth is:

* ``malloc.uordblks`` (glibc bytes in use) or ``pymalloc.used`` growing: memory kept (by C code or
  Python objects; tracemalloc's snapshots say which);
* ``malloc.fordblks`` / ``pymalloc.free_blocks`` growing with RSS while what is in use stays flat:
  fragmentation or a high-water mark the allocator keeps (``--probe-trim`` tells the two apart);
* ``sqlite.used``: SQLite's own allocations (page caches, prepared statements).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from soak import slope  # noqa: E402

FIGURES = [
    ("rss.VmRSS", "RSS"), ("rss.RssAnon", "anonymous"), ("rss.RssFile", "file-backed"),
    ("malloc.arena", "malloc heaps"), ("malloc.uordblks", "malloc in use"), ("malloc.fordblks", "malloc free"),
    ("malloc.hblkhd", "malloc mmapped"), ("pymalloc.arenas", "pymalloc arenas (n)"),
    ("pymalloc.used", "pymalloc in use"), ("pymalloc.free_blocks", "pymalloc free blocks"),
    ("sqlite.used", "SQLite in use"), ("py.traced", "tracemalloc traced"), ("trimmed_kb", "given back by trim"),
]


def value(row: dict[str, object], dotted: str) -> float | None:
    cur: object = row
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return float(cur) if isinstance(cur, int | float) else None


def report(folder: Path, start: float, rate: float | None) -> list[dict[str, object]]:
    out = []
    for path in sorted(folder.glob("*.jsonl")):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        used = [r for r in rows if r["t"] >= start]
        proc: dict[str, object] = {"process": path.stem, "samples": len(used),
                                   "t": [used[0]["t"], used[-1]["t"]] if used else None}
        figures = {}
        for key, label in FIGURES:
            pts = [(r["t"], v) for r in used if (v := value(r, key)) is not None]
            if len(pts) < 3:
                continue
            b, _ = slope([p[0] for p in pts], [p[1] for p in pts])
            half = len(pts) // 2
            b2, _ = slope([p[0] for p in pts[half:]], [p[1] for p in pts[half:]])
            fig: dict[str, object] = {"label": label, "first": pts[0][1], "last": pts[-1][1],
                                      "per_min": round(b * 60, 1), "per_min_second_half": round(b2 * 60, 1)}
            if rate:
                fig["kb_per_task"] = round(b / rate, 4)
                fig["kb_per_task_second_half"] = round(b2 / rate, 4)
            figures[key] = fig
        last = used[-1] if used else {}
        proc["gc"] = last.get("gc")
        proc["figures"] = figures
        out.append(proc)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("folder", type=Path)
    p.add_argument("--from", dest="start", type=float, default=0.0, help="seconds after the process started")
    p.add_argument("--rate", type=float, default=None, help="tasks finished per second, for KB per task")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    procs = report(args.folder, args.start, args.rate)
    if args.json:
        print(json.dumps(procs))
        return
    for proc in procs:
        print(f"{proc['process']}: {proc['samples']} samples, t {proc['t']} s; gc {proc['gc']}")
        for key, fig in proc["figures"].items():  # type: ignore[attr-defined]
            per_task = (f"  {fig['kb_per_task']:+.4f} KB/task ({fig['kb_per_task_second_half']:+.4f})"
                        if "kb_per_task" in fig else "")
            print(f"  {fig['label']:<24} {fig['first']:>10.0f} -> {fig['last']:>10.0f}  "
                  f"{fig['per_min']:+8.1f}/min ({fig['per_min_second_half']:+.1f}){per_task}   [{key}]")


if __name__ == "__main__":
    main()
