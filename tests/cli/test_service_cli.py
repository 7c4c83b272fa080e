"""`loomiq token` and `loomiq keys`: credentials for the service, from the command line."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import jwt
import pytest

from loomiq.api import Settings, open_key_store
from loomiq.api.auth import TokenVerifier

SECRET = "k" * 8 + "S3cr3t-for-tests-only-0123456789abcdef"


def loomiq(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LOOMIQ_")}
    return subprocess.run(
        [sys.executable, "-m", "loomiq.cli", *args], cwd=cwd, env={**clean, **env},
        capture_output=True, text=True, timeout=60,
    )


def test_token_is_signed_and_verifiable(tmp_path: Path) -> None:
    done = loomiq(tmp_path, "token", "--tenant", "acme", "--role", "operator", LOOMIQ_JWT_SECRET=SECRET)
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip().splitlines()[-1]
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], audience="loomiq")
    assert (claims["tenant"], claims["role"]) == ("acme", "operator")
    verifier = TokenVerifier(Settings.from_env({"LOOMIQ_JWT_SECRET": SECRET}))
    principal = verifier.verify(token)
    assert (principal.tenant, principal.role) == ("acme", "operator")


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (("--tenant", "acme", "--role", "admin"), {}, "LOOMIQ_JWT_SECRET is not set"),
        (("--tenant", "acme", "--role", "root"), {"LOOMIQ_JWT_SECRET": SECRET}, "bad role 'root'"),
        (("--tenant", "acme", "--role", "admin"), {"LOOMIQ_JWT_SECRET": "short"}, "LOOMIQ_JWT_SECRET"),
        (("--tenant", "acme", "--role", "admin", "--ttl", "0"), {"LOOMIQ_JWT_SECRET": SECRET},
         "--ttl must be a positive number of seconds, not 0"),
        (("--tenant", "acme", "--role", "admin", "--ttl", "-5"), {"LOOMIQ_JWT_SECRET": SECRET},
         "--ttl must be a positive number of seconds, not -5"),
    ],
)
def test_token_errors_are_one_line(tmp_path: Path, args: tuple[str, ...], env: dict[str, str], message: str) -> None:
    done = loomiq(tmp_path, "token", *args, **env)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("loomiq: error: ") and message in lines[0]
    assert SECRET not in done.stderr


def test_keys_create_list_revoke(tmp_path: Path) -> None:
    created = loomiq(tmp_path, "keys", "create", "--tenant", "acme", "--role", "viewer", "--name", "ci", "--json")
    assert created.returncode == 0, created.stderr
    record = json.loads(created.stdout)
    assert record["key"].startswith(f"lq_{record['key_id']}_") and record["active"]
    listed = json.loads(loomiq(tmp_path, "keys", "list", "--json").stdout)
    assert [k["key_id"] for k in listed] == [record["key_id"]]
    assert "key" not in listed[0]  # secrets are never listed
    async def lookup() -> tuple[object, str] | None:
        store = await open_key_store(tmp_path / "loomiq.db")  # the task database (LOOMIQ_DATABASE_URL's default)
        try:
            return await store.lookup(record["key_id"])
        finally:
            await store.aclose()

    found = asyncio.run(lookup())
    assert found is not None and record["key"] not in found[1]  # stored hashed, not in clear
    assert loomiq(tmp_path, "keys", "revoke", record["key_id"]).returncode == 0
    assert json.loads(loomiq(tmp_path, "keys", "list", "--json").stdout) == []
    again = loomiq(tmp_path, "keys", "revoke", record["key_id"])
    assert again.returncode == 2 and "no active key" in again.stderr


def test_serve_refuses_to_start_without_a_key(tmp_path: Path) -> None:
    done = loomiq(tmp_path, "serve", "--port", "1")
    assert done.returncode == 2
    assert "LOOMIQ_JWT_SECRET" in done.stderr and len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("port", ["70000", "0", "-1", "65536", str(2**63), str(10**23)])
def test_serve_refuses_a_port_outside_1_to_65535_before_binding(tmp_path: Path, port: str) -> None:
    # 70000 used to print "serving on :70000" and listen on 4464 (70000 mod 65536).
    done = loomiq(tmp_path, "serve", "--no-auth", "--port", port)
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("loomiq: error: "), done.stderr
    assert "--port must be a TCP port from 1 to 65535" in lines[0] and port in lines[0]


def test_build_server_checks_the_port(tmp_path: Path) -> None:
    from loomiq.api import SettingsError, build_server

    settings = Settings(auth_disabled=True, keys_path=tmp_path / "k.db")
    for bad in (-1, 65536, 70000, 2**63, True):
        with pytest.raises(SettingsError, match="port must be a TCP port from 0 to 65535"):
            build_server("127.0.0.1", bad, settings=settings)  # type: ignore[arg-type]
    assert build_server("127.0.0.1", 0, settings=settings).config.port == 0  # 0: any free port
