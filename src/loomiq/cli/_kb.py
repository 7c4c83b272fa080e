"""`loomiq kb`: the knowledge base from the terminal (`add`, `search`, `list`, `remove`), on the
database of ``$LOOMIQ_DATABASE_URL`` (or ``--database-url``), scoped to ``--tenant``."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from ..tools.builtin.knowledge import DEFAULT_COLLECTION, KnowledgeBase, KnowledgeError
from ._common import fail
from ._terminal import safe_line

T = TypeVar("T")

kb_app = typer.Typer(
    name="kb", no_args_is_help=True,
    help="The knowledge base: add documents (text, Markdown, HTML, PDF), search them, list and remove them.",
)

TenantOption = Annotated[str, typer.Option("--tenant", help="Whose knowledge base.")]
CollectionOption = Annotated[str | None, typer.Option("--collection", help="Only this collection.")]
DatabaseOption = Annotated[str | None, typer.Option(
    "--database-url", help="Default: $LOOMIQ_DATABASE_URL, else sqlite:///loomiq.db.", show_default=False)]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _run(database_url: str | None, action: Callable[[KnowledgeBase], Awaitable[T]]) -> T:
    async def main() -> T:
        kb = await KnowledgeBase.open(database_url)
        try:
            return await action(kb)
        finally:
            await kb.close()

    try:
        return asyncio.run(main())
    except KnowledgeError as exc:
        fail(str(exc))
    except (OSError, ValueError) as exc:
        fail(f"knowledge base: {exc}", code=1)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


@kb_app.command("add")
def add(
    paths: Annotated[list[Path], typer.Argument(help="Files to add (.txt, .md, .html, .pdf...).", show_default=False)],
    tenant: TenantOption = "default",
    collection: Annotated[str, typer.Option("--collection", help="The collection to add to.")] = DEFAULT_COLLECTION,
    database_url: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Add documents; a document whose text is already there is not added twice."""
    for path in paths:
        if not path.is_file():
            fail(f"{path}: no such file")

    async def action(kb: KnowledgeBase) -> list[dict[str, Any]]:
        return [(await kb.add_file(tenant, p, collection=collection)).to_dict() for p in paths]

    docs = _run(database_url, action)
    if as_json:
        _print_json(docs)
        return
    for d in docs:
        typer.echo(f"{d['id']}  {d['chunks']} chunks  {d['kind']}  {d['source']}")


@kb_app.command("search")
def search(
    query: Annotated[str, typer.Argument(help="What to look for.", show_default=False)],
    tenant: TenantOption = "default",
    collection: CollectionOption = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100, help="How many results.")] = 5,
    database_url: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Search the knowledge base (BM25); each result has its chunk id to cite."""
    hits = _run(database_url, lambda kb: kb.search(tenant, query, limit=limit, collection=collection))
    if as_json:
        _print_json([h.to_dict() for h in hits])
        return
    if not hits:
        typer.echo(f"no match for {query!r} in tenant {tenant}'s knowledge base")
    for h in hits:
        snippet = " ".join(safe_line(h.text).split())
        typer.echo(safe_line(f"[{h.chunk_id}] {h.score:.4g}  {h.title} ({h.source})") + f"\n    {snippet[:300]}")


@kb_app.command("list")
def list_documents(
    tenant: TenantOption = "default",
    collection: CollectionOption = None,
    database_url: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """List the documents, newest first."""
    docs = _run(database_url, lambda kb: kb.documents(tenant, collection=collection, limit=1000))
    if as_json:
        _print_json([d.to_dict() for d in docs])
        return
    if not docs:
        typer.echo(f"tenant {tenant} has no documents")
    for d in docs:
        typer.echo(safe_line(f"{d.id}  {d.collection}  {d.kind}  {d.chunks} chunks  {d.title}  ({d.source})"))


@kb_app.command("remove")
def remove(
    document_id: Annotated[str, typer.Argument(metavar="ID", help="The document's id.", show_default=False)],
    tenant: TenantOption = "default",
    database_url: DatabaseOption = None,
) -> None:
    """Remove a document and its chunks."""
    if not _run(database_url, lambda kb: kb.remove(tenant, document_id)):
        fail(f"tenant {tenant} has no document {document_id}", code=1)
    typer.echo(f"removed {document_id}")


__all__ = ["kb_app"]
