"""The knowledge base on SQLite: FTS5 with BM25 ranking, in the engine's database file.

One connection, used by one thread (a single-worker executor), so calls never block the event loop
and never share a connection across threads; WAL and a busy timeout let it sit beside the engine's
writer in the same file.
"""

from __future__ import annotations

import asyncio
import builtins
import hashlib
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
            start_char INTEGER NOT NULL, end_char INTEGER NOT NULL, scope TEXT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS kb_chunks_document ON kb_chunks (document_id, seq)",
        """CREATE VIRTUAL TABLE IF NOT EXISTS kb_chunks_fts USING fts5(
            text, scope, content='kb_chunks', content_rowid='id', tokenize='porter unicode61')""",
        # Rank by BM25 over the text only: the scope column's tokens weigh nothing.
        "INSERT INTO kb_chunks_fts (kb_chunks_fts, rank) VALUES ('rank', 'bm25(1.0, 0.0)')",
        """CREATE TRIGGER IF NOT EXISTS kb_chunks_ai AFTER INSERT ON kb_chunks BEGIN
            INSERT INTO kb_chunks_fts (rowid, text, scope) VALUES (new.id, new.text, new.scope); END""",
        """CREATE TRIGGER IF NOT EXISTS kb_chunks_ad AFTER DELETE ON kb_chunks BEGIN
            INSERT INTO kb_chunks_fts (kb_chunks_fts, rowid, text, scope)
            VALUES ('delete', old.id, old.text, old.scope); END""",
    ],
]
"""Migration N+1 is `_MIGRATIONS[N]`; the applied ones are recorded in ``kb_schema_migrations``."""

_DOC_COLUMNS = "id, tenant_id, collection, source, title, kind, sha256, chars, chunks, created_at"

# The tenant (and collection) filter is a term of the MATCH itself, on the scope column, so that FTS5
# ranks and limits inside the index; only the top rows are joined for their details.
_SEARCH = """
SELECT c.document_id, c.seq, d.source, d.title, c.text, -top.rank, c.start_char, c.end_char
FROM (SELECT rowid, rank FROM kb_chunks_fts WHERE kb_chunks_fts MATCH ? ORDER BY rank LIMIT ?) AS top
JOIN kb_chunks c ON c.id = top.rowid JOIN kb_documents d ON d.id = c.document_id
WHERE c.tenant_id = ?
ORDER BY top.rank"""

# The same without the scope term, for a file whose matches are all one tenant's (and collection's):
# FTS5 then needs not intersect the query's postings with the scope token's (every chunk of the
# tenant), a third of the query's time. Each row says whose it is; see `SQLiteKBStore.search`.
_SEARCH_UNSCOPED = """
SELECT c.document_id, c.seq, d.source, d.title, c.text, -top.rank, c.start_char, c.end_char, c.tenant_id,
       c.collection
FROM (SELECT rowid, rank FROM kb_chunks_fts WHERE kb_chunks_fts MATCH ? ORDER BY rank LIMIT ?) AS top
JOIN kb_chunks c ON c.id = top.rowid JOIN kb_documents d ON d.id = c.document_id
ORDER BY top.rank"""


COMMON = 0.25
"""A word in more than this share of all chunks is a stop word to the search (see `SQLiteKBStore._informative`)."""
COMMON_MIN = 1000
"""... and in more than this many chunks: below it, scoring a word is cheap and every word counts."""


def scope_tokens(tenant: str, collection: str) -> tuple[str, str]:
    """The scope column's two tokens of a chunk: its tenant's, and its tenant and collection's (hashes:
    one alphanumeric token each, whatever characters the names hold)."""
    tenant_token = "t" + hashlib.sha256(tenant.encode()).hexdigest()[:24]
    collection_token = "c" + hashlib.sha256(f"{tenant}\0{collection}".encode()).hexdigest()[:24]
    return tenant_token, collection_token


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
    return Document(row[0], row[1], row[2], row[3], row[4], row[5], row[6], int(row[7]), int(row[8]), float(row[9]))


class SQLiteKBStore(KBStore):
    """The knowledge base's tables in a SQLite file (see the module docstring)."""

    def __init__(self, url: str) -> None:
        self.path = sqlite_file(url)
        self._conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._vocab_ready = False
        self._total = 0
        self._total_at = -1e9
        self._frequency: dict[str, int] = {}
        """Document frequency of query words (0: not in the index), refreshed with the total, and
        emptied by this store's own writes."""
        self._mixed = False
        """Whether a recent search found other scopes' chunks among the file's best matches (then
        searches filter by scope in the index at once); reset with the frequencies."""

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
                scope = " ".join(scope_tokens(d.tenant_id, d.collection))
                conn.executemany(
                    "INSERT INTO kb_chunks (document_id, tenant_id, collection, seq, text, start_char, end_char, "
                    "scope) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [(d.id, d.tenant_id, d.collection, c.seq, c.text, c.start, c.end, scope) for c in chunks])
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        await self._call(write)
        self._total_at = -1e9  # this process changed the frequencies

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

        removed = await self._call(remove)
        self._total_at = -1e9
        return removed

    async def search(self, tenant: str, collection: str | None, terms: Sequence[str], limit: int
                     ) -> builtins.list[SearchHit]:  # `list` here is the method above
        """See `KBStore.search`: the informative terms OR-ed, ranked by BM25 (see `_informative`)."""
        if not terms:
            return []
        tenant_token, collection_token = scope_tokens(tenant, collection or "")
        scope = f'scope : "{collection_token if collection else tenant_token}"'

        def query(conn: sqlite3.Connection) -> list[Any]:
            words = self._informative(conn, terms)
            if not words:
                return []
            # Words only (see query_terms): quoting them is enough to keep them out of FTS5's syntax.
            text = f"text : ({' OR '.join(f'{chr(34)}{w}{chr(34)}' for w in words)})"
            if not self._mixed:
                # The best `limit` matches of the whole file: when they are all in scope, they are the
                # scope's best too (the scope term weighs nothing in the rank), and when fewer came
                # back, they are every match. Otherwise the file mixes scopes: ask with the scope term
                # (and go straight to it until the frequencies are next refreshed).
                rows = conn.execute(_SEARCH_UNSCOPED, (text, limit)).fetchall()
                if all(r[8] == tenant and (collection is None or r[9] == collection) for r in rows):
                    return rows
                self._mixed = True
            return conn.execute(_SEARCH, (f"{scope} AND {text}", limit, tenant)).fetchall()

        rows = await self._call(query)
        return [SearchHit(f"{r[0]}#{r[1]}", r[0], int(r[1]), r[2], r[3], r[4], float(r[5]), int(r[6]), int(r[7]))
                for r in rows]

    def _informative(self, conn: sqlite3.Connection, terms: Sequence[str]) -> builtins.list[str]:
        """The query words worth ranking by.

        Scoring a word costs a BM25 evaluation per chunk that holds it: tens of milliseconds for a
        word in most of 10,000 chunks, while its IDF is small (FTS5 clamps it to 1e-6 past half of
        the chunks) and moves the top results little. So words in more than `COMMON` of the chunks
        (and in more than `COMMON_MIN`: a small knowledge base is searched for every word) are treated
        as stop words and not searched for, and words found nowhere are dropped. A query
        made only of common words is ranked by its rarest word alone (correct, and slower).
        """
        if not self._vocab_ready:
            conn.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.kb_query USING fts5(t, tokenize='porter unicode61')")
            conn.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.kb_query_v USING fts5vocab(temp, kb_query, instance)")
            conn.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.kb_chunks_v "
                         "USING fts5vocab(main, kb_chunks_fts, row)")
            self._vocab_ready = True
        total = self._total_chunks(conn)  # also empties the frequency cache every few seconds
        missing = [w for w in terms if w not in self._frequency]
        if missing:
            # The index's own tokenizer gives each word's stem, whose document frequency the index knows.
            conn.execute("DELETE FROM temp.kb_query")
            conn.executemany("INSERT INTO temp.kb_query (rowid, t) VALUES (?, ?)", list(enumerate(missing)))
            stems = dict(conn.execute("SELECT doc, term FROM temp.kb_query_v WHERE col = 't'").fetchall())
            for index, word in enumerate(missing):
                stem = stems.get(index)
                row = stem and conn.execute("SELECT doc FROM temp.kb_chunks_v WHERE term = ?", (stem,)).fetchone()
                self._frequency[word] = int(row[0]) if row and row[0] else 0
        frequency = {w: self._frequency[w] for w in terms if self._frequency[w]}
        if not frequency:
            return []
        informative = [w for w, n in frequency.items() if n <= max(total * COMMON, COMMON_MIN)]
        return informative or [min(frequency, key=frequency.__getitem__)]

    def _total_chunks(self, conn: sqlite3.Connection) -> int:
        now = time.monotonic()
        if now - self._total_at > 10.0:
            self._total = conn.execute("SELECT COALESCE(MAX(id), 0) FROM kb_chunks").fetchone()[0]
            self._total_at = now
            self._frequency.clear()
            self._mixed = False
        return max(1, self._total)


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
