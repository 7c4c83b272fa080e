"""What observability costs the hot paths, measured A/B in one process so that the machine's drift (2 shared
cores) hits every setting alike.

    python bench/bench_observe.py                 # one JSON line; OBS_ROUNDS=12 OBS_RUNS=30 by default

One orchestrator (`_workloads.py`'s four agents over the harness's fake model, L=0) with its durable engine
open on a fresh SQLite file. Settings, switched between blocks of runs in rotating order:

- ``floor``: the peer harness's plain-asyncio W1/W2/W3 (bench-peers/bench_floor.py), for scale;
- ``off``: no log handler (root at WARNING, as a library user gets), no metrics observer, tracing off;
- ``on``: JSON log lines at INFO through structlog (`configure_logging`, to a byte counter), the server's
  metrics observer (`ApiMetrics.observe`) on the engine, tracing with no exporter configured (off, as in
  production without ``OTEL_EXPORTER_OTLP_ENDPOINT``);
- ``otlp``: ``on`` with spans exported over OTLP/HTTP to ``$LOOMIQ_BENCH_OTLP`` (bench/otlp_sink.py; started
  here when unset) through loomiq's export process.

Each round runs, for every setting, OBS_RUNS runs of W1, W2 and W3 in process and then durable (every run a
durable task). Per setting and workload: the median over rounds of the block's median wall time per model call,
the block's CPU time per call of this process (`time.process_time`) likewise, and the spread (min-max of the
block medians); for ``otlp`` also the export process's CPU per call (from /proc). Changes against ``off`` are
paired by round: the median (and quartiles) over rounds of each round's on/off (otlp/off) ratio, so that the
machine's drift between rounds cancels.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _workloads import PEERS_DIR, TASK, Fake, build_orchestrator, workloads

ROUNDS = int(os.environ.get("OBS_ROUNDS", "12"))
RUNS = int(os.environ.get("OBS_RUNS", "30"))
SETTINGS = ("floor", "off", "on", "otlp")
N_CALLS = {"w1": 3, "w2": 3, "w3": 4}


class Counter:
    """A text stream that counts the lines and bytes written to it."""

    def __init__(self) -> None:
        self.lines = 0
        self.bytes = 0

    def write(self, text: str) -> int:
        self.lines += text.count("\n")
        self.bytes += len(text)
        return len(text)

    def flush(self) -> None:
        return None


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_sink() -> subprocess.Popen[str] | None:
    """bench/otlp_sink.py in a process of its own, unless ``$LOOMIQ_BENCH_OTLP`` names one already."""
    if os.environ.get("LOOMIQ_BENCH_OTLP"):
        return None
    sink = subprocess.Popen([sys.executable, str(Path(__file__).with_name("otlp_sink.py"))],
                            stdout=subprocess.PIPE, text=True)
    assert sink.stdout is not None
    os.environ["LOOMIQ_BENCH_OTLP"] = sink.stdout.readline().strip()
    return sink


async def main() -> None:
    os.environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = os.environ["LOOMIQ_BENCH_OTLP"]
    os.environ.pop("LOOMIQ_BENCH_OBSERVE", None)

    sys.path.insert(0, str(PEERS_DIR))
    import bench_floor

    from loomiq.api.metrics import ApiMetrics
    from loomiq.observe import configure_logging, tracing

    tracing_mod = sys.modules["loomiq.observe.tracing"]
    orch = build_orchestrator()
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"loomiq-bench-observe-{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    await orch.open_engine(f"sqlite:///{tmp}/engine.db")
    counter = Counter()
    configure_logging("json", "info", stream=counter)
    root = logging.getLogger()
    handler = next(h for h in root.handlers if getattr(h, "_loomiq", False))
    assert tracing("loomiq-bench"), "tracing did not start"
    pipeline = tracing_mod._tracer
    export_pid = pipeline.sink.process.pid
    observer = ApiMetrics(orch.registry).observe

    def setting(name: str) -> None:
        if name in ("on", "otlp"):
            if handler not in root.handlers:
                root.addHandler(handler)
            root.setLevel(logging.INFO)
            if observer not in orch.engine.run_observers:
                orch.engine.run_observers.append(observer)
        else:
            root.removeHandler(handler)
            root.setLevel(logging.WARNING)
            if observer in orch.engine.run_observers:
                orch.engine.run_observers.remove(observer)
        tracing_mod._tracer = pipeline if name == "otlp" else None

    sets: dict[str, dict[str, Any]] = {
        "in_process": dict(zip(("w1", "w2", "w3"), workloads(orch, "in-process run"), strict=True)),
        "durable": dict(zip(("w1", "w2", "w3"), workloads(orch, "durable run", durable=True), strict=True)),
    }
    floor = {"w1": bench_floor.w1, "w2": bench_floor.w2, "w3": bench_floor.w3}
    wall: dict[tuple[str, str, str], list[float]] = {}
    cpu: dict[tuple[str, str, str], list[float]] = {}
    export_cpu = 0.0
    otlp_calls = 0
    lines_on = runs_on = 0
    Fake.latency = 0.0
    for name in SETTINGS:  # warm every path once
        setting(name)
        for group in sets.values():
            for fn in group.values():
                for _ in range(5):
                    await fn(TASK)
    for rnd in range(ROUNDS):
        order = SETTINGS[rnd % len(SETTINGS):] + SETTINGS[:rnd % len(SETTINGS)]
        for name in order:
            setting(name)
            groups = {"in_process": floor} if name == "floor" else sets
            for set_name, group in groups.items():
                for wname, fn in group.items():
                    gc.collect()
                    lines0 = counter.lines
                    e0 = _cpu_s(export_pid) if name == "otlp" else 0.0
                    samples = []
                    c0 = time.process_time()
                    for _ in range(RUNS):
                        t0 = time.perf_counter()
                        await fn(TASK)
                        samples.append(time.perf_counter() - t0)
                    c1 = time.process_time()
                    calls = RUNS * N_CALLS[wname]
                    key = (name, set_name, wname)
                    wall.setdefault(key, []).append(statistics.median(samples) / N_CALLS[wname] * 1e6)
                    cpu.setdefault(key, []).append((c1 - c0) / calls * 1e6)
                    if name == "otlp":
                        pipeline.flush()
                        export_cpu += _cpu_s(export_pid) - e0
                        otlp_calls += calls
                    if name == "on":
                        lines_on += counter.lines - lines0
                        runs_on += RUNS
    setting("off")
    await orch.aclose()
    tracing_mod._tracer = pipeline
    tracing_mod.shutdown()

    out: dict[str, Any] = {}
    for set_name in ("in_process", "durable"):
        table: dict[str, Any] = {}
        for wname in ("w1", "w2", "w3"):
            row: dict[str, Any] = {}
            for name in SETTINGS:
                key = (name, set_name, wname)
                if key not in wall:
                    continue
                w, c = wall[key], cpu[key]
                row[name] = {"wall_us": round(statistics.median(w), 1),
                             "wall_range": [round(min(w), 1), round(max(w), 1)],
                             "cpu_us": round(statistics.median(c), 1),
                             "cpu_range": [round(min(c), 1), round(max(c), 1)]}
            for name in ("on", "otlp"):
                # paired by round (the blocks of one round ran within seconds of each other): the median and
                # quartiles of the per-round changes, which the machine's drift between rounds does not move
                for measure, series in (("wall", wall), ("cpu", cpu)):
                    changes = sorted((x / y - 1) * 100 for x, y in zip(series[(name, set_name, wname)],
                                                                       series[("off", set_name, wname)], strict=True))
                    q = statistics.quantiles(changes, n=4) if len(changes) > 1 else changes * 3
                    row[name][f"{measure}_change_pct"] = round(statistics.median(changes), 1)
                    row[name][f"{measure}_change_iqr"] = [round(q[0], 1), round(q[2], 1)]
            table[wname] = row
        out[set_name] = table
    print(json.dumps({
        "bench": "observe_ab", "rounds": ROUNDS, "runs_per_block": RUNS, "figures": "per model call, µs",
        **out,
        "export_process_cpu_us_per_call": round(export_cpu / otlp_calls * 1e6, 1) if otlp_calls else None,
        "log_lines_per_run_on": round(lines_on / runs_on, 2) if runs_on else None,
        "machine": f"{os.cpu_count()} cores", "load": [round(x, 2) for x in os.getloadavg()],
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }))


if __name__ == "__main__":
    sink = start_sink()
    try:
        asyncio.run(main())
    finally:
        if sink is not None:
            sink.terminate()
