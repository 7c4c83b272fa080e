"""The switch that forbids real provider calls, so a test can never reach a paid API.

Real adapters call `check_model_request(provider, base_url)` before each request. While requests are
forbidden (the test suite switches them off in `conftest.py`, or `LOOMIQ_ALLOW_MODEL_REQUESTS=0`),
only servers on the loopback interface may be called: that is where the tests' wire-compatible
provider servers listen.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from .errors import ModelRequestsForbidden

_allowed = os.environ.get("LOOMIQ_ALLOW_MODEL_REQUESTS", "1").lower() not in ("0", "false", "no")


def model_requests_allowed() -> bool:
    """Whether requests to non-loopback providers are allowed right now."""
    return _allowed


def set_model_requests_allowed(allowed: bool) -> None:
    """Allow or forbid requests to non-loopback providers, process-wide."""
    global _allowed
    _allowed = allowed


@contextmanager
def allow_model_requests(allowed: bool) -> Iterator[None]:
    """Temporarily allow or forbid real provider requests."""
    before = _allowed
    set_model_requests_allowed(allowed)
    try:
        yield
    finally:
        set_model_requests_allowed(before)


def is_loopback(base_url: str | None) -> bool:
    """True when `base_url` points at this machine (127.0.0.0/8, ::1 or localhost)."""
    if not base_url:
        return False
    host = urlsplit(base_url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_model_request(provider: str, base_url: str | None) -> None:
    """Raise `ModelRequestsForbidden` if this request would reach a real provider while forbidden."""
    if not _allowed and not is_loopback(base_url):
        where = base_url or "the provider's default endpoint"
        raise ModelRequestsForbidden(
            f"real model requests are forbidden here (tests): {provider} call to {where} refused"
        )
