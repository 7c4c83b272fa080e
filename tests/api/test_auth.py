"""Authentication and authorisation: JWTs, API keys, roles, and the start-up gate on secrets."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path

import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import FastAPI

from loomiq.api import Settings, SettingsError, create_app, issue_token
from loomiq.api.auth import Principal

from .support import SECRET, bearer, scripted_agents, serving, token
from .test_problems import assert_problem


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(**overrides: object) -> dict:
    now = int(time.time())
    return {"sub": "ann", "tenant": "acme", "role": "admin", "aud": "loomiq", "exp": now + 600, **overrides}


def _unsigned() -> str:
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims())}."


def _tampered() -> str:
    head, payload, signature = token("viewer").split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["role"] = "admin"
    return f"{head}.{_b64(claims)}.{signature}"


BAD_TOKENS = {
    "expired": lambda: jwt.encode(_claims(exp=int(time.time()) - 5), SECRET, algorithm="HS256"),
    "tampered": _tampered,
    "alg none": _unsigned,
    "wrong audience": lambda: jwt.encode(_claims(aud="someone-else"), SECRET, algorithm="HS256"),
    "other secret": lambda: jwt.encode(_claims(), "x" * 10 + SECRET, algorithm="HS256"),
    "no tenant": lambda: jwt.encode({k: v for k, v in _claims().items() if k != "tenant"}, SECRET, algorithm="HS256"),
    "unknown role": lambda: jwt.encode(_claims(role="root"), SECRET, algorithm="HS256"),
    "HS512 not accepted": lambda: jwt.encode(_claims(), SECRET * 2, algorithm="HS512"),
    "not a jwt": lambda: "hello",
}


@pytest.mark.parametrize("kind", list(BAD_TOKENS))
async def test_bad_tokens_are_refused_with_401(client: httpx2.AsyncClient, kind: str) -> None:
    response = await client.get("/api/agents", headers={"Authorization": f"Bearer {BAD_TOKENS[kind]()}"})
    assert_problem(response, 401, "unauthenticated")


async def test_expired_and_wrong_audience_say_so(client: httpx2.AsyncClient) -> None:
    expired = await client.get("/api/agents", headers={"Authorization": f"Bearer {BAD_TOKENS['expired']()}"})
    assert "expired" in expired.json()["detail"]
    other = await client.get("/api/agents", headers={"Authorization": f"Bearer {BAD_TOKENS['wrong audience']()}"})
    assert "aud='loomiq'" in other.json()["detail"]


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Token abc"])
async def test_other_schemes_are_refused(client: httpx2.AsyncClient, header: str) -> None:
    assert_problem(await client.get("/api/agents", headers={"Authorization": header}), 401, "unauthenticated")


ROLE_MATRIX = [
    # (method, path, json, minimal role)
    ("GET", "/api/agents", None, "viewer"),
    ("GET", "/v1/models", None, "viewer"),
    ("POST", "/v1/chat/completions", {"model": "analyst", "messages": [{"role": "user", "content": "hi"}]}, "operator"),
    ("PATCH", "/api/agents/analyst", {"name": "A"}, "admin"),
    ("POST", "/api/keys", {"role": "viewer"}, "admin"),
    ("GET", "/api/keys", None, "admin"),
]


@pytest.mark.parametrize(("method", "path", "body", "needed"), ROLE_MATRIX)
@pytest.mark.parametrize("role", ["viewer", "operator", "admin"])
async def test_roles(client: httpx2.AsyncClient, method: str, path: str, body: dict | None, needed: str,
                     role: str) -> None:
    rank = ["viewer", "operator", "admin"]
    response = await client.request(method, path, json=body, headers=bearer(role))  # type: ignore[arg-type]
    if rank.index(role) >= rank.index(needed):
        assert response.status_code < 300, response.text
    else:
        problem = assert_problem(response, 403, "forbidden")
        assert f"needs the {needed} role" in problem["detail"]
        assert problem["required_role"] == needed


async def test_api_key_lifecycle(client: httpx2.AsyncClient) -> None:
    created = await client.post("/api/keys", json={"role": "operator", "name": "ci"})
    assert created.status_code == 201
    key = created.json()
    assert key["key"].startswith(f"lq_{key['key_id']}_")
    assert created.headers["location"] == f"/api/keys/{key['key_id']}"

    for headers in ({"X-API-Key": key["key"]}, {"Authorization": f"Bearer {key['key']}"}):
        response = await client.get("/api/agents", headers=headers)
        assert response.status_code == 200, response.text
    # An operator key cannot manage keys.
    assert_problem(await client.get("/api/keys", headers={"X-API-Key": key["key"]}), 403, "forbidden")

    listed = (await client.get("/api/keys")).json()["keys"]
    assert [k["key_id"] for k in listed] == [key["key_id"]]
    assert "key" not in listed[0] and "secret_hash" not in listed[0]

    assert (await client.delete(f"/api/keys/{key['key_id']}")).status_code == 204
    assert_problem(await client.get("/api/agents", headers={"X-API-Key": key["key"]}), 401, "unauthenticated")
    assert_problem(await client.delete(f"/api/keys/{key['key_id']}"), 404, "not-found")
    assert (await client.get("/api/keys", params={"include_revoked": True})).json()["keys"][0]["active"] is False


async def test_wrong_key_secret_and_unknown_key_are_refused(client: httpx2.AsyncClient) -> None:
    key = (await client.post("/api/keys", json={"role": "viewer"})).json()["key"]
    wrong = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    assert_problem(await client.get("/api/agents", headers={"X-API-Key": wrong}), 401, "unauthenticated")
    assert_problem(await client.get("/api/agents", headers={"X-API-Key": "lq_000000000000_" + "x" * 43}), 401,
                   "unauthenticated")


async def test_keys_are_scoped_to_the_tenant(client: httpx2.AsyncClient) -> None:
    mine = (await client.post("/api/keys", json={"role": "viewer"})).json()
    other = bearer("admin", tenant="globex")
    assert (await client.get("/api/keys", headers=other)).json()["keys"] == []
    assert_problem(await client.delete(f"/api/keys/{mine['key_id']}", headers=other), 404, "not-found")
    response = await client.get("/api/agents", headers={"X-API-Key": mine["key"]})
    assert response.status_code == 200


def test_missing_or_weak_secret_stops_the_app(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="no JWT key configured"):
        create_app(Settings(keys_path=tmp_path / "k.db"))
    with pytest.raises(SettingsError, match="too weak for HS256: 11 bytes"):
        create_app(Settings(jwt_secret="short-bytes", keys_path=tmp_path / "k.db"))
    with pytest.raises(SettingsError, match="repeats"):
        create_app(Settings(jwt_secret="a" * 40, keys_path=tmp_path / "k.db"))
    with pytest.raises(SettingsError, match="must not contain 'none'"):
        create_app(Settings(jwt_secret=SECRET, jwt_algorithms=("HS256", "none")))
    with pytest.raises(SettingsError, match="LOOMIQ_JWT_PUBLIC_KEY is not set"):
        create_app(Settings(jwt_secret=SECRET, jwt_algorithms=("RS256",)))


def _pem(private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> tuple[str, str]:
    private = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    return private, public


@pytest.mark.parametrize(
    ("algorithm", "make_key"),
    [
        ("RS256", lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        ("ES256", lambda: ec.generate_private_key(ec.SECP256R1())),
    ],
)
async def test_public_key_tokens(tmp_path: Path, algorithm: str, make_key) -> None:  # noqa: ANN001
    from loomiq import Orchestrator

    private, public = _pem(make_key())
    settings = Settings(jwt_public_key=public, keys_path=tmp_path / "k.db", tasks_enabled=False)
    assert settings.algorithms == (algorithm,)
    app = create_app(settings, orchestrator=Orchestrator(scripted_agents()))
    good = issue_token("acme", "viewer", settings=settings, private_key=private, algorithm=algorithm)
    # Algorithm confusion: an HS256 token "signed" with the public key must not pass.
    signing_input = f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}.{_b64(_claims())}"
    mac = hmac.new(public.encode(), signing_input.encode(), hashlib.sha256).digest()
    confused = f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    async with serving(app) as client:
        assert (await client.get("/api/agents", headers={"Authorization": f"Bearer {good}"})).status_code == 200
        refused = await client.get("/api/agents", headers={"Authorization": f"Bearer {confused}"})
        assert_problem(refused, 401, "unauthenticated")


async def test_no_auth_mode_acts_as_local_admin_for_loopback_only(tmp_path: Path) -> None:
    from loomiq import Orchestrator

    app = create_app(Settings(auth_disabled=True, keys_path=tmp_path / "k.db", tasks_enabled=False),
                     orchestrator=Orchestrator(scripted_agents()))
    async with app.router.lifespan_context(app):
        local = httpx2.ASGITransport(app=app, client=("127.0.0.1", 5000))
        async with httpx2.AsyncClient(transport=local, base_url="http://t") as client:
            assert (await client.post("/api/keys", json={})).status_code == 201
        local6 = httpx2.ASGITransport(app=app, client=("::1", 5000))
        async with httpx2.AsyncClient(transport=local6, base_url="http://t") as client:
            assert (await client.get("/api/agents")).status_code == 200
        # Only addresses count: Starlette's TestClient reports the name "testclient", which production
        # code must not know about (nor any other name).
        for remote_host in ("203.0.113.9", "testclient", "localhost.example", ""):
            remote = httpx2.ASGITransport(app=app, client=(remote_host, 5000))
            async with httpx2.AsyncClient(transport=remote, base_url="http://t") as client:
                assert_problem(await client.get("/api/agents"), 403, "forbidden")


def test_issue_token_claims() -> None:
    settings = Settings(jwt_secret=SECRET, jwt_issuer="loomiq-test")
    raw = issue_token("acme", "operator", subject="ci-bot", ttl_s=60, settings=settings, now=1_000_000)
    claims = jwt.decode(raw, SECRET, algorithms=["HS256"], audience="loomiq", options={"verify_exp": False})
    assert {k: claims[k] for k in ("sub", "tenant", "role", "aud", "iss", "iat", "exp")} == {
        "sub": "ci-bot", "tenant": "acme", "role": "operator", "aud": "loomiq", "iss": "loomiq-test",
        "iat": 1_000_000, "exp": 1_000_060,
    }
    with pytest.raises(ValueError, match="bad role"):
        issue_token("acme", "root", settings=settings)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bad tenant"):
        issue_token("acme corp", "viewer", settings=settings)
    with pytest.raises(SettingsError):
        issue_token("acme", "viewer", settings=Settings(jwt_secret="weak"))


def test_principal_roles_are_ordered() -> None:
    operator = Principal("u", "t", "operator", "jwt")
    assert operator.can("viewer") and operator.can("operator") and not operator.can("admin")


async def test_app_before_start_answers_503(settings: Settings) -> None:
    app: FastAPI = create_app(settings)
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://t") as client:
        assert_problem(await client.get("/api/ready"), 503, "unavailable")
