"""``GET /api/alerts``: the alert rules of loomiq.yaml with their state, and recent transitions."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from ._openapi import AUTHENTICATED, problems
from .alerts import recent
from .deps import PrincipalDep, StateDep
from .schemas import Alerts

router = APIRouter(tags=["health"])


@router.get("/api/alerts", response_model=Alerts, responses=problems(*AUTHENTICATED, 422))
async def alerts(
    principal: PrincipalDep,
    state: StateDep,
    limit: Annotated[int, Query(ge=1, le=500, description="Most recent transitions to list.")] = 100,
) -> dict[str, Any]:
    """Every rule (any role; rules are deployment-wide, over this server's metrics), firing or not, and the
    most recent firing and resolved transitions, newest first."""
    evaluator = state.alerts
    if evaluator is None:
        return {"configured": False, "alerts": [], "events": []}
    return {"configured": True, "alerts": evaluator.current(), "events": recent(evaluator.events, limit)}
