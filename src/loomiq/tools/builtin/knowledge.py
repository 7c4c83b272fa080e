"""The knowledge base: documents per tenant, chunked with overlap, searched with BM25, with ids to cite.

    kb = await KnowledgeBase.open()                 # $LOOMIQ_DATABASE_URL, else sqlite:///loomiq.db
    doc = await kb.add_file("acme", "guide.pdf")    # text, Markdown, HTML or PDF
    hits = await kb.search("acme", "rotate the keys", limit=5)
    hits[0].chunk_id, hits[0].source, hits[0].text, hits[0].score
    await kb.remove("acme", doc.id)
    await kb.close()

It lives in the same database as the tasks: SQLite FTS5 (BM25) on the embedded default, PostgreSQL
full-text search (``ts_rank_cd``) on PostgreSQL, in tables of its own (``kb_*``, own migrations,
a tenant column everywhere). Every call is scoped to one tenant; documents belong to a collection
(``default`` unless named). The `knowledge` tool gives agents ``search`` (reads ``kb:<collection>``)
and ``add`` (writes it).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from ..base import Footprint, ToolContext, ToolError, ToolResult
from ._chunking import chunk_text, guess_kind, markdown_title
from ._extract import decode_text, html_to_text, pdf_to_text
from ._kb_store import ChunkRow, Document, KBStore, SearchHit, query_terms
from ._settings import ConfigurableTool, ToolSettings

DEFAULT_COLLECTION = "default"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


class KnowledgeError(ValueError):
    """A knowledge-base request that cannot be done (bad input, unreadable document); says why."""


def _check_name(kind: str, value: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise KnowledgeError(f"{kind} {value!r}: use letters, digits and _ . : - (at most 128 characters)")
    return value


def database_url(url: str | None = None) -> str:
    """`url`, else ``$LOOMIQ_DATABASE_URL``, else ``sqlite:///loomiq.db`` (the engine's default)."""
    return url or os.environ.get("LOOMIQ_DATABASE_URL") or "sqlite:///loomiq.db"


def extract(source: str, data: bytes, kind: str | None = None) -> tuple[str, str, str]:
    """(kind, title, text) of a document's bytes; `KnowledgeError` when it cannot be read."""
    kind = kind or guess_kind(source, data)
    fallback = Path(source).name or source
    try:
        if kind == "pdf":
            text, title = pdf_to_text(data), ""
        elif kind == "html":
            title, text = html_to_text(decode_text(data))
        elif kind in ("markdown", "text"):
            text = decode_text(data)
            title = markdown_title(text) if kind == "markdown" else ""
        else:
            raise KnowledgeError(f"unknown document kind {kind!r} (text, markdown, html or pdf)")
    except KnowledgeError:
        raise
    except Exception as exc:  # pypdf raises many types for a broken file
        raise KnowledgeError(f"{source}: cannot read it as {kind}: {exc}") from None
    return kind, title or fallback, text


class KnowledgeBase:
    """A knowledge base on one database (see the module docstring). Open with `KnowledgeBase.open`.

    Args:
        store: the storage (`open` picks it from the URL).
        chunk_chars: chunk size, in characters.
        overlap_chars: how much consecutive chunks overlap.
        max_document_bytes: the largest document accepted.
    """

    def __init__(self, store: KBStore, *, chunk_chars: int = 1200, overlap_chars: int = 200,
                 max_document_bytes: int = 50 * 1024 * 1024) -> None:
        self.store = store
        self.chunk_chars = chunk_chars
        self.overlap_chars = overlap_chars
        self.max_document_bytes = max_document_bytes

    @classmethod
    async def open(cls, url: str | None = None, **options: Any) -> KnowledgeBase:
        """Open the knowledge base at `url` (`database_url`), creating its tables if missing."""
        url = database_url(url)
        scheme = url.split(":", 1)[0].lower()
        store: KBStore
        if scheme == "sqlite":
            from ._kb_sqlite import SQLiteKBStore

            store = SQLiteKBStore(url)
        elif scheme in ("postgresql", "postgres"):
            from ._kb_postgres import PostgresKBStore

            store = PostgresKBStore(url)
        else:
            raise KnowledgeError(f"unsupported database URL {url!r} (use sqlite:///path or postgresql://...)")
        await store.open()
        return cls(store, **options)

    async def close(self) -> None:
        """Release the database."""
        await self.store.close()

    async def __aenter__(self) -> KnowledgeBase:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def add(self, tenant: str, source: str, data: bytes | str, *, kind: str | None = None,
                  title: str | None = None, collection: str = DEFAULT_COLLECTION) -> Document:
        """Add one document (its bytes, or text); the same text added again returns the existing one.

        Args:
            tenant: whose knowledge base.
            source: where it comes from (shown in results and citations).
            data: the document: bytes (decoded by `kind`) or text.
            kind: ``text``, ``markdown``, ``html`` or ``pdf``; default: guessed from `source` and content.
            title: its title; default: from the document, else the source's file name.
            collection: the collection it belongs to.
        """
        _check_name("tenant", tenant)
        _check_name("collection", collection)
        raw = data.encode() if isinstance(data, str) else data
        if len(raw) > self.max_document_bytes:
            raise KnowledgeError(f"{source}: {len(raw)} bytes; the limit is {self.max_document_bytes}")
        found_kind, found_title, text = await asyncio.to_thread(extract, source, raw, kind)
        text = text.replace("\0", "")  # PostgreSQL text cannot hold NUL
        if not text.strip():
            raise KnowledgeError(f"{source}: no text found in it")
        sha = hashlib.sha256(text.encode()).hexdigest()
        existing = await self.store.find_by_hash(tenant, collection, sha)
        if existing is not None:
            return existing
        chunks = [ChunkRow(c.seq, c.text, c.start, c.end)
                  for c in chunk_text(text, self.chunk_chars, self.overlap_chars)]
        document = Document(
            id=f"doc_{uuid.uuid4().hex[:16]}", tenant_id=tenant, collection=collection, source=source,
            title=(title or found_title)[:500], kind=found_kind, sha256=sha, chars=len(text), chunks=len(chunks),
            created_at=time.time(),
        )
        await self.store.insert(document, chunks)
        return document

    async def add_file(self, tenant: str, path: str | Path, *, collection: str = DEFAULT_COLLECTION,
                       kind: str | None = None) -> Document:
        """Add the file at `path` (its path is the source)."""
        path = Path(path)
        try:
            size = path.stat().st_size
            if size > self.max_document_bytes:
                raise KnowledgeError(f"{path}: {size} bytes; the limit is {self.max_document_bytes}")
            data = await asyncio.to_thread(path.read_bytes)
        except OSError as exc:
            raise KnowledgeError(f"{path}: {exc.strerror or exc}") from None
        return await self.add(tenant, str(path), data, kind=kind, collection=collection)

    async def search(self, tenant: str, query: str, *, limit: int = 5,
                     collection: str | None = None) -> list[SearchHit]:
        """The tenant's chunks that best match `query` (any of its words), best first."""
        _check_name("tenant", tenant)
        if collection is not None:
            _check_name("collection", collection)
        if not 1 <= limit <= 100:
            raise KnowledgeError("limit must be from 1 to 100")
        return await self.store.search(tenant, collection, query_terms(query), limit)

    async def documents(self, tenant: str, *, collection: str | None = None, limit: int = 100,
                        offset: int = 0) -> list[Document]:
        """The tenant's documents, newest first."""
        _check_name("tenant", tenant)
        if collection is not None:
            _check_name("collection", collection)
        if not 1 <= limit <= 1000 or offset < 0:
            raise KnowledgeError("limit must be from 1 to 1000 and offset not negative")
        return await self.store.list(tenant, collection, limit, offset)

    async def get(self, tenant: str, document_id: str) -> Document | None:
        """One of the tenant's documents, or None."""
        _check_name("tenant", tenant)
        return await self.store.get(tenant, document_id)

    async def remove(self, tenant: str, document_id: str) -> bool:
        """Remove one of the tenant's documents and its chunks; False when there is no such document."""
        _check_name("tenant", tenant)
        return await self.store.delete(tenant, document_id)


class KnowledgeSettings(ToolSettings):
    """Settings of the `knowledge` tool (``tools: {knowledge: {...}}``)."""

    database_url: str | None = Field(None, description="default: $LOOMIQ_DATABASE_URL, else sqlite:///loomiq.db")
    collection: str = Field(DEFAULT_COLLECTION, description="the collection searched when a call names none")
    max_results: int = Field(5, ge=1, le=100)
    timeout_s: float = Field(30.0, gt=0, le=600)
    allow_add: bool = Field(True, description="let agents add text documents")


class KnowledgeTool(ConfigurableTool):
    """``knowledge``: search the tenant's knowledge base (and add text to it)."""

    name = "knowledge"
    description = (
        "Search the knowledge base: op=search {query, collection?, limit?} returns the best matching passages, "
        "each with its source and a chunk id to cite. op=add {text, source, title?, collection?} stores a text."
    )
    parameters: Mapping[str, Any] = {
        "type": "object",
        "properties": {
            "op": {"type": "string", "enum": ["search", "add"], "description": "search (default) or add"},
            "query": {"type": "string", "description": "op=search: what to look for"},
            "collection": {"type": "string", "description": "which collection (default: the configured one)"},
            "limit": {"type": "integer", "minimum": 1, "maximum": 100, "description": "op=search: results"},
            "text": {"type": "string", "description": "op=add: the text (Markdown or plain)"},
            "source": {"type": "string", "description": "op=add: where the text comes from"},
            "title": {"type": "string", "description": "op=add: its title"},
        },
        "additionalProperties": False,
    }
    Settings: ClassVar[type[ToolSettings]] = KnowledgeSettings
    settings: KnowledgeSettings

    def __init__(self, settings: Any = None) -> None:
        super().__init__(settings)
        self.timeout_s = self.settings.timeout_s
        self._kb: KnowledgeBase | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = asyncio.Lock()

    def footprint(self, arguments: Mapping[str, Any]) -> Footprint:
        """Search reads ``kb:<collection>``, add writes it."""
        resource = f"kb:{arguments.get('collection') or self.settings.collection}"
        if arguments.get("op") == "add":
            return Footprint(writes=frozenset({resource}))
        return Footprint(reads=frozenset({resource}))

    async def knowledge_base(self) -> KnowledgeBase:
        """The knowledge base of this tool's database, opened on first use (per event loop)."""
        loop = asyncio.get_running_loop()
        async with self._lock:
            if self._kb is None or self._loop is not loop:
                self._kb = await KnowledgeBase.open(self.settings.database_url)
                self._loop = loop
            return self._kb

    async def aclose(self) -> None:
        """Close the knowledge base if it was opened."""
        if self._kb is not None:
            await self._kb.close()
            self._kb = None

    async def run(self, arguments: Mapping[str, Any], ctx: ToolContext) -> ToolResult:
        """Search, or add a text."""
        op = arguments.get("op", "search")
        collection = arguments.get("collection") or self.settings.collection
        try:
            kb = await self.knowledge_base()
            if op == "add":
                return await self._add(kb, arguments, ctx.tenant_id, collection)
            if op != "search":
                raise ToolError("argument 'op' must be search or add")
            query = arguments.get("query")
            if not isinstance(query, str) or not query.strip():
                raise ToolError("argument 'query' (a non-empty string) is required for op=search")
            limit = arguments.get("limit", self.settings.max_results)
            if not isinstance(limit, int) or isinstance(limit, bool):
                raise ToolError("argument 'limit' must be an integer from 1 to 100")
            hits = await kb.search(ctx.tenant_id, query, limit=limit, collection=collection)
        except KnowledgeError as exc:
            raise ToolError(str(exc)) from None
        lines = [f"[{h.chunk_id}] {h.title} ({h.source})\n{h.text}" for h in hits]
        content = "\n\n".join(lines) if lines else f"nothing in the knowledge base matches {query!r}"
        return ToolResult(content, data={"query": query, "collection": collection, "hits": [h.to_dict() for h in hits]})

    async def _add(self, kb: KnowledgeBase, arguments: Mapping[str, Any], tenant: str, collection: str) -> ToolResult:
        if not self.settings.allow_add:
            raise ToolError("adding documents is disabled for this deployment")
        text, source = arguments.get("text"), arguments.get("source")
        if not isinstance(text, str) or not text.strip():
            raise ToolError("argument 'text' (a non-empty string) is required for op=add")
        if not isinstance(source, str) or not source.strip():
            raise ToolError("argument 'source' (a non-empty string) is required for op=add")
        title = arguments.get("title")
        doc = await kb.add(tenant, source.strip(), text, kind="markdown",
                           title=title if isinstance(title, str) else None, collection=collection)
        return ToolResult(f"added {doc.id} ({doc.chunks} chunks) to {collection}", data=doc.to_dict())


__all__ = [
    "DEFAULT_COLLECTION",
    "Document",
    "KnowledgeBase",
    "KnowledgeError",
    "KnowledgeSettings",
    "KnowledgeTool",
    "SearchHit",
    "database_url",
    "extract",
]
