"""Settings from the environment, the API-key store and verifier, the serve helper, and the public surface."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import httpx2
import pytest

import loomiq.api
from loomiq import Orchestrator
from loomiq.api import (
    InvalidKeyRequest,
    Settings,
    SettingsError,
    build_server,
    create_app,
    open_key_store,
)
from loomiq.api.keys import KeyVerifier, parse_key
from loomiq.api.server import is_loopback_host
from loomiq.api.settings import default_keys_path
from loomiq.engine import StoreUnavailable

from ..engine.conftest import database
from .support import SECRET, scripted_agents


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


async def test_key_store_create_list_revoke(key_store_location: str | Path) -> None:
    store = await open_key_store(key_store_location)
    try:
        made = await store.create("acme", "operator", "ci")
        assert parse_key(made.secret) is not None and parse_key(made.secret)[0] == made.key.key_id  # type: ignore[index]
        other = await store.create("globex", "viewer")
        assert [k.key_id for k in await store.list_keys("acme")] == [made.key.key_id]
        assert {k.key_id for k in await store.list_keys()} == {made.key.key_id, other.key.key_id}
        record, digest = await store.lookup(made.key.key_id)  # type: ignore[misc]
        assert record == made.key and digest.startswith("$argon2id$") and made.secret not in digest
        assert await store.revoke(made.key.key_id, tenant="globex") is False  # another tenant's key
        assert await store.revoke(made.key.key_id) is True
        assert await store.revoke(made.key.key_id) is False
        assert await store.list_keys("acme") == []
        assert (await store.list_keys("acme", include_revoked=True))[0].revoked_at
        with pytest.raises(InvalidKeyRequest):
            await store.create("bad tenant!", "viewer")
        with pytest.raises(InvalidKeyRequest):
            await store.create("acme", "root")  # type: ignore[arg-type]
    finally:
        await store.aclose()
    # The rows survive a reopen (another process, the CLI).
    reopened = await open_key_store(key_store_location)
    try:
        assert len(await reopened.list_keys(include_revoked=True)) == 2
    finally:
        await reopened.aclose()


def test_key_store_location_is_the_task_database(tmp_path: Path) -> None:
    pg = "postgresql://db.internal/loomiq?schema=prod"
    assert Settings(database_url=pg).key_store_location == pg  # every server on the database shares the keys
    assert Settings(database_url=pg, keys_path=tmp_path / "k.db").key_store_location == tmp_path / "k.db"
    sqlite = f"sqlite:///{tmp_path / 'tasks.db'}"
    assert Settings(database_url=sqlite).key_store_location == sqlite
    # (where an earlier loomiq kept them: imported from there)
    assert Settings(database_url=sqlite).key_store_path == tmp_path / "loomiq-keys.db"


async def test_an_unreachable_postgres_key_store_says_so() -> None:
    with pytest.raises(StoreUnavailable, match="cannot be reached"):
        await open_key_store("postgresql://postgres@127.0.0.1:1/test")


async def test_verifier_caches_the_hash_check_and_reads_revocation_on_every_request(tmp_path: Path) -> None:
    store = await open_key_store(tmp_path / "keys.db")
    other_process = await open_key_store(tmp_path / "keys.db")  # (another server, or the CLI)
    try:
        now = [0.0]
        verifier = KeyVerifier(store, ttl_s=30, clock=lambda: now[0])
        made = await store.create("acme", "viewer")
        assert await verifier.verify(made.secret) == made.key
        assert await verifier.verify(made.secret) == made.key
        assert verifier.hashes == 1  # the second request cost no argon2 verification
        assert await verifier.verify(made.secret[:-1] + "Z") is None  # a near miss is not served from the cache
        assert verifier.hashes == 2
        now[0] = 31.0
        assert await verifier.verify(made.secret) == made.key and verifier.hashes == 3  # past the cache's time
        # A revocation through another connection counts at the very next request, cache or not.
        assert await other_process.revoke(made.key.key_id)
        assert await verifier.verify(made.secret) is None
        assert await verifier.verify("not-a-key") is None
    finally:
        await other_process.aclose()
        await store.aclose()


async def test_keys_of_an_earlier_key_file_are_imported_once(tmp_path: Path) -> None:
    old = await open_key_store(tmp_path / "old.db")  # an api_keys table in a SQLite file
    made = await old.create("acme", "admin")
    await old.aclose()
    store = await open_key_store(tmp_path / "tasks.db")
    try:
        assert await store.import_file(tmp_path / "old.db") == 1
        assert await store.import_file(tmp_path / "old.db") == 0  # the second time, nothing new
        assert await store.import_file(tmp_path / "missing.db") == 0
        assert await KeyVerifier(store).verify(made.secret) == made.key
    finally:
        await store.aclose()


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


def _cli(cwd: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOMIQ_")}
    return subprocess.run([sys.executable, "-m", "loomiq.cli", "keys", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=60, env={**env, "LOOMIQ_DATABASE_URL": url})


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_a_key_revoked_with_the_cli_is_refused_by_a_running_server_at_the_next_request(
    kind: str, tmp_path: Path
) -> None:
    """Issue 10 item 3: `loomiq keys revoke` in another process took 30-40 s to reach a running server
    (its verified-key cache); now the next request is refused, whatever the cache's lifetime."""
    async with database(kind, tmp_path) as url:
        settings = Settings(jwt_secret=SECRET, database_url=url, key_cache_s=3600.0, rate_per_s=1000.0,
                            rate_burst=1000, worker_drain_s=0.5)
        app = create_app(settings, orchestrator=Orchestrator(scripted_agents()))
        async with app.router.lifespan_context(app):
            transport = httpx2.ASGITransport(app=app)
            async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as client:
                created = await asyncio.to_thread(_cli, tmp_path, url, "create", "--tenant", "acme", "--role",
                                                  "viewer", "--json")
                assert created.returncode == 0, created.stderr
                made = json.loads(created.stdout)
                auth = {"X-API-Key": made["key"]}
                for _ in range(2):  # verified, then served from the cache
                    assert (await client.get("/api/tasks", headers=auth)).status_code == 200
                revoked = await asyncio.to_thread(_cli, tmp_path, url, "revoke", made["key_id"])
                assert revoked.returncode == 0, revoked.stderr
                refused = await client.get("/api/tasks", headers=auth)
                assert refused.status_code == 401, refused.text
