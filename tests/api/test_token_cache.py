"""The cache of verified JWTs: a hit skips the signature check, but never outlives the token's
``exp``, never serves an altered token, and stays within its size."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from loomiq.api import Settings
from loomiq.api.auth import TokenVerifier
from loomiq.api.problems import Problem

from .support import SECRET, token


def _verifier(size: int = 4096) -> tuple[TokenVerifier, list[str]]:
    """A verifier, and the tokens it checked the signature of (cache misses)."""
    verifier = TokenVerifier(Settings(jwt_secret=SECRET), cache_size=size)
    checked: list[str] = []
    decode = verifier._jwt.decode

    def counting(jwt_: str, *args: object, **kwargs: object) -> object:
        checked.append(jwt_)
        return decode(jwt_, *args, **kwargs)  # type: ignore[arg-type]

    verifier._jwt.decode = counting  # type: ignore[method-assign]
    return verifier, checked


def test_a_verified_token_is_served_from_the_cache() -> None:
    verifier, checked = _verifier()
    good = token("operator", "acme")
    first = verifier.verify(good)
    assert verifier.verify(good) == first
    assert first.tenant == "acme" and first.role == "operator"
    assert checked == [good]


def test_an_expired_token_is_refused_even_when_cached() -> None:
    verifier, checked = _verifier()
    exp = int(time.time()) + 1
    short = jwt.encode({"sub": "ann", "tenant": "acme", "role": "admin", "aud": "loomiq", "exp": exp}, SECRET,
                       algorithm="HS256")
    verifier.verify(short)
    verifier.verify(short)
    assert checked == [short]  # the second one came from the cache
    while time.time() < exp:
        time.sleep(0.05)
    with pytest.raises(Problem) as refused:
        verifier.verify(short)
    assert refused.value.status == 401 and "expired" in refused.value.detail
    with pytest.raises(Problem):
        verifier.verify(short)  # and again: an expired token does not go back into the cache
    assert len(checked) == 3


def _with_claims(good: str, **changes: object) -> str:
    head, payload, signature = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{head}.{forged}.{signature}"


def test_a_tampered_token_is_refused_although_the_original_is_cached() -> None:
    verifier, _ = _verifier()
    good = token("viewer", "acme")
    assert verifier.verify(good).role == "viewer"
    head, payload, signature = good.split(".")
    for forged in (
        _with_claims(good, role="admin"),
        _with_claims(good, tenant="globex"),
        f"{head}.{payload}.{signature[:-4]}{'AAAA' if signature[-4:] != 'AAAA' else 'BBBB'}",
    ):
        with pytest.raises(Problem) as refused:
            verifier.verify(forged)
        assert refused.value.status == 401
    assert verifier.verify(good).role == "viewer"


def test_the_cache_keeps_the_most_recently_used_tokens() -> None:
    verifier, checked = _verifier(size=2)
    a, b, c = (token("viewer", tenant) for tenant in ("t-a", "t-b", "t-c"))
    verifier.verify(a)
    verifier.verify(b)
    verifier.verify(a)  # a is now the most recent
    verifier.verify(c)  # evicts b
    assert checked == [a, b, c]
    verifier.verify(a)
    verifier.verify(c)
    assert checked == [a, b, c]
    verifier.verify(b)
    assert checked == [a, b, c, b]
