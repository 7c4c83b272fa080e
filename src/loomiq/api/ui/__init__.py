"""The dashboard at ``/ui``: server-rendered pages (Jinja2) refreshed in place with htmx, task text streamed with
Server-Sent Events, static files shipped in the package (no Node build). Sign-in takes a token or an API key and
gives the same roles and tenant as the API; every page shows the signed-in tenant's items only.
"""

from __future__ import annotations

from .routes import mount

__all__ = ["mount"]
