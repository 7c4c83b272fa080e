"""Request limits: the body size limit (413) and each tenant's request rate (429).

The rate limiter is a token bucket per tenant, in this process's memory: a tenant that spends its
bucket waits for it to refill while every other tenant's requests go on untouched. Several server
processes each keep their own buckets, so the rate a tenant gets is per process.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .problems import Problem, problem_response


def body_too_large(limit: int) -> Problem:
    """The 413 problem for a body over `limit` bytes."""
    return Problem(
        413,
        f"The request body is larger than this server accepts ({limit} bytes). Send a smaller body; an operator "
        "can raise the limit with LOOMIQ_MAX_BODY_BYTES.",
        limit_bytes=limit,
    )


class BodyTooLarge(HTTPException):
    """Raised from a body read that passed the limit; an `HTTPException` so that FastAPI's body
    parsing lets it through (it turns other read errors into a 400), answered as a 413 problem."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, body_too_large(limit).detail)


class BodyLimitMiddleware:
    """Refuses request bodies over `max_bytes` with a 413 problem.

    A declared ``Content-Length`` over the limit is refused before the app runs; a chunked body is
    counted as it is read, and the app's read fails with the same problem once it passes the limit.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > limit:
                    path = scope.get("path", "")
                    await problem_response(body_too_large(limit), path)(scope, receive, send)
                    return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, counted, send)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class TenantRateLimiter:
    """A token bucket per tenant: `rate_per_s` refill, `burst` capacity.

    `acquire(tenant)` returns 0.0 when the request may go ahead, else the seconds until it could.
    Pure bookkeeping over a clock, so it is tested without waiting.
    """

    max_tenants = 10_000
    """Bound on tracked buckets; idle (full) buckets are dropped past it, costing nothing."""

    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be > 0 and burst >= 1")
        self.rate = rate_per_s
        self.burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def acquire(self, tenant: str) -> float:
        """Take one token from `tenant`'s bucket; 0.0 if taken, else the wait in seconds."""
        now = self._clock()
        bucket = self._buckets.get(tenant)
        if bucket is None:
            if len(self._buckets) >= self.max_tenants:
                self._evict(now)
            bucket = self._buckets[tenant] = _Bucket(self.burst, now)
        else:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    def check(self, tenant: str, who: str | None = None) -> None:
        """Raise a 429 problem with ``Retry-After`` when `tenant` (or any other bucket key; `who` names
        it in the message) is over its rate."""
        wait = self.acquire(tenant)
        if wait > 0:
            retry_after = max(1, math.ceil(wait))
            raise Problem(
                429,
                f"{who or f'Tenant {tenant!r}'} is over its request rate ({self.rate:g} requests/s, bursts of "
                f"{self.burst:g}). Retry after {retry_after} s.",
                headers={"Retry-After": str(retry_after)},
                retry_after_s=retry_after,
            )

    def _evict(self, now: float) -> None:
        full = [t for t, b in self._buckets.items() if b.tokens + (now - b.updated) * self.rate >= self.burst]
        for tenant in full or list(self._buckets)[: len(self._buckets) // 2]:
            del self._buckets[tenant]
