"""What grew between two tracemalloc snapshots of a soaked process:
``python bench/soak_probe/diff.py OLD.snap NEW.snap [--by lineno|traceback|filename] [--top N]``.

The snapshots are the ``<role>-<pid>-<n>.snap`` files `sitecustomize.py` dumps when
``bench/soak.py --probe FOLDER --probe-tracemalloc FRAMES`` runs. Allocations of tracemalloc itself
and of the import machinery are left out.
"""

from __future__ import annotations

import argparse
import tracemalloc


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--by", default="lineno", choices=["lineno", "traceback", "filename"])
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args()
    skip = [tracemalloc.Filter(False, tracemalloc.__file__),
            tracemalloc.Filter(False, "<frozen importlib._bootstrap*>"), tracemalloc.Filter(False, "<unknown>")]
    old = tracemalloc.Snapshot.load(args.old).filter_traces(skip)
    new = tracemalloc.Snapshot.load(args.new).filter_traces(skip)
    stats = new.compare_to(old, args.by)
    total = sum(s.size_diff for s in stats)
    print(f"total traced: {sum(s.size for s in stats) / 1024:.0f} KB, change {total / 1024:+.1f} KB "
          f"({sum(s.count_diff for s in stats):+d} blocks)")
    for s in stats[: args.top]:
        if args.by == "traceback":
            print(f"{s.size_diff / 1024:+9.1f} KB {s.count_diff:+7d} blocks  (now {s.size / 1024:.0f} KB)")
            for line in s.traceback.format()[-12:]:
                print("      " + line)
        else:
            frame = s.traceback[0]
            print(f"{s.size_diff / 1024:+9.1f} KB {s.count_diff:+7d} blocks  (now {s.size / 1024:8.0f} KB)  "
                  f"{frame.filename}:{frame.lineno}")


if __name__ == "__main__":
    main()
