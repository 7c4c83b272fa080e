"""Summarise the JSON lines of `bench/run.sh` (loomiq beside the floor, optionally the peers) as JSON.

Usage: python3 bench/summary.py RESULTS.jsonl [--peers PEERS.jsonl] [--durable DURABLE.jsonl]
       [--peers-durable PEERS_DURABLE.jsonl] [--meta KEY=VALUE ...]

Stdlib only. Every number is the median over the repetitions (fresh processes) of the per-process
figure the harness printed (itself a median over runs). Per workload:

* ``us_per_run``: median wall time of one run at L=0 (harness figure (a)); ``us_per_run_reps``: the
  figure of each repetition, to show the spread.
* ``overhead_us_per_call``: (framework - floor) / model calls, in µs, both at L=0, against the floor
  measured in the same file (same minutes).
* ``ratio_50ms``: median wall time at L=50 ms divided by the ideal (rounds x 50 ms), as the harness
  reports it; ``vs_floor_50ms``: the framework's median wall time at L=50 ms divided by the floor's.
* throughput: ``runs_per_s`` of 1,000 concurrent W2 runs at L=50 ms, and ``rss_growth_mb`` =
  peak RSS (VmHWM) - RSS just before the burst.

With ``--durable`` (``SET=durable`` in run.sh) a ``durable`` section: the same figures for
floor-durable and for each ``loomiq durable (...)`` row, compared with floor-durable (same minutes; the
PostgreSQL rows with floor-durable-pg, bench_floor_durable_pg.py, when it ran),
the engine's own figures (``submit``, ``scaleout`` lines of bench_loomiq_durable.py) and
``durable_targets``. RESULTS.jsonl may then be empty (SET=durable runs no in-memory rows).
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from typing import Any

WORKLOADS = ("w1", "w2", "w3")
CALLS = {"w1": 3, "w2": 3, "w3": 4}
LOOMIQ = "loomiq (in-process)"
TARGETS = {
    "overhead_us_per_call_max": 20.0,
    "vs_floor_50ms_max": 1.01,
    "throughput_runs_per_s_min": 5000.0,
    "throughput_rss_growth_mb_max": 30.0,
}
DURABLE_TARGETS = {
    "us_per_call_max": {"sqlite": 150.0, "postgres": 300.0},
    "throughput_runs_per_s_min_sqlite": 3000.0,
    "submit_p50_us_max_sqlite": 1000.0,
    "submit_to_first_event_p50_us_max_sqlite": 5000.0,
    "scaleout_speedup_min_postgres": 3.5,
}


def _med(xs: list[float]) -> float | None:
    xs = [x for x in xs if x is not None]
    return round(statistics.median(xs), 4) if xs else None


def load(path: str) -> tuple[list[str], dict[str, dict[str, list[float]]], dict[str, dict[str, Any]]]:
    """(frameworks in order of appearance, per-framework lists of figures, per-framework metadata)."""
    order: list[str] = []
    rows: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    meta: dict[str, dict[str, Any]] = {}
    with open(path) as fh:
        for line in fh:
            line = line.strip()
            if not line.startswith("{"):
                continue
            r = json.loads(line)
            fw = r["framework"]
            if fw not in order:
                order.append(fw)
            meta[fw] = {"versions": r.get("versions", {}), "python": r.get("python"), "durable": bool(r.get("durable"))}
            d = rows[fw]
            d["import_s"].append(r.get("import_s"))
            if r["mode"] not in ("latency", "throughput"):
                continue  # the durable engine's own figures (submit, scaleout): see load_engine
            if r["mode"] == "latency":
                d["lat_reps"].append(1)
                for w in WORKLOADS:
                    d[f"{w}_us"].append(r["a"][w]["median_us"])
                    d[f"{w}_p90_us"].append(r["a"][w]["p90_us"])
                    d[f"{w}_ms50"].append(r["b"][w]["median_ms"])
                    d[f"{w}_ratio50"].append(r["b"][w]["ratio"])
            else:
                c = r["c"]
                d["tp_reps"].append(1)
                d["rps"].append(c["runs_per_s"])
                d["wall_s"].append(c["wall_s"])
                d["peak"].append(c["peak_rss_mb"])
                d["growth"].append(c["peak_rss_mb"] - c["rss_before_mb"])
                d["conc"].append(c["runs"])
    return order, rows, meta


def figures(d: dict[str, list[float]], floor: dict[str, list[float]] | None) -> dict[str, Any]:
    """One framework's medians, compared with `floor` (None for the floor itself)."""
    out: dict[str, Any] = {}
    for w in WORKLOADS:
        us, ms = _med(d[f"{w}_us"]), _med(d[f"{w}_ms50"])
        e: dict[str, Any] = {
            "calls": CALLS[w],
            "us_per_run": us,
            "us_per_run_reps": d[f"{w}_us"],
            "p90_us_per_run": _med(d[f"{w}_p90_us"]),
            "us_per_call": None if us is None else round(us / CALLS[w], 2),
            "ms_50ms": ms,
            "ratio_50ms": _med(d[f"{w}_ratio50"]),
        }
        if floor is not None:
            fus, fms = _med(floor[f"{w}_us"]), _med(floor[f"{w}_ms50"])
            e["floor_us_per_run"] = fus
            e["overhead_us_per_call"] = None if us is None or fus is None else round((us - fus) / CALLS[w], 2)
            e["floor_ratio_50ms"] = _med(floor[f"{w}_ratio50"])
            e["vs_floor_50ms"] = None if ms is None or not fms else round(ms / fms, 4)
        out[w] = e
    if floor is not None:
        ovh = [out[w]["overhead_us_per_call"] for w in WORKLOADS]
        out["overhead_us_per_call_mean"] = round(statistics.mean(ovh), 2) if all(x is not None for x in ovh) else None
    tp: dict[str, Any] = {
        "concurrent_runs": _med(d["conc"]),
        "runs_per_s": _med(d["rps"]),
        "runs_per_s_reps": d["rps"],
        "wall_s": _med(d["wall_s"]),
        "peak_rss_mb": _med(d["peak"]),
        "rss_growth_mb": _med(d["growth"]),
    }
    if floor is not None:
        tp["floor_runs_per_s"] = _med(floor["rps"])
        tp["floor_rss_growth_mb"] = _med(floor["growth"])
    out["throughput"] = tp
    out["import_s"] = _med(d["import_s"])
    out["reps"] = {"latency": len(d["lat_reps"]), "throughput": len(d["tp_reps"])}
    return out


def targets(lq: dict[str, Any]) -> dict[str, Any]:
    """loomiq's figures against the issue's targets (50 ms figures compared with the measured floor)."""
    t: dict[str, Any] = {}
    for w in WORKLOADS:
        o, v = lq[w].get("overhead_us_per_call"), lq[w].get("vs_floor_50ms")
        t[f"{w}_overhead_le_20us"] = None if o is None else o <= TARGETS["overhead_us_per_call_max"]
        t[f"{w}_within_1pct_of_floor_at_50ms"] = None if v is None else v <= TARGETS["vs_floor_50ms_max"]
    rps, growth = lq["throughput"]["runs_per_s"], lq["throughput"]["rss_growth_mb"]
    t["throughput_ge_5000_runs_per_s"] = None if rps is None else rps >= TARGETS["throughput_runs_per_s_min"]
    t["throughput_rss_growth_lt_30mb"] = None if growth is None else growth < TARGETS["throughput_rss_growth_mb_max"]
    t["all_met"] = all(x is True for x in t.values())
    return t


def first_floor(order: list[str], meta: dict[str, dict[str, Any]]) -> str | None:
    return next((fw for fw in order if fw.startswith("floor") and not meta[fw]["durable"]), None)


def first_durable_floor(order: list[str], meta: dict[str, dict[str, Any]]) -> str | None:
    return next((fw for fw in order if fw.startswith("floor") and meta[fw]["durable"]), None)


def load_engine(path: str) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """framework -> mode (submit, scaleout) -> the figures of each line."""
    out: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    with open(path) as fh:
        for line in fh:
            line = line.strip()
            if line.startswith("{"):
                r = json.loads(line)
                if r["mode"] in ("submit", "scaleout"):
                    out[r["framework"]][r["mode"]].append(r[r["mode"]])
    return out


def durable_section(path: str, peers_path: str | None) -> dict[str, Any]:
    """floor-durable and loomiq's durable rows (same file, same minutes), engine figures, targets."""
    order, rows, meta = load(path)
    fl = first_durable_floor(order, meta)
    # PostgreSQL rows are compared with the PostgreSQL floor of the same run when there is one.
    pg_fl = next((fw for fw in order if fw.startswith("floor-durable-pg")), None)
    sec: dict[str, Any] = {"results": path, "floor_durable_row": fl, "floor_durable_pg_row": pg_fl,
                           "targets_def": DURABLE_TARGETS, "frameworks": {}}
    for fw in order:
        base = pg_fl if pg_fl is not None and "postgres" in fw else fl
        f = figures(rows[fw], None if fw in (fl, pg_fl) or base is None else rows[base])
        f["versions"] = meta[fw]["versions"]
        sec["frameworks"][fw] = f
    engine = load_engine(path)
    sec["engine"] = {fw: {mode: lines[-1] for mode, lines in modes.items()} for fw, modes in engine.items()}
    t: dict[str, Any] = {}
    for fw, f in sec["frameworks"].items():
        if not fw.startswith("loomiq durable"):
            continue
        variant = "postgres" if "postgres" in fw else "sqlite"
        limit = DURABLE_TARGETS["us_per_call_max"][variant]
        for w in WORKLOADS:
            per_call = f[w]["us_per_call"]
            t[f"{variant}_{w}_us_per_call_le_{limit:g}"] = None if per_call is None else per_call <= limit
        if variant == "sqlite":
            rps = f["throughput"]["runs_per_s"]
            t["sqlite_throughput_ge_3000_runs_per_s"] = (
                None if rps is None else rps >= DURABLE_TARGETS["throughput_runs_per_s_min_sqlite"])
    for fw, modes in sec["engine"].items():
        if "sqlite" in fw and "submit" in modes:
            sub = modes["submit"]
            t["sqlite_submit_p50_lt_1ms"] = sub["submit"]["p50_us"] < DURABLE_TARGETS["submit_p50_us_max_sqlite"]
            t["sqlite_submit_to_first_event_p50_lt_5ms"] = (
                sub["submit_to_first_event"]["p50_us"] < DURABLE_TARGETS["submit_to_first_event_p50_us_max_sqlite"])
        if "postgres" in fw and "scaleout" in modes and "speedup" in modes["scaleout"]:
            t["postgres_scaleout_4_workers_ge_3_5x"] = (
                modes["scaleout"]["speedup"] >= DURABLE_TARGETS["scaleout_speedup_min_postgres"])
    t["all_met"] = bool(t) and all(x is True for x in t.values())
    sec["durable_targets"] = t
    if peers_path:
        porder, prows, pmeta = load(peers_path)
        pfl = first_durable_floor(porder, pmeta)
        peers: dict[str, Any] = {"results": peers_path, "floor_durable_row": pfl, "frameworks": {}}
        for fw in porder:
            f = figures(prows[fw], None if fw == pfl or pfl is None or not pmeta[fw]["durable"] else prows[pfl])
            f["versions"] = pmeta[fw]["versions"]
            peers["frameworks"][fw] = f
        sec["peers"] = peers
    return sec


def main() -> None:
    args = sys.argv[1:]
    if not args or args[0].startswith("-"):
        sys.exit(__doc__)
    path = args.pop(0)
    peers_path = durable_path = peers_durable_path = None
    extra: dict[str, str] = {}
    while args:
        opt = args.pop(0)
        if opt == "--peers":
            peers_path = args.pop(0)
        elif opt == "--durable":
            durable_path = args.pop(0)
        elif opt == "--peers-durable":
            peers_durable_path = args.pop(0)
        elif opt == "--meta":
            k, _, v = args.pop(0).partition("=")
            extra[k] = v
        else:
            sys.exit(f"unknown option {opt}")

    order, rows, meta = load(path)
    floor_fw = first_floor(order, meta)
    if floor_fw is None and durable_path is not None and not order:
        # SET=durable: no in-memory rows at all.
        summary = {**extra, "durable": durable_section(durable_path, peers_durable_path)}
        json.dump(summary, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return
    if floor_fw is None:
        sys.exit(f"{path}: no floor row")
    summary: dict[str, Any] = {**extra, "results": path, "targets_def": TARGETS}
    summary["floor"] = figures(rows[floor_fw], None)
    if LOOMIQ in rows:
        summary["loomiq"] = figures(rows[LOOMIQ], rows[floor_fw])
        summary["loomiq"]["versions"] = meta[LOOMIQ]["versions"]
        summary["targets"] = targets(summary["loomiq"])
    for fw in order:  # anything else that ran beside them
        if fw not in (floor_fw, LOOMIQ):
            summary.setdefault("others", {})[fw] = figures(rows[fw], rows[floor_fw])

    if peers_path:
        porder, prows, pmeta = load(peers_path)
        pfloor = first_floor(porder, pmeta)
        peers: dict[str, Any] = {"results": peers_path, "floor_row": pfloor, "frameworks": {}}
        for fw in porder:
            f = figures(prows[fw], None if fw == pfloor or pfloor is None else prows[pfloor])
            f["versions"] = pmeta[fw]["versions"]
            peers["frameworks"][fw] = f
        summary["peers"] = peers
    if durable_path is not None:
        summary["durable"] = durable_section(durable_path, peers_durable_path)

    json.dump(summary, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
