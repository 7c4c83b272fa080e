"""The dashboard's session: a signed, HttpOnly, SameSite=Strict cookie holding the credential the user signed in
with (a token or an API key, checked again on every request, so revocation and expiry apply at once) and a
CSRF token that every form and htmx request must send back."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

COOKIE = "loomiq_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
MAX_AGE_S = 12 * 3600


@dataclass(frozen=True, slots=True)
class Session:
    kind: str
    """``key`` (an API key) or ``jwt`` (a token); ``none`` on a server without authentication."""
    credential: str
    csrf: str
    expires_at: float


class SessionCodec:
    """Signs and reads session cookies with a key derived from the JWT secret (so every server process of a
    deployment reads the others' cookies), else a random key of this process (sessions end at restart)."""

    def __init__(self, secret: str | None) -> None:
        base = secret.encode() if secret else secrets.token_bytes(32)
        self._key = hmac.new(base, b"loomiq-dashboard-session-v1", hashlib.sha256).digest()

    def _sign(self, payload: bytes) -> str:
        return base64.urlsafe_b64encode(hmac.new(self._key, payload, hashlib.sha256).digest()).decode().rstrip("=")

    def encode(self, session: Session) -> str:
        payload = base64.urlsafe_b64encode(json.dumps(
            [session.kind, session.credential, session.csrf, session.expires_at]).encode()).decode().rstrip("=")
        return f"{payload}.{self._sign(payload.encode())}"

    def decode(self, cookie: str | None) -> Session | None:
        """The session in a cookie, or None when it is missing, forged, malformed or expired."""
        if not cookie or "." not in cookie or len(cookie) > 8192:
            return None
        payload, signature = cookie.rsplit(".", 1)
        if not hmac.compare_digest(signature, self._sign(payload.encode())):
            return None
        try:
            kind, credential, csrf, expires = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except (ValueError, TypeError):
            return None
        if not isinstance(expires, int | float) or expires < time.time():
            return None
        return Session(str(kind), str(credential), str(csrf), float(expires))

    @staticmethod
    def new(kind: str, credential: str) -> Session:
        return Session(kind, credential, secrets.token_urlsafe(24), time.time() + MAX_AGE_S)
