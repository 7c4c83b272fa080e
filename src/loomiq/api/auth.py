"""Who is calling: roles, the `Principal` a request acts as, and JWT issue and verification.

Tokens carry ``sub`` (who), ``tenant`` (whose data), ``role`` (``admin``, ``operator`` or ``viewer``),
``aud`` and ``exp``. Verification accepts only the configured algorithms with the key meant for them
(an HS* token is checked with the secret, an RS*/ES* token with the public key), so ``alg: none`` and
algorithm-confusion tokens are refused like expired, tampered or wrong-audience ones: 401.

A verified token is remembered (keyed by the token's text, a bounded LRU) until its ``exp``, so a
client sending the same token again costs a dict lookup instead of a signature check. Only tokens
that verified are remembered: an altered token is another text and is verified (and refused) every
time, and a remembered one is refused from the second its ``exp`` passes, as PyJWT would. JWTs have
no revocation here; API keys, which do, are never in this cache (see `keys.KeyVerifier`: every
request reads its key's row, so a key revoked anywhere is refused at the next request).
"""

from __future__ import annotations

import re
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Literal, get_args

import jwt

from .problems import Problem
from .settings import HMAC_ALGORITHMS, Settings, SettingsError

Role = Literal["admin", "operator", "viewer"]
ROLES: tuple[Role, ...] = get_args(Role)
TENANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
"""A tenant id: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit."""
_RANK: dict[str, int] = {"viewer": 0, "operator": 1, "admin": 2}

WHAT_ROLES_DO = "admin: everything; operator: submit, cancel and read; viewer: read"


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of a request: who, in which tenant, with which role, and how it authenticated."""

    subject: str
    tenant: str
    role: Role
    via: Literal["jwt", "api_key", "none"]
    key_id: str | None = None

    def can(self, role: Role) -> bool:
        """True when this principal's role includes `role` (admin > operator > viewer)."""
        return _RANK[self.role] >= _RANK[role]

    def require(self, role: Role, action: str) -> None:
        """Raise a 403 problem unless this principal has at least `role`."""
        if not self.can(role):
            raise Problem(
                403,
                f"{action} needs the {role} role; this {self.via.replace('_', ' ')} has the {self.role} role "
                f"({WHAT_ROLES_DO}). Ask an admin of tenant {self.tenant!r} for a credential with that role.",
                required_role=role,
            )


LOCAL_PRINCIPAL = Principal("local", "default", "admin", "none")
"""Who every request acts as when auth is disabled (``--no-auth``)."""


def unauthenticated(detail: str) -> Problem:
    """A 401 problem with the ``WWW-Authenticate`` challenge."""
    return Problem(
        401,
        detail,
        headers={"WWW-Authenticate": 'Bearer realm="loomiq"'},
    )


class TokenVerifier:
    """Verifies bearer JWTs against the settings' keys, audience and algorithms, and remembers up to
    `cache_size` verified tokens until their ``exp`` (see the module docstring)."""

    def __init__(self, settings: Settings, cache_size: int = 4096) -> None:
        self.settings = settings
        self._hmac = [a for a in settings.algorithms if a in HMAC_ALGORITHMS]
        self._public = [a for a in settings.algorithms if a not in HMAC_ALGORITHMS]
        self._jwt = jwt.PyJWT(options={"require": ["exp", "sub", "aud", "tenant", "role"]})
        self.cache_size = cache_size
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        """token -> (principal, exp): verified tokens, least recently used first."""

    def verify(self, token: str) -> Principal:
        """The principal `token` stands for. Raises a 401 `Problem` saying what is wrong with it."""
        cached = self._verified.get(token)
        if cached is not None:
            if time.time() < cached[1]:  # PyJWT's test: expired once exp <= now
                self._verified.move_to_end(token)
                return cached[0]
            del self._verified[token]  # expired: verified again below, which refuses it
        principal, claims = self._verify(token)
        exp = claims["exp"]
        if self.cache_size > 0 and isinstance(exp, int | float):
            self._verified[token] = (principal, float(exp))
            if len(self._verified) > self.cache_size:
                self._verified.popitem(last=False)
        return principal

    def _verify(self, token: str) -> tuple[Principal, dict[str, Any]]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise unauthenticated("The bearer token is not a JWT (nor an lq_ API key). Send a token from "
                                  "`loomiq token` or an API key.") from None
        alg = header.get("alg")
        if alg in self._hmac:
            key: Any = self.settings.jwt_secret
            algorithms = self._hmac
        elif alg in self._public:
            key = self.settings.jwt_public_key
            algorithms = self._public
        else:
            accepted = ", ".join(self.settings.algorithms) or "none configured"
            raise unauthenticated(f"The token's algorithm {alg!r} is not accepted here (accepted: {accepted}).")
        try:
            claims = self._jwt.decode(
                token, key, algorithms=algorithms, audience=self.settings.jwt_audience, issuer=self.settings.jwt_issuer
            )
        except jwt.ExpiredSignatureError:
            raise unauthenticated("The token has expired. Get a new one (`loomiq token`).") from None
        except jwt.InvalidAudienceError:
            raise unauthenticated(
                f"The token is for another audience; this server accepts aud={self.settings.jwt_audience!r}."
            ) from None
        except jwt.InvalidSignatureError:
            raise unauthenticated("The token's signature does not verify: it was altered or signed with "
                                  "another key.") from None
        except jwt.MissingRequiredClaimError as exc:
            raise unauthenticated(f"The token lacks the {exc.claim!r} claim.") from None
        except jwt.PyJWTError as exc:
            raise unauthenticated(f"The token is invalid: {exc}.") from None
        return principal_from_claims(claims), claims


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    """A principal from verified claims. Raises a 401 problem for a bad ``role`` or ``tenant``."""
    role, tenant, subject = claims.get("role"), claims.get("tenant"), claims.get("sub")
    if role not in ROLES:
        raise unauthenticated(f"The token's role {role!r} is not one of {', '.join(ROLES)}.")
    if not isinstance(tenant, str) or not TENANT_RE.match(tenant):
        raise unauthenticated(f"The token's tenant {tenant!r} is not a valid tenant id.")
    if not isinstance(subject, str) or not subject:
        raise unauthenticated("The token's subject ('sub') is empty.")
    return Principal(subject, tenant, role, "jwt")


def issue_token(
    tenant: str,
    role: Role,
    *,
    subject: str | None = None,
    ttl_s: float = 3600.0,
    settings: Settings | None = None,
    private_key: str | None = None,
    algorithm: str | None = None,
    now: float | None = None,
) -> str:
    """A signed JWT for `tenant` with `role`, valid for `ttl_s` seconds (``loomiq token``).

    Signs with the settings' HMAC secret (HS256 by default), or with `private_key` (PEM) and an
    asymmetric `algorithm` such as RS256. `settings` defaults to the environment's.
    """
    settings = settings or Settings.from_env()
    if role not in ROLES:
        raise ValueError(f"bad role {role!r} (choose from {', '.join(ROLES)})")
    if not TENANT_RE.match(tenant):
        raise ValueError(f"bad tenant {tenant!r}: use 1-64 letters, digits, '.', '_' or '-'")
    if not 0 < ttl_s < float("inf"):
        raise ValueError(f"ttl_s must be a positive number of seconds, not {ttl_s!r}")
    issued = time.time() if now is None else now
    claims: dict[str, Any] = {
        "sub": subject or f"{role}@{tenant}",
        "tenant": tenant,
        "role": role,
        "aud": settings.jwt_audience,
        "iat": int(issued),
        "exp": int(issued + ttl_s),
        "jti": uuid.uuid4().hex,
    }
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if private_key is not None:
        return jwt.encode(claims, private_key, algorithm=algorithm or "RS256")
    if not settings.jwt_secret:
        raise SettingsError("LOOMIQ_JWT_SECRET is not set: no key to sign the token with")
    hmac_alg = algorithm or next((a for a in settings.algorithms if a in HMAC_ALGORITHMS), "HS256")
    settings.with_(jwt_algorithms=(hmac_alg,)).check()
    return jwt.encode(claims, settings.jwt_secret, algorithm=hmac_alg)
