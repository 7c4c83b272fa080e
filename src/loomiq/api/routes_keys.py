"""``/api/keys``: an admin creates, lists and revokes the API keys of their own tenant."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response, status
from pydantic import BaseModel, ConfigDict, Field

from ._openapi import AUTHENTICATED, header, links, problems
from .auth import Role
from .deps import AdminDep, StateDep
from .problems import Problem
from .schemas import ApiKeyList, NewApiKeyBody

router = APIRouter(prefix="/api/keys", tags=["keys"])


class KeyRequest(BaseModel):
    """A key to create in the caller's tenant."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"role": "viewer", "name": "dashboard"}]})
    role: Role = "operator"
    name: str = Field("", max_length=200, description="A label to recognise the key by.")


@router.post("", status_code=status.HTTP_201_CREATED, response_model=NewApiKeyBody, responses={
    201: {"description": "Created; `key` is shown only this once.",
          "headers": {"Location": header("The key: /api/keys/{key_id}.")},
          "links": links({"RevokeKey": "revoke_key"}, "key_id", "$response.body#/key_id")},
    **problems(*AUTHENTICATED, 413, 422),
})
async def create_key(body: KeyRequest, principal: AdminDep, state: StateDep, response: Response) -> dict[str, Any]:
    """Create a key in the caller's tenant (admin). The ``key`` in the answer is shown only this once."""
    created = await state.keys.create(principal.tenant, body.role, body.name)
    response.headers["Location"] = f"/api/keys/{created.key.key_id}"
    return {**created.key.to_dict(), "key": created.secret}


@router.get("", response_model=ApiKeyList, responses=problems(*AUTHENTICATED, 422))
async def list_keys(principal: AdminDep, state: StateDep, include_revoked: bool = False) -> dict[str, Any]:
    """The caller's tenant's keys, without secrets (admin)."""
    keys = await state.keys.list_keys(principal.tenant, include_revoked)
    return {"keys": [k.to_dict() for k in keys]}


@router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT, responses=problems(
    *AUTHENTICATED, 404, s404="No active key with this id in the caller's tenant."))
async def revoke_key(key_id: str, principal: AdminDep, state: StateDep) -> Response:
    """Revoke a key of the caller's tenant (admin); it stops working at once, on every server."""
    revoked = await state.keys.revoke(key_id, principal.tenant)
    state.key_verifier.forget(key_id)
    if not revoked:
        raise Problem(404, f"No active key {key_id!r} in tenant {principal.tenant!r}. List keys with GET /api/keys.")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
