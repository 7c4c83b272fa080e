"""HTTP error statuses to `loomiq.models.errors`, the same for every adapter that speaks HTTP.

The SDKs raise their own status exceptions; each adapter takes the status, an already scrubbed
message and the response headers from them and lets `status_error` pick the loomiq error, so a 429
or a 503 means the same to retry and failover whichever provider sent it.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping

from .errors import AuthenticationFailed, BadRequest, ModelError, ModelTimeout, ProviderUnavailable, RateLimited


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from ``retry-after-ms``, or ``Retry-After`` as seconds or an HTTP date."""
    if not headers:
        return None
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) / scale)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - time.time())


def status_error(provider: str, status: int, message: str, headers: Mapping[str, str]) -> ModelError:
    """The `ModelError` for an HTTP error status; `message` must already be scrubbed of the key."""
    text = f"{provider} returned HTTP {status}: {message}"
    if status in (401, 403):
        return AuthenticationFailed(text, status=status)
    if status == 429:
        return RateLimited(text, status=status, retry_after=retry_after_seconds(headers))
    if status == 408:
        return ModelTimeout(text, status=status)
    if status >= 500:
        return ProviderUnavailable(text, status=status, retry_after=retry_after_seconds(headers))
    return BadRequest(text, status=status)
