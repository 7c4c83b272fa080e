"""API keys: created for a tenant and role, shown once, stored only as an argon2 hash.

A key reads ``lq_<key id>_<secret>``. The key id is not secret: it finds the stored row in one indexed
lookup, and only that row's hash is verified, so a request costs one argon2 verification at most (and
none while the key sits in the verified-key cache).

Keys live in the engine's database (table ``api_keys``, `loomiq.engine.KeyTable`): the task
database by default, so every ``serve`` process and the CLI on that database share them. Every
request reads its key's row (a point read), so a revocation made anywhere (another server, ``loomiq
keys revoke``) refuses the very next request; the cache only spares the argon2 verification of a
secret seen lately. Everything here is async.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import re
import secrets
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ..engine import KeyRecord, KeyTable, Store, StoreUnavailable
from .auth import ROLES, TENANT_RE, Role

KEY_PREFIX = "lq_"
_KEY_RE = re.compile(r"^lq_([0-9a-f]{12})_([A-Za-z0-9_-]{20,200})$")

# A key's secret has 256 random bits, so a memory-hard hash at OWASP's minimum settings (19 MiB, two
# passes) protects a leaked table as well as heavier settings would, at ~15 ms per verification.
_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)

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


class KeyStore:
    """API keys on an engine database (`loomiq.engine.KeyTable`): `create` and `revoke` change them,
    `lookup` serves authentication. `open_key_store` opens one on a database of its own; a server
    running the task engine uses the engine's (`KeyStore(engine.keys)`)."""

    def __init__(self, table: KeyTable, owned: Store | None = None) -> None:
        self.table = table
        self._owned = owned

    async def create(self, tenant: str, role: Role, name: str = "") -> NewApiKey:
        """Create a key for `tenant` with `role`; the returned secret is the only copy."""
        if not TENANT_RE.match(tenant):
            raise InvalidKeyRequest(f"bad tenant {tenant!r}: use 1-64 letters, digits, '.', '_' or '-'")
        if role not in ROLES:
            raise InvalidKeyRequest(f"bad role {role!r} (choose from {', '.join(ROLES)})")
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        record = ApiKey(key_id, tenant, role, name, _now())
        digest = await asyncio.to_thread(_HASHER.hash, secret)
        await self.table.insert(KeyRecord(key_id, tenant, role, name, record.created_at, None, digest))
        return NewApiKey(record, f"{KEY_PREFIX}{key_id}_{secret}")

    async def revoke(self, key_id: str, tenant: str | None = None) -> bool:
        """Revoke a key (only within `tenant`, when given); False if there is no such active key."""
        return await self.table.revoke(key_id, _now(), tenant)

    async def list_keys(self, tenant: str | None = None, include_revoked: bool = False) -> list[ApiKey]:
        """Keys, newest first; all tenants' when `tenant` is None."""
        return [_api_key(r) for r in await self.table.list_keys(tenant, include_revoked)]

    async def lookup(self, key_id: str) -> tuple[ApiKey, str] | None:
        """The key with this id and its stored hash, or None."""
        found = await self.table.get(key_id)
        return None if found is None else (_api_key(found), found.secret_hash)

    async def import_file(self, path: str | Path) -> int:
        """Copy the keys of an API-key file of an earlier loomiq (a SQLite ``api_keys`` table, kept
        beside a SQLite task database as ``loomiq-keys.db``) into this store; a key id it has already
        is left as it is. Returns how many were added (0 when there is no such file)."""
        def read() -> list[tuple[str, ...]]:
            file = Path(path).resolve()
            if not file.is_file():
                return []
            conn = sqlite3.connect(f"file:{file}?mode=ro", uri=True)
            try:
                return conn.execute("SELECT key_id, tenant_id, role, name, created_at, revoked_at, secret_hash "
                                    "FROM api_keys").fetchall()
            except sqlite3.OperationalError:
                return []  # not a key file
            finally:
                conn.close()

        added = 0
        for row in await asyncio.to_thread(read):
            added += await self.table.insert(KeyRecord(*row), if_absent=True)
        return added

    async def aclose(self) -> None:
        """Close the database `open_key_store` opened (nothing when the store is the engine's)."""
        if self._owned is not None:
            await self._owned.close()
            self._owned = None


def _absolute(path: str) -> str:
    return os.path.join(os.getcwd(), path) if not path.startswith("/") else path  # noqa: ASYNC240 - no I/O


def _api_key(r: KeyRecord) -> ApiKey:
    return ApiKey(r.key_id, r.tenant, r.role, r.name, r.created_at, r.revoked_at)  # type: ignore[arg-type]


async def open_key_store(location: str | Path) -> KeyStore:
    """A key store on its own connection to the engine database at `location`: a database URL
    (``sqlite:///path`` or ``postgresql://...``, optionally ``?schema=name``) or a SQLite file path.
    Close it with `KeyStore.aclose`. An unreachable server raises `StoreUnavailable`."""
    text = str(location)
    url = text if "://" in text else f"sqlite:///{_absolute(text)}"
    store = Store.from_url(url)
    try:
        await store.open()
    except (OSError, TimeoutError) as exc:
        raise StoreUnavailable(f"the API-key database cannot be reached ({type(exc).__name__}: {exc})") from exc
    return KeyStore(KeyTable(store), owned=store)


class KeyVerifier:
    """Checks presented keys against a `KeyStore`.

    Every check reads the key's row, so a revocation made anywhere counts at the next request. The
    argon2 verification of a secret is remembered for `ttl_s` seconds (as a SHA-256 of the presented
    key, never the key): within that time a request costs the row read only.
    """

    def __init__(self, store: KeyStore, ttl_s: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self._clock = clock
        self._cache: dict[str, tuple[bytes, float]] = {}
        self.hashes = 0
        """How many argon2 verifications ran (the cache's misses)."""

    async def verify(self, token: str, before_hash: Callable[[], None] | None = None) -> ApiKey | None:
        """The active key `token` is, or None (unknown id, wrong secret, revoked). `before_hash` is
        called before an argon2 verification (a cache miss), to charge its cost (it may raise)."""
        parsed = parse_key(token)
        if parsed is None:
            return None
        key_id, secret = parsed
        found = await self.store.lookup(key_id)
        if found is None or not found[0].active:
            self.forget(key_id)
            if before_hash is not None:
                before_hash()  # a guess (an unknown or revoked key) is charged like a hash: guessing stays limited
            return None
        record, digest = found
        fingerprint = hashlib.sha256(token.encode()).digest()
        cached = self._cache.get(key_id)
        if cached is not None and cached[1] > self._clock() and hmac.compare_digest(cached[0], fingerprint):
            return record
        if before_hash is not None:
            before_hash()
        self.hashes += 1
        if not await asyncio.to_thread(_matches, digest, secret):
            return None
        self._cache[key_id] = (fingerprint, self._clock() + self.ttl_s)
        return record

    def forget(self, key_id: str) -> None:
        """Drop a key from the cache (after revoking it)."""
        self._cache.pop(key_id, None)


def _matches(digest: str, secret: str) -> bool:
    try:
        return bool(_HASHER.verify(digest, secret))
    except (VerificationError, InvalidHashError):
        return False
