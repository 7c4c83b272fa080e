"""The knowledge base on PostgreSQL: full-text search (``tsvector`` with a GIN index), ranked with
``ts_rank_cd``, through ``asyncpg``, in the engine's database (and its ``?schema=`` when the URL has one).
"""

from __future__ import annotations

import builtins
import re
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ._kb_store import ChunkRow, Document, KBStore, SearchHit

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,40}$")

_MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE IF NOT EXISTS kb_documents (
            id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, collection TEXT NOT NULL, source TEXT NOT NULL,
            title TEXT NOT NULL, kind TEXT NOT NULL, sha256 TEXT NOT NULL, chars INTEGER NOT NULL,
            chunks INTEGER NOT NULL, created_at DOUBLE PRECISION NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS kb_documents_list ON kb_documents (tenant_id, created_at)",
        "CREATE INDEX IF NOT EXISTS kb_documents_hash ON kb_documents (tenant_id, collection, sha256)",
        """CREATE TABLE IF NOT EXISTS kb_chunks (
            id BIGSERIAL PRIMARY KEY,
            document_id TEXT NOT NULL REFERENCES kb_documents (id) ON DELETE CASCADE,
            tenant_id TEXT NOT NULL, collection TEXT NOT NULL, seq INTEGER NOT NULL, text TEXT NOT NULL,
            start_char INTEGER NOT NULL, end_char INTEGER NOT NULL,
            tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED)""",
        "CREATE INDEX IF NOT EXISTS kb_chunks_document ON kb_chunks (document_id, seq)",
        "CREATE INDEX IF NOT EXISTS kb_chunks_tsv ON kb_chunks USING GIN (tsv)",
    ],
]

_DOC_COLUMNS = "id, tenant_id, collection, source, title, kind, sha256, chars, chunks, created_at"


def split_url(url: str) -> tuple[str, str | None]:
    """(a DSN for asyncpg, the ``?schema=`` of `url` or None), as the engine reads its URL."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    schema = next((v for k, v in query if k == "schema"), None)
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    scheme = "postgresql" if parts.scheme.startswith("postgres") else parts.scheme
    if schema is not None and not _IDENT.match(schema):
        raise ValueError(f"schema name {schema!r}: use lowercase letters, digits and _")
    return urlunsplit((scheme, parts.netloc, parts.path, rest, parts.fragment)), schema


def _document(row: Any) -> Document:
    return Document(row[0], row[1], row[2], row[3], row[4], row[5], row[6], int(row[7]), int(row[8]), float(row[9]))


class PostgresKBStore(KBStore):
    """The knowledge base's tables in PostgreSQL (see the module docstring)."""

    def __init__(self, url: str) -> None:
        self.dsn, self.schema = split_url(url)
        self._pool: Any = None

    async def open(self) -> None:
        """Connect (a small pool) and apply missing migrations under an advisory lock."""
        import asyncpg

        settings = {"search_path": f'"{self.schema}"'} if self.schema else {}
        if self.schema:
            conn = await asyncpg.connect(self.dsn)
            try:
                await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            finally:
                await conn.close()
        self._pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=4, server_settings=settings)
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"loomiq-kb:{self.schema or 'public'}")
            await conn.execute("CREATE TABLE IF NOT EXISTS kb_schema_migrations "
                               "(version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION)")
            current = await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM kb_schema_migrations")
            for version, statements in enumerate(_MIGRATIONS[current:], start=current + 1):
                for statement in statements:
                    await conn.execute(statement)
                await conn.execute("INSERT INTO kb_schema_migrations VALUES ($1, $2)", version, time.time())

    async def close(self) -> None:
        """Close the pool."""
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def find_by_hash(self, tenant: str, collection: str, sha256: str) -> Document | None:
        """See `KBStore.find_by_hash`."""
        row = await self._pool.fetchrow(
            f"SELECT {_DOC_COLUMNS} FROM kb_documents WHERE tenant_id = $1 AND collection = $2 AND sha256 = $3",
            tenant, collection, sha256)
        return _document(row) if row else None

    async def insert(self, document: Document, chunks: Sequence[ChunkRow]) -> None:
        """See `KBStore.insert`."""
        d = document
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                f"INSERT INTO kb_documents ({_DOC_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                d.id, d.tenant_id, d.collection, d.source, d.title, d.kind, d.sha256, d.chars, d.chunks, d.created_at)
            await conn.executemany(
                "INSERT INTO kb_chunks (document_id, tenant_id, collection, seq, text, start_char, end_char) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7)",
                [(d.id, d.tenant_id, d.collection, c.seq, c.text, c.start, c.end) for c in chunks])

    async def get(self, tenant: str, document_id: str) -> Document | None:
        """See `KBStore.get`."""
        row = await self._pool.fetchrow(
            f"SELECT {_DOC_COLUMNS} FROM kb_documents WHERE tenant_id = $1 AND id = $2", tenant, document_id)
        return _document(row) if row else None

    async def list(self, tenant: str, collection: str | None, limit: int, offset: int) -> list[Document]:
        """See `KBStore.list`."""
        rows = await self._pool.fetch(
            f"SELECT {_DOC_COLUMNS} FROM kb_documents WHERE tenant_id = $1 AND ($2::text IS NULL OR collection = $2) "
            "ORDER BY created_at DESC, id LIMIT $3 OFFSET $4", tenant, collection, limit, offset)
        return [_document(r) for r in rows]

    async def delete(self, tenant: str, document_id: str) -> bool:
        """See `KBStore.delete` (chunks go with their document: ON DELETE CASCADE)."""
        status: str = await self._pool.execute("DELETE FROM kb_documents WHERE tenant_id = $1 AND id = $2",
                                          tenant, document_id)
        return status.endswith(" 1")

    async def search(self, tenant: str, collection: str | None, terms: Sequence[str], limit: int
                     ) -> builtins.list[SearchHit]:  # `list` here is the method above
        """See `KBStore.search`: the terms OR-ed into a tsquery, ranked by ``ts_rank_cd``."""
        if not terms:
            return []
        rows = await self._pool.fetch(
            """WITH q AS (SELECT to_tsquery('english', $1) AS query)
            SELECT c.document_id, c.seq, d.source, d.title, c.text, ts_rank_cd(c.tsv, q.query) AS score,
                   c.start_char, c.end_char
            FROM q, kb_chunks c JOIN kb_documents d ON d.id = c.document_id
            WHERE c.tsv @@ q.query AND c.tenant_id = $2 AND ($3::text IS NULL OR c.collection = $3)
            ORDER BY score DESC, c.id LIMIT $4""",
            # Words only (see query_terms); each is quoted as a tsquery lexeme, then normalized by 'english'.
            " | ".join(f"'{t}'" for t in terms), tenant, collection, limit)
        return [SearchHit(f"{r[0]}#{r[1]}", r[0], int(r[1]), r[2], r[3], r[4], float(r[5]), int(r[6]), int(r[7]))
                for r in rows]


__all__ = ["PostgresKBStore", "split_url"]
