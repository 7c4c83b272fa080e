"""API keys: created for a tenant and role, shown once, stored only as an argon2 hash.

A key reads ``lq_<key id>_<secret>``. The key id is not secret: it finds the stored row in one indexed
lookup, and only that row's hash is verified, so a request costs one argon2 verification at most (and
none while the key sits in the verified-key cache).

Storage is one table, ``api_keys``, in portable SQL: `SQLiteKeyStore` keeps it in a file next to a
SQLite task database, `PostgresKeyStore` in the PostgreSQL task database itself (same schema), so
that every ``serve`` process sharing that database accepts the same keys and sees a revocation
within the verified-key cache's lifetime. Methods are blocking (they are short); async callers run
them in a worker thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from .auth import ROLES, TENANT_RE, Role

KEY_PREFIX = "lq_"
_KEY_RE = re.compile(r"^lq_([0-9a-f]{12})_([A-Za-z0-9_-]{20,200})$")

# A key's secret has 256 random bits, so a memory-hard hash at OWASP's minimum settings (19 MiB, two
# passes) protects a leaked table as well as heavier settings would, at ~15 ms per verification.
_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    key_id      TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
    name        TEXT NOT NULL DEFAULT '',
    secret_hash TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
);
CREATE INDEX IF NOT EXISTS api_keys_tenant ON api_keys (tenant_id);
"""


class InvalidKeyRequest(ValueError):
    """A key cannot be created as asked (bad tenant or role)."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored key, without its secret."""

    key_id: str
    tenant: str
    role: Role
    name: str
    created_at: str
    revoked_at: str | None = None

    @property
    def active(self) -> bool:
        """True until the key is revoked."""
        return self.revoked_at is None

    def to_dict(self) -> dict[str, object]:
        """JSON form (never includes the secret)."""
        return {
            "key_id": self.key_id,
            "tenant": self.tenant,
            "role": self.role,
            "name": self.name,
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
            "active": self.active,
        }


@dataclass(frozen=True, slots=True)
class NewApiKey:
    """A key just created: its record and the full key, which is shown this once and never stored."""

    key: ApiKey
    secret: str


def parse_key(token: str) -> tuple[str, str] | None:
    """``lq_<id>_<secret>`` -> (key id, secret), or None when `token` is not shaped like a key."""
    match = _KEY_RE.match(token)
    return (match.group(1), match.group(2)) if match else None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class KeyStore(ABC):
    """Where API keys live. `create` and `revoke` change it; `lookup` serves authentication."""

    @abstractmethod
    def create(self, tenant: str, role: Role, name: str = "") -> NewApiKey:
        """Create a key for `tenant` with `role`; the returned secret is the only copy."""

    @abstractmethod
    def revoke(self, key_id: str, tenant: str | None = None) -> bool:
        """Revoke a key (only within `tenant`, when given); False if there is no such active key."""

    @abstractmethod
    def list_keys(self, tenant: str | None = None, include_revoked: bool = False) -> list[ApiKey]:
        """Keys, newest first; all tenants' when `tenant` is None."""

    @abstractmethod
    def lookup(self, key_id: str) -> tuple[ApiKey, str] | None:
        """The key with this id and its stored hash, or None."""

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release connections."""


_Mode = Literal["count", "all", "one"]


class _SqlKeyStore(KeyStore):
    """The key store's logic on the ``api_keys`` table; a subclass runs one statement (``?``
    placeholders) with `_run`."""

    @abstractmethod
    def _run(self, sql: str, args: tuple[Any, ...], mode: _Mode) -> Any:
        """Run `sql`: the rows changed ("count"), all rows ("all"), or the first row or None ("one")."""

    def create(self, tenant: str, role: Role, name: str = "") -> NewApiKey:
        """Create a key for `tenant` with `role`; the returned secret is the only copy."""
        if not TENANT_RE.match(tenant):
            raise InvalidKeyRequest(f"bad tenant {tenant!r}: use 1-64 letters, digits, '.', '_' or '-'")
        if role not in ROLES:
            raise InvalidKeyRequest(f"bad role {role!r} (choose from {', '.join(ROLES)})")
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        record = ApiKey(key_id, tenant, role, name, _now())
        digest = _HASHER.hash(secret)
        self._run(
            "INSERT INTO api_keys (key_id, tenant_id, role, name, secret_hash, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (key_id, tenant, role, name, digest, record.created_at), "count",
        )
        return NewApiKey(record, f"{KEY_PREFIX}{key_id}_{secret}")

    def revoke(self, key_id: str, tenant: str | None = None) -> bool:
        """Revoke a key (only within `tenant`, when given); False if there is no such active key."""
        sql = "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL"
        args: tuple[str, ...] = (_now(), key_id)
        if tenant is not None:
            sql += " AND tenant_id = ?"
            args += (tenant,)
        return bool(self._run(sql, args, "count") == 1)

    def list_keys(self, tenant: str | None = None, include_revoked: bool = False) -> list[ApiKey]:
        """Keys, newest first; all tenants' when `tenant` is None."""
        sql = "SELECT key_id, tenant_id, role, name, created_at, revoked_at FROM api_keys WHERE 1 = 1"
        args: tuple[str, ...] = ()
        if tenant is not None:
            sql += " AND tenant_id = ?"
            args = (tenant,)
        if not include_revoked:
            sql += " AND revoked_at IS NULL"
        rows = self._run(sql + " ORDER BY created_at DESC, key_id", args, "all")
        return [ApiKey(*row) for row in rows]

    def lookup(self, key_id: str) -> tuple[ApiKey, str] | None:
        """The key with this id and its stored hash, or None."""
        row = self._run(
            "SELECT key_id, tenant_id, role, name, created_at, revoked_at, secret_hash FROM api_keys WHERE key_id = ?",
            (key_id,), "one",
        )
        if row is None:
            return None
        return ApiKey(*row[:6]), row[6]


class SQLiteKeyStore(_SqlKeyStore):
    """Keys in a SQLite file (WAL mode). Safe to share between threads and processes."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # One connection, used under a lock: calls are a single indexed statement each.
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(_SCHEMA)

    def _run(self, sql: str, args: tuple[Any, ...], mode: _Mode) -> Any:
        with self._lock:
            cursor = self._db.execute(sql, args)
            if mode == "count":
                return cursor.rowcount
            return cursor.fetchall() if mode == "all" else cursor.fetchone()

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()


class PostgresKeyStore(_SqlKeyStore):
    """Keys in the PostgreSQL task database (``postgresql://...``, with its ``?schema=`` if any).

    asyncpg is asynchronous and this interface is not: the store runs a small connection pool on an
    event loop of its own, in a daemon thread, and each call waits for its statement there. A server
    that cannot be reached raises `StoreUnavailable` (the API answers 503)."""

    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        from ..engine._postgres import split_url

        self.dsn, self.schema = split_url(url)
        self.timeout_s = timeout_s
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="loomiq-keys-pg", daemon=True)
        self._thread.start()
        try:
            self._pool = self._wait(self._open())
        except BaseException:
            self._stop_loop()
            raise

    async def _open(self) -> Any:
        import asyncpg

        conn = await asyncpg.connect(self.dsn, timeout=self.timeout_s)
        try:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext('loomiq:api_keys'))")
                if self.schema:
                    await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                    await conn.execute(f'SET LOCAL search_path TO "{self.schema}"')
                await conn.execute(_SCHEMA)
        finally:
            await conn.close()
        settings = {"search_path": self.schema} if self.schema else {}
        return await asyncpg.create_pool(self.dsn, min_size=0, max_size=2, server_settings=settings,
                                         timeout=self.timeout_s)

    def _wait(self, coro: Coroutine[Any, Any, Any]) -> Any:
        from ..engine.errors import StoreUnavailable

        try:
            return asyncio.run_coroutine_threadsafe(coro, self._loop).result(self.timeout_s * 2)
        except (OSError, TimeoutError) as exc:
            raise StoreUnavailable(f"the API-key database cannot be reached ({type(exc).__name__})") from exc
        except Exception as exc:
            import asyncpg

            if isinstance(exc, (asyncpg.PostgresConnectionError, asyncpg.exceptions.OperatorInterventionError,
                                asyncpg.InterfaceError)):
                raise StoreUnavailable(f"the API-key database cannot be reached ({type(exc).__name__})") from exc
            raise

    async def _statement(self, sql: str, args: tuple[Any, ...], mode: _Mode) -> Any:
        from ..engine._postgres import _count, _sql

        async with self._pool.acquire() as conn:
            if mode == "count":
                return _count(await conn.execute(_sql(sql), *args))
            if mode == "all":
                return [tuple(r) for r in await conn.fetch(_sql(sql), *args)]
            row = await conn.fetchrow(_sql(sql), *args)
            return None if row is None else tuple(row)

    def _run(self, sql: str, args: tuple[Any, ...], mode: _Mode) -> Any:
        return self._wait(self._statement(sql, args, mode))

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def close(self) -> None:
        """Close the pool and stop the store's thread."""
        if self._loop.is_closed():
            return
        try:
            self._wait(self._pool.close())
        finally:
            self._stop_loop()


def open_key_store(location: str | Path) -> KeyStore:
    """The key store at `location`: a SQLite file path (or ``sqlite:///path``), or a PostgreSQL URL
    (``postgresql://...``, optionally ``?schema=name``: the table goes in that schema)."""
    text = str(location)
    if text.startswith(("postgres://", "postgresql://")):
        return PostgresKeyStore(text)
    if text.startswith("sqlite:///"):
        text = text.removeprefix("sqlite:///")
    return SQLiteKeyStore(text)


class KeyVerifier:
    """Checks presented keys against a `KeyStore`, remembering verified keys for `ttl_s` seconds.

    The cache holds a SHA-256 of the presented key, never the key; a revocation through `forget`
    (this process) takes effect at once, one made elsewhere within `ttl_s`.
    """

    def __init__(self, store: KeyStore, ttl_s: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self._clock = clock
        self._cache: dict[str, tuple[bytes, ApiKey, float]] = {}
        self._lock = threading.Lock()

    def peek(self, token: str) -> ApiKey | None:
        """The key `token` is if it was verified within `ttl_s`, else None. Never blocks: async callers
        try this first and run `verify` in a thread only on a miss."""
        parsed = parse_key(token)
        if parsed is None:
            return None
        with self._lock:
            cached = self._cache.get(parsed[0])
        if cached is None or cached[2] <= self._clock():
            return None
        return cached[1] if hmac.compare_digest(cached[0], hashlib.sha256(token.encode()).digest()) else None

    def verify(self, token: str) -> ApiKey | None:
        """The active key `token` is, or None (unknown id, wrong secret, revoked). Blocking."""
        cached = self.peek(token)
        if cached is not None:
            return cached
        parsed = parse_key(token)
        if parsed is None:
            return None
        key_id, secret = parsed
        fingerprint = hashlib.sha256(token.encode()).digest()
        now = self._clock()
        found = self.store.lookup(key_id)
        if found is None:
            return None
        record, digest = found
        if not record.active:
            self.forget(key_id)
            return None
        try:
            _HASHER.verify(digest, secret)
        except (VerificationError, InvalidHashError):
            return None
        with self._lock:
            self._cache[key_id] = (fingerprint, record, now + self.ttl_s)
        return record

    def forget(self, key_id: str) -> None:
        """Drop a key from the cache (after revoking it)."""
        with self._lock:
            self._cache.pop(key_id, None)
