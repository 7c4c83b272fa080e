"""The knowledge base on SQLite: FTS5 with BM25 ranking, in the engine's database file.

One connection, used by one thread (a single-worker executor), so calls never block the event loop
and never share a connection across threads; WAL and a busy timeout let it sit beside the engine's
writer in the same file.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from ._kb_store import ChunkRow, Document, KBStore, SearchHit

T = TypeVar("T")

_MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE IF NOT EXISTS kb_documents (
            id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, collection TEXT NOT NULL, source TEXT NOT NULL,
            title TEXT NOT NULL, kind TEXT NOT NULL, sha256 TEXT NOT NULL, chars INTEGER NOT NULL,
            chunks INTEGER NOT NULL, created_at REAL NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS kb_documents_list ON kb_documents (tenant_id, created_at)",
        "CREATE INDEX IF NOT EXISTS kb_documents_hash ON kb_documents (tenant_id, collection, sha256)",
        """CREATE TABLE IF NOT EXISTS kb_chunks (
            id INTEGER PRIMARY KEY, document_id TEXT NOT NULL REFERENCES kb_documents (id) ON DELETE CASCADE,
            tenant_id TEXT NOT NULL, collection TEXT NOT NULL, seq INTEGER NOT NULL, text TEXT NOT NULL,
            start_char INTEGER NOT NULL, end_char INTEGER NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS kb_chunks_document ON kb_chunks (document_id, seq)",
        """CREATE VIRTUAL TABLE IF NOT EXISTS kb_chunks_fts USING fts5(
            text, content='kb_chunks', content_rowid='id', tokenize='porter unicode61')""",
        """CREATE TRIGGER IF NOT EXISTS kb_chunks_ai AFTER INSERT ON kb_chunks BEGIN
            INSERT INTO kb_chunks_fts (rowid, text) VALUES (new.id, new.text); END""",
        """CREATE TRIGGER IF NOT EXISTS kb_chunks_ad AFTER DELETE ON kb_chunks BEGIN
            INSERT INTO kb_chunks_fts (kb_chunks_fts, rowid, text) VALUES ('delete', old.id, old.text); END""",
    ],
]
"""Migration N+1 is `_MIGRATIONS[N]`; the applied ones are recorded in ``kb_schema_migrations``."""

_DOC_COLUMNS = "id, tenant_id, collection, source, title, kind, sha256, chars, chunks, created_at"

_SEARCH = """
SELECT c.document_id, c.seq, d.source, d.title, c.text, -bm25(kb_chunks_fts) AS score, c.start_char, c.end_char
FROM kb_chunks_fts JOIN kb_chunks c ON c.id = kb_chunks_fts.rowid JOIN kb_documents d ON d.id = c.document_id
WHERE kb_chunks_fts MATCH ? AND c.tenant_id = ? {collection}
ORDER BY bm25(kb_chunks_fts) LIMIT ?"""


def sqlite_file(url: str) -> str:
    """The file of a ``sqlite:///relative`` or ``sqlite:////absolute`` URL."""
    parts = urlsplit(url)
    if parts.netloc:
        raise ValueError(f"a sqlite URL has no host: {url!r} (use sqlite:///file.db)")
    path = unquote(parts.path)[1:] if parts.path.startswith("/") else unquote(parts.path)
    if not path:
        raise ValueError(f"the knowledge base needs a database file, not {url!r}")
    return path


def _document(row: Sequence[Any]) -> Document:
    return Document(*row[:7], int(row[7]), int(row[8]), float(row[9]))


class SQLiteKBStore(KBStore):
    """The knowledge base's tables in a SQLite file (see the module docstring)."""

    def __init__(self, url: str) -> None:
        self.path = sqlite_file(url)
        self._conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._conn is None or self._executor is None:
            raise RuntimeError("the knowledge base is not open")
        conn = self._conn
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, conn)

    async def open(self) -> None:
        """Open the file (WAL) and apply missing migrations."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="loomiq-kb")

        def connect() -> sqlite3.Connection:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA synchronous=NORMAL")
            _migrate(conn)
            return conn

        try:
            self._conn = await asyncio.get_running_loop().run_in_executor(self._executor, connect)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise

    async def close(self) -> None:
        """Close the connection and its thread."""
        if self._conn is not None and self._executor is not None:
            await self._call(lambda conn: conn.close())
            self._executor.shutdown(wait=True)
        self._conn = self._executor = None

    async def find_by_hash(self, tenant: str, collection: str, sha256: str) -> Document | None:
        """See `KBStore.find_by_hash`."""
        row = await self._call(lambda c: c.execute(
            f"SELECT {_DOC_COLUMNS} FROM kb_documents WHERE tenant_id = ? AND collection = ? AND sha256 = ?",
            (tenant, collection, sha256)).fetchone())
        return _document(row) if row else None

    async def insert(self, document: Document, chunks: Sequence[ChunkRow]) -> None:
        """See `KBStore.insert`."""
        d = document

        def write(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(f"INSERT INTO kb_documents ({_DOC_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             (d.id, d.tenant_id, d.collection, d.source, d.title, d.kind, d.sha256, d.chars,
                              d.chunks, d.created_at))
                conn.executemany(
                    "INSERT INTO kb_chunks (document_id, tenant_id, collection, seq, text, start_char, end_char) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(d.id, d.tenant_id, d.collection, c.seq, c.text, c.start, c.end) for c in chunks])
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        await self._call(write)

    async def get(self, tenant: str, document_id: str) -> Document | None:
        """See `KBStore.get`."""
        sql = f"SELECT {_DOC_COLUMNS} FROM kb_documents WHERE tenant_id = ? AND id = ?"
        row = await self._call(lambda c: c.execute(sql, (tenant, document_id)).fetchone())
        return _document(row) if row else None

    async def list(self, tenant: str, collection: str | None, limit: int, offset: int) -> list[Document]:
        """See `KBStore.list`."""
        where, args = ("AND collection = ?", [collection]) if collection else ("", [])
        rows = await self._call(lambda c: c.execute(
            f"SELECT {_DOC_COLUMNS} FROM kb_documents WHERE tenant_id = ? {where} "
            "ORDER BY created_at DESC, id LIMIT ? OFFSET ?", (tenant, *args, limit, offset)).fetchall())
        return [_document(r) for r in rows]

    async def delete(self, tenant: str, document_id: str) -> bool:
        """See `KBStore.delete`."""

        def remove(conn: sqlite3.Connection) -> bool:
            conn.execute("BEGIN IMMEDIATE")
            try:
                found = conn.execute("SELECT 1 FROM kb_documents WHERE tenant_id = ? AND id = ?",
                                     (tenant, document_id)).fetchone()
                if found:
                    conn.execute("DELETE FROM kb_chunks WHERE document_id = ?", (document_id,))
                    conn.execute("DELETE FROM kb_documents WHERE id = ?", (document_id,))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return bool(found)

        return await self._call(remove)

    async def search(self, tenant: str, collection: str | None, terms: Sequence[str], limit: int) -> list[SearchHit]:
        """See `KBStore.search`: the terms OR-ed, ranked by BM25."""
        if not terms:
            return []
        match = " OR ".join(f'"{t}"' for t in terms)  # words only (see query_terms): quoting is enough
        sql = _SEARCH.format(collection="AND c.collection = ?" if collection else "")
        args = (match, tenant, *([collection] if collection else []), limit)
        rows = await self._call(lambda c: c.execute(sql, args).fetchall())
        return [SearchHit(f"{r[0]}#{r[1]}", r[0], int(r[1]), r[2], r[3], r[4], float(r[5]), int(r[6]), int(r[7]))
                for r in rows]


def _migrate(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS kb_schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL)")
    conn.execute("BEGIN IMMEDIATE")
    try:
        current = conn.execute("SELECT COALESCE(MAX(version), 0) FROM kb_schema_migrations").fetchone()[0]
        for version, statements in enumerate(_MIGRATIONS[current:], start=current + 1):
            for statement in statements:
                conn.execute(statement)
            conn.execute("INSERT INTO kb_schema_migrations VALUES (?, ?)", (version, time.time()))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


__all__ = ["SQLiteKBStore", "sqlite_file"]
