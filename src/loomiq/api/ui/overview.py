"""The overview's figures, from the tenant's tasks of the last hour (one indexed query) and the engine."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from . import charts

WINDOW_S = 3600.0
BUCKETS = 30
"""One-minute buckets charted (the last half hour); rates and percentiles cover the whole hour."""


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q * (len(values) - 1) + 0.5))]


@dataclass
class Overview:
    per_minute: float
    finished: int
    success_rate: float | None
    error_rate: float | None
    p50_s: float | None
    p95_s: float | None
    cost_per_hour: float
    queue: dict[str, int]
    waiting: int
    running: int
    workers: int
    charts: dict[str, str]


async def overview(engine: Any, tenant: str, *, now: float | None = None) -> Overview:
    now = time.time() if now is None else now
    rows = await engine.activity(tenant, now - WINDOW_S)
    depth = await engine.queue_depth(tenant)
    workers = [w for w in await engine.workers() if w.status == "running" and now - w.heartbeat_at < 30]
    finished = [(f, s, st, cost) for _c, s, f, st, cost in rows if f is not None and f >= now - WINDOW_S]
    done = sum(1 for *_, st, _ in finished if st == "completed")
    failed = sum(1 for *_, st, _ in finished if st in ("failed", "timed_out"))
    durations = [f - s for f, s, _st, _ in finished if s is not None]
    labels, ok, bad, p95 = [], [0.0] * BUCKETS, [0.0] * BUCKETS, []
    start = now - BUCKETS * 60
    per_bucket: list[list[float]] = [[] for _ in range(BUCKETS)]
    for f, s, st, _cost in finished:
        i = int((f - start) // 60)
        if 0 <= i < BUCKETS:
            if st == "completed":
                ok[i] += 1
            elif st in ("failed", "timed_out"):
                bad[i] += 1
            if s is not None:
                per_bucket[i].append(f - s)
    for i in range(BUCKETS):
        labels.append(time.strftime("%H:%M", time.localtime(start + i * 60)))
        p95.append(_pct(per_bucket[i], 0.95))
    queue = {p: depth.get(("queued", p), 0) for p in ("critical", "high", "medium", "low")}
    return Overview(
        per_minute=len(finished) / (WINDOW_S / 60),
        finished=len(finished),
        success_rate=done / (done + failed) if done + failed else None,
        error_rate=failed / (done + failed) if done + failed else None,
        p50_s=_pct(durations, 0.5),
        p95_s=_pct(durations, 0.95),
        cost_per_hour=sum(cost for *_, cost in finished),
        queue=queue,
        waiting=sum(n for (st, _), n in depth.items() if st == "waiting"),
        running=sum(n for (st, _), n in depth.items() if st == "running"),
        workers=len(workers),
        charts={
            "throughput": charts.bars("Tasks finished per minute", labels,
                                      [("completed", "ok", ok), ("failed", "bad", bad)]),
            "latency": charts.lines("p95 run duration per minute (s)", labels, [("p95", "p95", p95)], "s"),
            "queue": charts.bars("Queued tasks by priority", list(queue), [("queued", "ok", list(queue.values()))]),
        },
    )
