"""Memory probe for `bench/soak.py --probe`: imported at start-up of each service process (this folder
is put first on its ``PYTHONPATH``); does nothing unless ``LOOMIQ_SOAK_PROBE`` names a folder.

A daemon thread writes one JSON line every ``LOOMIQ_SOAK_PROBE_S`` seconds (default 10) to
``<folder>/<role>-<pid>.jsonl`` (role: ``LOOMIQ_SOAK_PROBE_ROLE``) with where the process's memory is:

* ``rss``: VmRSS and its parts (RssAnon, RssFile, RssShmem) from /proc, in KB;
* ``malloc``: glibc's ``mallinfo2`` summed over its arenas: ``arena`` (bytes obtained with brk/mmap for
  the heaps), ``hblkhd`` (bytes in mmapped big blocks), ``uordblks`` (bytes in use), ``fordblks``
  (bytes free inside the heaps: fragmentation or a high-water mark not yet given back);
* ``pymalloc``: Python's small-object allocator (``sys._debugmallocstats``): arenas (1 MiB
  each, mmapped) and the bytes in used and free blocks;
* ``sqlite``: ``sqlite3_memory_used`` / highwater of the process's libsqlite3 (page caches, statements,
  schema: everything SQLite allocated);
* ``gc``: the collector's counts and per-generation collections / collected objects;
* ``py``: tracemalloc's traced bytes when ``LOOMIQ_SOAK_PROBE_TRACEMALLOC`` is a frame depth (then
  snapshots are dumped to ``<role>-<pid>-<n>.snap`` every ``LOOMIQ_SOAK_PROBE_SNAP_S`` seconds, for
  ``bench/soak_probe/diff.py``).

``LOOMIQ_SOAK_PROBE_GARBAGE=1`` finds what becomes garbage in reference cycles (memory that waits for
the collector, not kept): ``gc.DEBUG_SAVEALL``, a full collection at each sample, and the 15 commonest
types among the unreachable objects (``garbage``, with their count), which are then dropped.

``LOOMIQ_SOAK_PROBE_TRIM=1`` calls ``malloc_trim(0)`` before each sample and records the RSS it gave back
(what trimming returns is free memory the allocator kept, not memory in use).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import json
import os
import sys
import threading
import time
import types

_FOLDER = os.environ.get("LOOMIQ_SOAK_PROBE")


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
        "keepcost")]


def _rss() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key = line.split(":", 1)[0]
            if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM", "Threads"):
                out[key] = int(line.split()[1])
    return out


def _pymalloc() -> dict[str, int]:
    """Parse `sys._debugmallocstats` (written by C to fd 2: redirect it to a temporary file)."""
    import tempfile

    keys = {"# arenas allocated current": "arenas", "# bytes in allocated blocks": "used",
            "# bytes in available blocks": "free_blocks", "# bytes lost to pool headers": "pool_headers",
            "# bytes lost to quantization": "quantization", "# bytes lost to arena alignment": "alignment"}
    out: dict[str, int] = {}
    with tempfile.TemporaryFile() as tmp:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(tmp.fileno(), 2)
            sys._debugmallocstats()  # type: ignore[attr-defined]
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        for line in tmp.read().decode(errors="replace").splitlines():
            if "=" in line:
                name, value = line.rsplit("=", 1)
                name = name.strip()
                if name in keys:
                    out[keys[name]] = int(value.strip().replace(",", ""))
            elif "unused pools" in line:
                parts = line.split()
                out.setdefault("unused_pools", int(parts[0].replace(",", "")))
    return out


def _run(folder: str) -> None:
    role = os.environ.get("LOOMIQ_SOAK_PROBE_ROLE", "proc")
    every = float(os.environ.get("LOOMIQ_SOAK_PROBE_S", "10"))
    snap_every = float(os.environ.get("LOOMIQ_SOAK_PROBE_SNAP_S", "60"))
    trim = os.environ.get("LOOMIQ_SOAK_PROBE_TRIM") == "1"
    garbage = os.environ.get("LOOMIQ_SOAK_PROBE_GARBAGE") == "1"
    if garbage:
        gc.set_debug(gc.DEBUG_SAVEALL)
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.mallinfo2.restype = _Mallinfo2
    try:
        sqlite = ctypes.CDLL("libsqlite3.so.0")
        sqlite.sqlite3_memory_used.restype = ctypes.c_int64
        sqlite.sqlite3_memory_highwater.restype = ctypes.c_int64
        sqlite.sqlite3_memory_highwater.argtypes = [ctypes.c_int]
    except OSError:
        sqlite = None
    path = os.path.join(folder, f"{role}-{os.getpid()}.jsonl")
    t0 = time.monotonic()
    last_snap = t0
    n_snap = 0
    while True:
        time.sleep(every)
        row: dict[str, object] = {"t": round(time.monotonic() - t0, 1), "wall": round(time.time(), 2)}
        if garbage:
            gc.collect()
            found = gc.garbage[:]
            gc.garbage.clear()
            kinds: dict[str, int] = {}
            frames: dict[str, int] = {}
            for obj in found:
                kind = f"{type(obj).__module__}.{type(obj).__qualname__}"
                kinds[kind] = kinds.get(kind, 0) + 1
                if isinstance(obj, types.FrameType):
                    where = f"{obj.f_code.co_filename.rsplit('/site-packages/', 1)[-1]}:{obj.f_code.co_name}"
                    frames[where] = frames.get(where, 0) + 1
            row["garbage"] = {"objects": len(found),
                              "types": sorted(kinds.items(), key=lambda kv: -kv[1])[:15],
                              "frames": sorted(frames.items(), key=lambda kv: -kv[1])[:10]}
            del found
        if trim:
            before = _rss()["VmRSS"]
            libc.malloc_trim(0)
            row["trimmed_kb"] = before - _rss()["VmRSS"]
        row["rss"] = _rss()
        mi = libc.mallinfo2()
        row["malloc"] = {k: getattr(mi, k) // 1024 for k in ("arena", "hblkhd", "uordblks", "fordblks")}
        try:
            row["pymalloc"] = {k: (v // 1024 if k != "arenas" and k != "unused_pools" else v)
                               for k, v in _pymalloc().items()}
        except Exception as exc:  # noqa: BLE001
            row["pymalloc"] = repr(exc)
        if sqlite is not None:
            row["sqlite"] = {"used": sqlite.sqlite3_memory_used() // 1024,
                             "highwater": sqlite.sqlite3_memory_highwater(0) // 1024}
        row["gc"] = {"count": gc.get_count(), "stats": [(s["collections"], s["collected"]) for s in gc.get_stats()],
                     "frozen": gc.get_freeze_count()}
        import tracemalloc

        if tracemalloc.is_tracing():
            row["py"] = {"traced": tracemalloc.get_traced_memory()[0] // 1024,
                         "overhead": tracemalloc.get_tracemalloc_memory() // 1024}
            if time.monotonic() - last_snap >= snap_every:
                last_snap = time.monotonic()
                tracemalloc.take_snapshot().dump(os.path.join(folder, f"{role}-{os.getpid()}-{n_snap}.snap"))
                row["snapshot"] = n_snap
                n_snap += 1
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")


if _FOLDER:
    depth = os.environ.get("LOOMIQ_SOAK_PROBE_TRACEMALLOC")
    if depth:
        import tracemalloc

        tracemalloc.start(int(depth))
    threading.Thread(target=_run, args=(_FOLDER,), name="soak-probe", daemon=True).start()
