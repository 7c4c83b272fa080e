"""The knowledge base's storage seam: the records, the abstract store, and query-term parsing.

Two stores implement it: SQLite (FTS5, BM25; `_kb_sqlite`) and PostgreSQL (full-text search with
``ts_rank_cd``; `_kb_postgres`). Both keep their own tables (``kb_*``) beside the engine's, in the
same database, with their own migrations; every row carries its tenant.
"""

from __future__ import annotations

import builtins
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

MAX_TERMS = 32
"""Query words kept (the rest is ignored): bounds the work of one search."""


@dataclass(frozen=True, slots=True)
class Document:
    """A document in the knowledge base.

    Attributes:
        id: its id (``doc_...``), for listing, removal and citations.
        tenant_id: whose it is.
        collection: the collection it belongs to (``default`` unless chosen).
        source: where it came from (a file path or URL as given, or a name).
        title: its title (HTML ``<title>``, first Markdown heading, else the file name).
        kind: ``text``, ``markdown``, ``html`` or ``pdf``.
        sha256: of its extracted text (adding the same text again returns this document).
        chars: length of its text.
        chunks: how many chunks it was cut into.
        created_at: when it was added (Unix seconds).
    """

    id: str
    tenant_id: str
    collection: str
    source: str
    title: str
    kind: str
    sha256: str
    chars: int
    chunks: int
    created_at: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of every field."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One ranked chunk: what to show, and what to cite.

    Attributes:
        chunk_id: ``<document id>#<seq>``, the citation.
        document_id: the document's id.
        seq: the chunk's position in its document.
        source: the document's source.
        title: the document's title.
        text: the chunk's text.
        score: relevance (higher is better; BM25 on SQLite, ``ts_rank_cd`` on PostgreSQL).
        start: where the chunk starts in the document's text (characters).
        end: where it ends.
    """

    chunk_id: str
    document_id: str
    seq: int
    source: str
    title: str
    text: str
    score: float
    start: int
    end: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of every field."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ChunkRow:
    """A chunk to store."""

    seq: int
    text: str
    start: int
    end: int


def query_terms(query: str) -> list[str]:
    """The words of a free-text query, lower-cased, de-duplicated, at most `MAX_TERMS`.

    Only letters, digits and ``_`` survive: the stores build their query syntax from these words
    alone, so nothing a user types is ever parsed as FTS5 or tsquery syntax.
    """
    seen: dict[str, None] = {}
    for word in re.findall(r"\w+", query.lower()):
        seen.setdefault(word, None)
        if len(seen) >= MAX_TERMS:
            break
    return list(seen)


class KBStore(ABC):
    """Where a knowledge base keeps documents and chunks; one per database URL."""

    @abstractmethod
    async def open(self) -> None:
        """Connect and create or migrate the ``kb_*`` tables."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections."""

    @abstractmethod
    async def find_by_hash(self, tenant: str, collection: str, sha256: str) -> Document | None:
        """The tenant's document of this collection with this text hash, if any."""

    @abstractmethod
    async def insert(self, document: Document, chunks: Sequence[ChunkRow]) -> None:
        """Store a document and its chunks in one transaction."""

    @abstractmethod
    async def get(self, tenant: str, document_id: str) -> Document | None:
        """One of the tenant's documents."""

    @abstractmethod
    async def list(self, tenant: str, collection: str | None, limit: int, offset: int) -> list[Document]:
        """The tenant's documents, newest first."""

    @abstractmethod
    async def delete(self, tenant: str, document_id: str) -> bool:
        """Remove a document and its chunks; False when the tenant has no such document."""

    @abstractmethod
    async def search(self, tenant: str, collection: str | None, terms: Sequence[str], limit: int
                     ) -> builtins.list[SearchHit]:  # `list` here is the method above
        """The tenant's chunks best matching any of `terms`, best first."""


__all__ = ["MAX_TERMS", "ChunkRow", "Document", "KBStore", "SearchHit", "query_terms"]
