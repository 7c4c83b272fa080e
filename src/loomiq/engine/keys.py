"""The API's keys in the engine's database (table ``api_keys``, migration v8), behind an async
interface on an open `Store`: every process on the database (servers, the CLI) sees the same keys,
and a revocation is a committed row that the next request reads.

This layer stores records; creating secrets and hashing them is the API's (`loomiq.api.keys`).
Writes go through the store's group-commit writer, reads are point reads by primary key (SQLite:
on the event loop, ~10-30 µs; PostgreSQL: one round trip on the read pool).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from ._stmt import Outcome, Stmt
from .store import Store

_COLUMNS = "key_id, tenant_id, role, name, created_at, revoked_at, secret_hash"


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A stored API key: who it acts for, and the hash of its secret (never the secret)."""

    key_id: str
    tenant: str
    role: str
    name: str
    created_at: str
    revoked_at: str | None
    secret_hash: str

    @property
    def active(self) -> bool:
        """True until the key is revoked."""
        return self.revoked_at is None


def _exec(sql: str, args: tuple[Any, ...]) -> Generator[Stmt, Any, Outcome]:
    count = yield Stmt(sql, args, "exec")
    return Outcome(value=count)


class KeyTable:
    """The ``api_keys`` table of an open engine `Store` (see the module docstring)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def insert(self, record: KeyRecord, *, if_absent: bool = False) -> bool:
        """Store `record`; with `if_absent`, a key id that exists already is left as it is (False)."""
        sql = (f"INSERT INTO api_keys ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
               + (" ON CONFLICT (key_id) DO NOTHING" if if_absent else ""))
        args = (record.key_id, record.tenant, record.role, record.name, record.created_at, record.revoked_at,
                record.secret_hash)
        out = await self.store.run_op(_exec(sql, args))
        return bool(out.value == 1)

    async def revoke(self, key_id: str, at: str, tenant: str | None = None) -> bool:
        """Mark the key revoked `at` (only within `tenant`, when given); False if there is no such active key."""
        sql = "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL"
        args: tuple[str, ...] = (at, key_id)
        if tenant is not None:
            sql += " AND tenant_id = ?"
            args += (tenant,)
        out = await self.store.run_op(_exec(sql, args))
        return bool(out.value == 1)

    async def get(self, key_id: str) -> KeyRecord | None:
        """The key with this id (active or revoked), or None."""
        row = await self.store.fetch(Stmt(f"SELECT {_COLUMNS} FROM api_keys WHERE key_id = ?", (key_id,), "one"))
        return None if row is None else KeyRecord(*row)

    async def list_keys(self, tenant: str | None = None, include_revoked: bool = False) -> list[KeyRecord]:
        """Keys, newest first; every tenant's when `tenant` is None."""
        sql = f"SELECT {_COLUMNS} FROM api_keys WHERE 1 = 1"
        args: tuple[str, ...] = ()
        if tenant is not None:
            sql += " AND tenant_id = ?"
            args = (tenant,)
        if not include_revoked:
            sql += " AND revoked_at IS NULL"
        rows = await self.store.fetch(Stmt(sql + " ORDER BY created_at DESC, key_id", args, "all"), blocking=True)
        return [KeyRecord(*row) for row in rows]
