"""``/api/tools`` (the tools agents may call, their schemas, and which agents may use each) and the
knowledge base routes ``/api/kb/...`` (documents and search, per tenant).

The knowledge base is the one the ``knowledge`` tool uses: the service's database unless ``tools:``
of loomiq.yaml names another (`use_service_database`), so a document added here is what the tenant's
agents find.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..agents import Agent
from ..tools import Tool, ToolError, ToolRegistry, ToolSourceError, allows
from ._openapi import AUTHENTICATED, header, problems
from .deps import OperatorDep, OrchestratorDep, PrincipalDep
from .problems import Problem

router = APIRouter(tags=["tools"])

Name = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")]


def use_service_database(registry: ToolRegistry, database_url: str | None) -> None:
    """Make the ``knowledge`` tool use the service's database unless ``tools:`` names one."""
    if database_url:
        registry.set_default("knowledge", "database_url", database_url)


# --- bodies --------------------------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_serialization_defaults_required=True)


class ToolBody(_Body):
    """A tool agents may call."""

    name: str = Field(description="The name models see (an MCP server's tools: <server>__<tool>).")
    description: str
    parameters: dict[str, Any] = Field(description="JSON Schema of its arguments.")
    read_only: bool = Field(description="Its calls change nothing.")
    timeout_s: float | None = Field(description="A call is cancelled after this long (null: no limit).")
    available: bool = Field(description="False when it cannot run in this deployment (see unavailable_reason).")
    unavailable_reason: str | None
    agents: list[str] = Field(description="Agents whose allow-list admits it.")


class ToolList(_Body):
    """Every tool of the deployment, as the caller's tenant sees them."""

    tenant: str
    tools: list[ToolBody]
    unavailable_sources: dict[str, str] = Field(description="MCP servers that could not start, with why.")


class DocumentBody(_Body):
    """A document of the tenant's knowledge base."""

    id: str
    tenant_id: str
    collection: str
    source: str
    title: str
    kind: str = Field(description="text, markdown, html or pdf.")
    sha256: str = Field(description="Of its extracted text; adding the same text again returns this document.")
    chars: int
    chunks: int
    created_at: float = Field(description="Unix time, seconds.")


class DocumentList(_Body):
    """The tenant's documents, newest first."""

    documents: list[DocumentBody]


class SearchHitBody(_Body):
    """One ranked chunk, with what to cite."""

    chunk_id: str = Field(description="<document id>#<seq>: the citation.")
    document_id: str
    seq: int
    source: str
    title: str
    text: str
    score: float = Field(description="Relevance, higher is better.")
    start: int
    end: int


class SearchResults(_Body):
    """The chunks that best match the query, best first."""

    query: str
    hits: list[SearchHitBody]


class DocumentUpload(BaseModel):
    """A document to add: its text, or its bytes in base64 (for PDF)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"source": "runbook.md", "text": "# Runbook\n\nRestart the worker with loomiq worker."},
    ]})
    source: str = Field(min_length=1, max_length=1000, description="Where it comes from (shown in citations).")
    text: str | None = Field(None, max_length=10_000_000, description="The document's text.")
    content_base64: str | None = Field(None, max_length=14_000_000, description="Or its bytes, base64.")
    kind: Literal["text", "markdown", "html", "pdf"] | None = Field(None, description="Default: guessed.")
    title: str | None = Field(None, max_length=500)
    collection: Name = "default"

    @model_validator(mode="after")
    def _one_content(self) -> DocumentUpload:
        if (self.text is None) == (self.content_base64 is None):
            raise ValueError("give exactly one of 'text' and 'content_base64'")
        return self


# --- routes --------------------------------------------------------------------------------------


def _describe(tool: Tool, agents: list[Agent]) -> dict[str, Any]:
    reason = tool.unavailable_reason()
    return {
        "name": tool.name, "description": tool.description, "parameters": dict(tool.parameters),
        "read_only": tool.read_only, "timeout_s": tool.timeout_s, "available": reason is None,
        "unavailable_reason": reason, "agents": [a.id for a in agents if allows(a.config.tools, tool.name)],
    }


@router.get("/api/tools", response_model=ToolList, responses=problems(*AUTHENTICATED))
async def list_tools(principal: PrincipalDep, orch: OrchestratorDep) -> dict[str, Any]:
    """Every tool agents may call (MCP servers' tools too, starting them if needed), its argument
    schema, and which of the agents this tenant sees may use it (any role)."""
    registry = orch.tools
    try:
        failed = await registry.prepare()
    except ToolSourceError as exc:
        failed = {exc.source: str(exc)}
    agents = list(orch.registry.visible_to(principal.tenant))  # shared agents, and the tenant's own
    tools = []
    for name in registry.names():
        try:
            tools.append(_describe(registry.get(name), agents))
        except (ToolError, ValueError) as exc:  # a built-in whose settings cannot build it
            failed[name] = str(exc)
    return {"tenant": principal.tenant, "tools": tools, "unavailable_sources": failed}


async def _knowledge(orch: Any) -> Any:
    """The knowledge base of the deployment's ``knowledge`` tool; 503 when it cannot be used."""
    from ..tools.builtin.knowledge import KnowledgeTool

    try:
        tool = orch.tools.get("knowledge")
    except (ToolError, ValueError) as exc:
        raise Problem(503, f"The knowledge base is not available here: {exc}.") from None
    if not isinstance(tool, KnowledgeTool):
        raise Problem(503, "The knowledge base is not available here: 'knowledge' is not the built-in tool.")
    try:
        return await tool.knowledge_base()
    except (OSError, ValueError) as exc:
        raise Problem(503, f"The knowledge base cannot be opened: {exc}.") from None


def _kb_problem(exc: Exception) -> Problem:
    return Problem(422, f"{exc}.")


_S503 = "The knowledge base cannot be used here (no database, or the knowledge tool is disabled)."


@router.post("/api/kb/documents", status_code=status.HTTP_201_CREATED, response_model=DocumentBody, responses={
    201: {"description": "Added (or found: the same text was already there).",
          "headers": {"Location": header("The document: /api/kb/documents/{id}.")}},
    **problems(*AUTHENTICATED, 413, 422, 503, s503=_S503),
})
async def add_document(
    body: DocumentUpload, principal: OperatorDep, orch: OrchestratorDep, response: Response
) -> dict[str, Any]:
    """Add a document to the tenant's knowledge base (operator): chunked with overlap and indexed for
    search. Adding the same text again returns the existing document."""
    from ..tools.builtin.knowledge import KnowledgeError

    if body.content_base64 is not None:
        try:
            data: bytes | str = base64.b64decode(body.content_base64, validate=True)
        except (binascii.Error, ValueError):
            raise Problem(422, "content_base64 is not valid base64.", param="content_base64") from None
    else:
        data = body.text or ""
    kb = await _knowledge(orch)
    try:
        document = await kb.add(principal.tenant, body.source, data, kind=body.kind, title=body.title,
                                collection=body.collection)
    except KnowledgeError as exc:
        raise _kb_problem(exc) from None
    response.headers["Location"] = f"/api/kb/documents/{document.id}"
    added: dict[str, Any] = document.to_dict()
    return added


@router.get("/api/kb/documents", response_model=DocumentList, responses=problems(*AUTHENTICATED, 422, 503,
                                                                                    s503=_S503))
async def list_documents(
    principal: PrincipalDep,
    orch: OrchestratorDep,
    collection: Annotated[Name | None, Query(description="Only this collection.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> dict[str, Any]:
    """The tenant's documents, newest first (any role)."""
    from ..tools.builtin.knowledge import KnowledgeError

    kb = await _knowledge(orch)
    try:
        documents = await kb.documents(principal.tenant, collection=collection, limit=limit, offset=offset)
    except KnowledgeError as exc:
        raise _kb_problem(exc) from None
    return {"documents": [d.to_dict() for d in documents]}


@router.delete("/api/kb/documents/{document_id}", status_code=status.HTTP_204_NO_CONTENT, responses={
    204: {"description": "Removed, with its chunks."},
    **problems(*AUTHENTICATED, 404, 422, 503, s404="No such document in this tenant.", s503=_S503),
})
async def remove_document(document_id: str, principal: OperatorDep, orch: OrchestratorDep) -> Response:
    """Remove a document and its chunks from the tenant's knowledge base (operator)."""
    from ..tools.builtin.knowledge import KnowledgeError

    kb = await _knowledge(orch)
    try:
        removed = await kb.remove(principal.tenant, document_id)
    except KnowledgeError as exc:
        raise _kb_problem(exc) from None
    if not removed:
        raise Problem(404, f"No document {document_id!r} in tenant {principal.tenant!r}. "
                           "List them with GET /api/kb/documents.")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/api/kb/search", response_model=SearchResults, responses=problems(*AUTHENTICATED, 422, 503,
                                                                                 s503=_S503))
async def search_documents(
    principal: PrincipalDep,
    orch: OrchestratorDep,
    q: Annotated[str, Query(min_length=1, max_length=2000, description="What to look for.")],
    limit: Annotated[int, Query(ge=1, le=100)] = 5,
    collection: Annotated[Name | None, Query(description="Only this collection.")] = None,
) -> dict[str, Any]:
    """The tenant's chunks that best match `q` (BM25; any of its words), best first, each with its
    source and chunk id for citations (any role)."""
    from ..tools.builtin.knowledge import KnowledgeError

    kb = await _knowledge(orch)
    try:
        hits = await kb.search(principal.tenant, q, limit=limit, collection=collection)
    except KnowledgeError as exc:
        raise _kb_problem(exc) from None
    return {"query": q, "hits": [h.to_dict() for h in hits]}
