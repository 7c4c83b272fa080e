"""``GET /api/stats``: the caller's tenant's tasks in numbers."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ._openapi import AUTHENTICATED, problems
from .deps import PrincipalDep
from .routes_tasks import EngineDep
from .schemas import TaskStats

router = APIRouter(tags=["tasks"])


@router.get("/api/stats", response_model=TaskStats, responses=problems(*AUTHENTICATED))
async def stats(principal: PrincipalDep, orch: EngineDep) -> dict[str, Any]:
    """Task counts by status and by strategy, mean run duration of finished tasks, tokens and cost,
    for the caller's tenant (any role)."""
    rows = await orch.engine.task_stats(principal.tenant)
    by_status: dict[str, int] = {}
    by_strategy: dict[str, dict[str, Any]] = {}
    total_cost = 0.0
    tokens_in = tokens_out = 0
    durations: list[tuple[float, int]] = []
    for row in rows:
        by_status[row["status"]] = by_status.get(row["status"], 0) + row["count"]
        entry = by_strategy.setdefault(row["strategy"], {"count": 0, "by_status": {}, "cost_usd": 0.0})
        entry["count"] += row["count"]
        entry["by_status"][row["status"]] = row["count"]
        entry["cost_usd"] += row["cost_usd"]
        total_cost += row["cost_usd"]
        tokens_in += row["input_tokens"]
        tokens_out += row["output_tokens"]
        if row["mean_duration_s"] is not None:
            durations.append((row["mean_duration_s"], row["count"]))
    weight = sum(n for _, n in durations)
    mean = sum(d * n for d, n in durations) / weight if weight else None
    return {
        "tenant": principal.tenant,
        "total": sum(by_status.values()),
        "by_status": by_status,
        "by_strategy": by_strategy,
        "mean_duration_s": mean,
        "usage": {"input_tokens": tokens_in, "output_tokens": tokens_out, "total_tokens": tokens_in + tokens_out},
        "cost_usd": total_cost,
    }
