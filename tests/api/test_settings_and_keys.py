"""Settings from the environment, the API-key store and verifier, the serve helper, and the public surface."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import pytest

import loomiq.api
from loomiq.api import (
    InvalidKeyRequest,
    PostgresKeyStore,
    Settings,
    SettingsError,
    SQLiteKeyStore,
    build_server,
    open_key_store,
)
from loomiq.api.keys import KeyVerifier, parse_key
from loomiq.api.server import is_loopback_host
from loomiq.api.settings import default_keys_path
from loomiq.engine import StoreUnavailable

from ..engine.conftest import database
from .support import SECRET


def test_settings_from_env(tmp_path: Path) -> None:
    pem = tmp_path / "pub.pem"
    pem.write_text("-----BEGIN PUBLIC KEY-----\nxyz\n-----END PUBLIC KEY-----\n")
    settings = Settings.from_env({
        "LOOMIQ_JWT_SECRET": SECRET,
        "LOOMIQ_JWT_PUBLIC_KEY": str(pem),
        "LOOMIQ_JWT_AUDIENCE": "aud-x",
        "LOOMIQ_JWT_ALGORITHMS": "HS256, HS384",
        "LOOMIQ_MAX_BODY_BYTES": "2048",
        "LOOMIQ_RATE_PER_S": "2.5",
        "LOOMIQ_RATE_BURST": "7",
        "LOOMIQ_NO_AUTH": "yes",
        "LOOMIQ_DATABASE_URL": f"sqlite:///{tmp_path}/tasks.db",
        "LOOMIQ_AGENT_ADMIN_TENANTS": "ops, platform",
    })
    assert settings.jwt_public_key is not None and settings.jwt_public_key.startswith("-----BEGIN")
    assert (settings.jwt_audience, settings.algorithms) == ("aud-x", ("HS256", "HS384"))
    assert (settings.max_body_bytes, settings.rate_per_s, settings.rate_burst) == (2048, 2.5, 7)
    assert settings.auth_disabled is True
    assert settings.keys_path is None and settings.key_store_path == tmp_path / "loomiq-keys.db"
    assert settings.database_url == f"sqlite:///{tmp_path}/tasks.db"
    assert settings.agent_admin_tenants == ("ops", "platform")
    assert Settings.from_env({}).jwt_audience == "loomiq"


def test_settings_errors_name_the_variable() -> None:
    with pytest.raises(SettingsError, match="LOOMIQ_RATE_PER_S='fast' is not a float"):
        Settings.from_env({"LOOMIQ_RATE_PER_S": "fast"})
    with pytest.raises(SettingsError, match="LOOMIQ_JWT_PUBLIC_KEY"):
        Settings.from_env({"LOOMIQ_JWT_PUBLIC_KEY": "/no/such/key.pem"})
    with pytest.raises(SettingsError, match="too weak for HS384"):
        Settings(jwt_secret=SECRET, jwt_algorithms=("HS384",)).check()
    with pytest.raises(SettingsError, match="cannot verify RS256"):
        Settings(jwt_public_key="-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----").check()
    with pytest.raises(SettingsError, match="unknown algorithm 'XX1'"):
        Settings(jwt_secret=SECRET, jwt_algorithms=("XX1",)).check()
    Settings(auth_disabled=True).check()  # no secret needed for local use


def test_default_keys_path(tmp_path: Path) -> None:
    assert default_keys_path("sqlite:///data/tasks.db", tmp_path) == tmp_path / "data" / "loomiq-keys.db"
    assert default_keys_path("sqlite:////srv/x/tasks.db", tmp_path) == Path("/srv/x/loomiq-keys.db")
    assert default_keys_path("postgresql://db/loomiq", tmp_path) == tmp_path / "loomiq-keys.db"
    assert default_keys_path(None, tmp_path) == tmp_path / "loomiq-keys.db"


@pytest.fixture(params=["sqlite", "postgresql"])
async def key_store_location(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str | Path]:
    """A key store's location on each kind of database (PostgreSQL: a fresh schema)."""
    if request.param == "sqlite":
        yield tmp_path / "keys.db"
        return
    async with database("postgresql", tmp_path) as url:
        yield url


def test_key_store_create_list_revoke(key_store_location: str | Path) -> None:
    store = open_key_store(key_store_location)
    try:
        made = store.create("acme", "operator", "ci")
        assert parse_key(made.secret) is not None and parse_key(made.secret)[0] == made.key.key_id  # type: ignore[index]
        other = store.create("globex", "viewer")
        assert [k.key_id for k in store.list_keys("acme")] == [made.key.key_id]
        assert {k.key_id for k in store.list_keys()} == {made.key.key_id, other.key.key_id}
        record, digest = store.lookup(made.key.key_id)  # type: ignore[misc]
        assert record == made.key and digest.startswith("$argon2id$") and made.secret not in digest
        assert store.revoke(made.key.key_id, tenant="globex") is False  # another tenant's key
        assert store.revoke(made.key.key_id) is True
        assert store.revoke(made.key.key_id) is False
        assert store.list_keys("acme") == [] and store.list_keys("acme", include_revoked=True)[0].revoked_at
        with pytest.raises(InvalidKeyRequest):
            store.create("bad tenant!", "viewer")
        with pytest.raises(InvalidKeyRequest):
            store.create("acme", "root")  # type: ignore[arg-type]
    finally:
        store.close()
    # The rows survive a reopen (another process, the CLI).
    reopened = open_key_store(key_store_location)
    try:
        assert len(reopened.list_keys(include_revoked=True)) == 2
    finally:
        reopened.close()


def test_key_store_location_follows_the_task_database(tmp_path: Path) -> None:
    pg = "postgresql://db.internal/loomiq?schema=prod"
    assert Settings(database_url=pg).key_store_location == pg  # every server on the database shares the keys
    assert Settings(database_url=pg, keys_path=tmp_path / "k.db").key_store_location == tmp_path / "k.db"
    sqlite = Settings(database_url=f"sqlite:///{tmp_path / 'tasks.db'}")
    assert sqlite.key_store_location == sqlite.key_store_path == tmp_path / "loomiq-keys.db"


def test_an_unreachable_postgres_key_store_says_so() -> None:
    with pytest.raises(StoreUnavailable, match="cannot be reached"):
        PostgresKeyStore("postgresql://postgres@127.0.0.1:1/test", timeout_s=2)


class CountingStore(SQLiteKeyStore):
    """Counts lookups, to see the cache work."""

    lookups = 0

    def lookup(self, key_id: str):  # noqa: ANN201
        self.lookups += 1
        return super().lookup(key_id)


def test_verifier_caches_verified_keys_and_forgets_revoked_ones() -> None:
    store = CountingStore(":memory:")
    now = [0.0]
    verifier = KeyVerifier(store, ttl_s=30, clock=lambda: now[0])
    made = store.create("acme", "viewer")
    assert verifier.peek(made.secret) is None
    assert verifier.verify(made.secret) == made.key
    assert verifier.verify(made.secret) == made.key and verifier.peek(made.secret) == made.key
    assert store.lookups == 1
    assert verifier.verify(made.secret[:-1] + "Z") is None  # a near miss is not served from the cache
    now[0] = 31.0
    assert verifier.peek(made.secret) is None
    store.revoke(made.key.key_id)
    assert verifier.verify(made.secret) is None
    assert verifier.verify("not-a-key") is None
    store.close()


def test_no_auth_server_binds_to_loopback_only(tmp_path: Path) -> None:
    settings = Settings(auth_disabled=True, keys_path=tmp_path / "k.db")
    with pytest.raises(SettingsError, match="serves this machine only"):
        build_server("0.0.0.0", 8000, settings=settings)
    server = build_server("127.0.0.1", 0, settings=settings)
    assert server.config.host == "127.0.0.1"
    assert is_loopback_host("::1") and is_loopback_host("localhost") and not is_loopback_host("10.0.0.1")
    with pytest.raises(SettingsError, match="no JWT key configured"):
        build_server("0.0.0.0", 8000, settings=Settings(keys_path=tmp_path / "k.db"))


def test_public_names_are_exported() -> None:
    public = {n for n, v in vars(loomiq.api).items() if not n.startswith("_") and not isinstance(v, ModuleType)}
    assert set(loomiq.api.__all__) == public
