"""The HTTP service's settings, read from the environment (``LOOMIQ_*``) or built in code.

`Settings.check()` is the start-up gate: a missing or weak JWT secret, an unreadable public key or an
algorithm list that mixes in ``none`` stops the server with one message that says what to set.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..engine import database_url

HMAC_ALGORITHMS = {"HS256": 32, "HS384": 48, "HS512": 64}
"""HMAC algorithms and the least secret length (bytes) each needs: its digest size (RFC 7518 §3.2)."""

PUBLIC_KEY_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
"""Asymmetric algorithms: tokens are verified with `Settings.jwt_public_key`."""

DEFAULT_KEYS_FILE = "loomiq-keys.db"


class SettingsError(ValueError):
    """The settings cannot start a server; the message says which variable to set, and how."""


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def default_keys_path(database_url: str | None, cwd: Path | None = None) -> Path:
    """Where the API-key store lives: next to the task database when that is a SQLite file,
    else in the working directory."""
    base = cwd or Path.cwd()
    if database_url and database_url.startswith("sqlite"):
        path = urlsplit(database_url).path
        # sqlite:///relative.db -> "/relative.db"; sqlite:////abs/x.db -> "//abs/x.db"
        path = path[1:] if path.startswith("/") else path
        if path and path != ":memory:":
            return (base / path).parent / DEFAULT_KEYS_FILE
    return base / DEFAULT_KEYS_FILE


def _read_public_key(value: str | None) -> str | None:
    if not value:
        return None
    if value.lstrip().startswith("-----BEGIN"):
        return value
    path = Path(value).expanduser()
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(
            f"LOOMIQ_JWT_PUBLIC_KEY: expected PEM text or a readable PEM file, but {value!r} cannot be "
            f"read ({exc.strerror})"
        ) from None


def _public_key_algorithm(pem: str) -> str:
    """The default algorithm for a PEM public key: RS256 (RSA), ES256 (EC P-256...), EdDSA."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(pem.encode())
    except ValueError:
        return "RS256"  # `check()` reports the unreadable key
    if isinstance(key, ec.EllipticCurvePublicKey):
        return {"secp384r1": "ES384", "secp521r1": "ES512"}.get(key.curve.name, "ES256")
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return "EdDSA"
    return "RS256"


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the HTTP service is configured with.

    Attributes:
        jwt_secret: HMAC secret for HS* tokens (at least the digest size: 32 bytes for HS256).
        jwt_public_key: PEM public key for RS*/PS*/ES*/EdDSA tokens.
        jwt_audience: the ``aud`` every token must carry.
        jwt_issuer: the ``iss`` every token must carry, when set.
        jwt_algorithms: accepted algorithms; empty means HS256 with a secret and RS256/ES256 with a
            public key.
        auth_disabled: local development only: every request acts as the admin of tenant
            ``default``, and only loopback clients are served.
        max_body_bytes: larger request bodies are refused with 413.
        rate_per_s: requests per second each tenant may make (token bucket refill rate).
        rate_burst: how many requests a tenant may make at once (bucket size).
        keys_path: a SQLite file to keep the API keys in (None: the task database; see
            `key_store_location`).
        config_path: the loomiq.yaml to load agents from (None: `$LOOMIQ_CONFIG` or ./loomiq.yaml).
        run_timeout_s: the longest an in-process run (``/v1/chat/completions``) may take.
        key_cache_s: how long a verified API key's secret is trusted without checking its hash again
            (a revocation counts at once all the same: every request reads the key's row).
        metrics_public: serve ``/metrics`` without credentials (for a Prometheus scraper).
        sse_ping_s: heartbeat interval of event streams.
        agent_admin_tenants: the deployment admins: admins of these tenants alone may change or remove
            the deployment's shared agents (loomiq.yaml); empty: nobody over the API.
        database_url: the task engine's database (None: the engine's default, ``sqlite:///loomiq.db``).
        tasks_enabled: serve ``/api/tasks`` (opens the task engine at start-up).
        embedded_workers: tasks this process runs at once with its own worker; 0 leaves every task to
            ``loomiq worker`` processes.
        worker_drain_s: at shutdown, how long the embedded worker lets its runs finish before handing
            them back to other workers.
        mcp_enabled: serve loomiq's MCP server at ``/mcp``.
        public_host: the host name (``name`` or ``name:port``) clients reach the server by; ``/mcp``
            accepts it in Host and Origin besides loopback (DNS-rebinding protection).
        mcp_allowed_hosts: more Host values ``/mcp`` accepts (``host:*`` for any port).
        mcp_allowed_origins: more Origin values ``/mcp`` accepts (``https://host:*`` for any port).
    """

    jwt_secret: str | None = None
    jwt_public_key: str | None = None
    jwt_audience: str = "loomiq"
    jwt_issuer: str | None = None
    jwt_algorithms: tuple[str, ...] = ()
    auth_disabled: bool = False
    max_body_bytes: int = 1024 * 1024
    rate_per_s: float = 20.0
    rate_burst: int = 40
    keys_path: Path | None = None
    config_path: Path | None = None
    run_timeout_s: float = 300.0
    key_cache_s: float = 30.0
    metrics_public: bool = True
    sse_ping_s: float = 15.0
    agent_admin_tenants: tuple[str, ...] = ()
    database_url: str | None = None
    tasks_enabled: bool = True
    embedded_workers: int = 2
    worker_drain_s: float = 10.0
    mcp_enabled: bool = True
    public_host: str | None = None
    mcp_allowed_hosts: tuple[str, ...] = ()
    mcp_allowed_origins: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``LOOMIQ_*`` variables; keyword arguments override them.

        Variables: LOOMIQ_JWT_SECRET, LOOMIQ_JWT_PUBLIC_KEY (PEM text or file), LOOMIQ_JWT_AUDIENCE,
        LOOMIQ_JWT_ISSUER, LOOMIQ_JWT_ALGORITHMS (comma list), LOOMIQ_NO_AUTH, LOOMIQ_MAX_BODY_BYTES,
        LOOMIQ_RATE_PER_S, LOOMIQ_RATE_BURST, LOOMIQ_KEYS_PATH, LOOMIQ_CONFIG, LOOMIQ_RUN_TIMEOUT_S,
        LOOMIQ_METRICS_PUBLIC, LOOMIQ_AGENT_ADMIN_TENANTS (comma list), LOOMIQ_DATABASE_URL (the task
        database; the key store sits next to it), LOOMIQ_TASKS (0 turns the task routes off),
        LOOMIQ_API_WORKERS (the embedded worker's concurrency; 0 for none), LOOMIQ_MCP (0 turns ``/mcp``
        off), LOOMIQ_PUBLIC_HOST (the host name clients use; allowed in ``/mcp``'s Host and Origin
        checks besides loopback), LOOMIQ_MCP_ALLOWED_HOSTS and LOOMIQ_MCP_ALLOWED_ORIGINS (comma lists;
        ``host:*`` matches any port).
        """
        env = os.environ if environ is None else environ

        def number(name: str, default: float, kind: type = float) -> Any:
            raw = env.get(name)
            if raw is None or not raw.strip():
                return default
            try:
                return kind(raw)
            except ValueError:
                raise SettingsError(f"{name}={raw!r} is not a {kind.__name__}") from None

        algorithms = tuple(a.strip() for a in env.get("LOOMIQ_JWT_ALGORITHMS", "").split(",") if a.strip())
        keys = env.get("LOOMIQ_KEYS_PATH")
        config = env.get("LOOMIQ_CONFIG")
        values: dict[str, Any] = {
            "jwt_secret": env.get("LOOMIQ_JWT_SECRET") or None,
            "jwt_public_key": _read_public_key(env.get("LOOMIQ_JWT_PUBLIC_KEY")),
            "jwt_audience": env.get("LOOMIQ_JWT_AUDIENCE") or "loomiq",
            "jwt_issuer": env.get("LOOMIQ_JWT_ISSUER") or None,
            "jwt_algorithms": algorithms,
            "auth_disabled": _flag(env.get("LOOMIQ_NO_AUTH")),
            "max_body_bytes": number("LOOMIQ_MAX_BODY_BYTES", 1024 * 1024, int),
            "rate_per_s": number("LOOMIQ_RATE_PER_S", 20.0),
            "rate_burst": number("LOOMIQ_RATE_BURST", 40, int),
            "keys_path": Path(keys) if keys else None,
            "config_path": Path(config) if config else None,
            "run_timeout_s": number("LOOMIQ_RUN_TIMEOUT_S", 300.0),
            "agent_admin_tenants": tuple(
                t.strip() for t in env.get("LOOMIQ_AGENT_ADMIN_TENANTS", "").split(",") if t.strip()
            ),
            "database_url": env.get("LOOMIQ_DATABASE_URL") or None,
            "tasks_enabled": env.get("LOOMIQ_TASKS", "1").strip().lower() not in ("0", "false", "no"),
            "embedded_workers": number("LOOMIQ_API_WORKERS", 2, int),
            "mcp_enabled": env.get("LOOMIQ_MCP", "1").strip().lower() not in ("0", "false", "no"),
            "public_host": env.get("LOOMIQ_PUBLIC_HOST", "").strip() or None,
            "mcp_allowed_hosts": tuple(h.strip() for h in env.get("LOOMIQ_MCP_ALLOWED_HOSTS", "").split(",")
                                       if h.strip()),
            "mcp_allowed_origins": tuple(o.strip() for o in env.get("LOOMIQ_MCP_ALLOWED_ORIGINS", "").split(",")
                                         if o.strip()),
            "metrics_public": env.get("LOOMIQ_METRICS_PUBLIC", "1").strip().lower() not in ("0", "false", "no"),
        }
        values.update(overrides)
        return cls(**values)

    def with_(self, **changes: Any) -> Settings:
        """A copy with some fields changed."""
        return replace(self, **changes)

    @property
    def key_store_path(self) -> Path:
        """`keys_path`, else where an earlier loomiq kept API keys beside a SQLite task database
        (`default_keys_path`; imported into the task database when a server or the CLI opens it)."""
        if self.keys_path is not None:
            return self.keys_path
        return default_keys_path(self.database_url or os.environ.get("LOOMIQ_DATABASE_URL"))

    @property
    def key_store_location(self) -> str | Path:
        """Where API keys are kept: `keys_path` when set; else the task database itself (shared by
        every server and CLI on it)."""
        if self.keys_path is not None:
            return self.keys_path
        return database_url(self.database_url)

    @property
    def algorithms(self) -> tuple[str, ...]:
        """The JWT algorithms accepted: the configured list, or the defaults for the keys given."""
        if self.jwt_algorithms:
            return self.jwt_algorithms
        defaults: list[str] = []
        if self.jwt_secret:
            defaults.append("HS256")
        if self.jwt_public_key:
            defaults.append(_public_key_algorithm(self.jwt_public_key))
        return tuple(defaults)

    def check(self) -> None:
        """Raise `SettingsError` when these settings must not start a server."""
        if self.max_body_bytes < 0:
            raise SettingsError(f"LOOMIQ_MAX_BODY_BYTES must be >= 0, not {self.max_body_bytes}")
        if self.embedded_workers < 0:
            raise SettingsError(f"LOOMIQ_API_WORKERS must be >= 0, not {self.embedded_workers}")
        if self.rate_per_s <= 0 or self.rate_burst < 1:
            raise SettingsError("LOOMIQ_RATE_PER_S must be > 0 and LOOMIQ_RATE_BURST >= 1")
        if self.auth_disabled:
            return
        if not self.jwt_secret and not self.jwt_public_key:
            raise SettingsError(
                "no JWT key configured: set LOOMIQ_JWT_SECRET to at least 32 random bytes (e.g. the output "
                "of `python -c \"import secrets; print(secrets.token_urlsafe(48))\"`) or LOOMIQ_JWT_PUBLIC_KEY "
                "to a PEM public key; for local use only, start with --no-auth (LOOMIQ_NO_AUTH=1)"
            )
        for alg in self.algorithms:
            if alg.lower() == "none":
                raise SettingsError("LOOMIQ_JWT_ALGORITHMS must not contain 'none': unsigned tokens are refused")
            if alg in HMAC_ALGORITHMS:
                self._check_secret(alg)
            elif alg in PUBLIC_KEY_ALGORITHMS:
                self._check_public_key(alg)
            else:
                known = ", ".join([*HMAC_ALGORITHMS, *sorted(PUBLIC_KEY_ALGORITHMS)])
                raise SettingsError(f"LOOMIQ_JWT_ALGORITHMS: unknown algorithm {alg!r} (known: {known})")

    def _check_secret(self, alg: str) -> None:
        need = HMAC_ALGORITHMS[alg]
        if not self.jwt_secret:
            raise SettingsError(f"LOOMIQ_JWT_ALGORITHMS has {alg} but LOOMIQ_JWT_SECRET is not set")
        size = len(self.jwt_secret.encode())
        if size < need:
            raise SettingsError(
                f"LOOMIQ_JWT_SECRET is too weak for {alg}: {size} bytes, at least {need} needed; generate one "
                "with `python -c \"import secrets; print(secrets.token_urlsafe(48))\"`"
            )
        if len(set(self.jwt_secret)) < 8:
            raise SettingsError(
                "LOOMIQ_JWT_SECRET is too weak: it repeats a handful of characters; use random bytes, e.g. "
                "`python -c \"import secrets; print(secrets.token_urlsafe(48))\"`"
            )

    def _check_public_key(self, alg: str) -> None:
        if not self.jwt_public_key:
            raise SettingsError(f"LOOMIQ_JWT_ALGORITHMS has {alg} but LOOMIQ_JWT_PUBLIC_KEY is not set")
        from jwt.algorithms import get_default_algorithms

        try:
            get_default_algorithms()[alg].prepare_key(self.jwt_public_key)
        except Exception as exc:  # the library raises several types for a bad or mismatched key
            raise SettingsError(
                f"LOOMIQ_JWT_PUBLIC_KEY cannot verify {alg} tokens: {exc}; give the PEM public key of the "
                "issuer, or set LOOMIQ_JWT_ALGORITHMS to the algorithms that key is for"
            ) from None
