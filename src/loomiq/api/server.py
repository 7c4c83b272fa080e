"""Running the service: `serve` (what ``loomiq serve`` calls) and `build_server`.

With auth disabled (``--no-auth``), the server binds to loopback only and says so: there is then no
credential between the network and the agents' provider keys.
"""

from __future__ import annotations

import ipaddress
import sys

import uvicorn
from fastapi import FastAPI

from .app import create_app
from .settings import Settings, SettingsError

LOOPBACK_NAMES = ("localhost",)


def is_loopback_host(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def build_server(
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    settings: Settings | None = None,
    app: FastAPI | None = None,
    log_level: str = "info",
) -> uvicorn.Server:
    """A configured, not yet started uvicorn server for the service.

    Raises `SettingsError` when the settings must not start a server (weak or missing JWT secret),
    or when auth is disabled and `host` is not a loopback address.
    """
    settings = settings or Settings.from_env()
    if settings.auth_disabled and not is_loopback_host(host):
        raise SettingsError(
            f"--no-auth serves this machine only: bind to 127.0.0.1, ::1 or localhost, not {host!r}; to serve "
            "the network, configure LOOMIQ_JWT_SECRET (or LOOMIQ_JWT_PUBLIC_KEY) and drop --no-auth"
        )
    settings.check()
    application = app or create_app(settings)
    config = uvicorn.Config(
        application, host=host, port=port, log_level=log_level, lifespan="on", server_header=False,
        timeout_graceful_shutdown=10,
    )
    return uvicorn.Server(config)


def serve(host: str = "127.0.0.1", port: int = 8000, no_auth: bool = False, *, settings: Settings | None = None,
          log_level: str = "info") -> None:
    """Run the service until interrupted (``loomiq serve``). Raises `SettingsError` (print its
    message and exit) when it must not start."""
    settings = settings or Settings.from_env()
    if no_auth:
        settings = settings.with_(auth_disabled=True)
    server = build_server(host, port, settings=settings, log_level=log_level)
    if settings.auth_disabled:
        sys.stderr.write(
            f"loomiq: authentication is OFF (--no-auth): serving http://{host}:{port} to this machine only; every "
            "request acts as admin of tenant 'default'\n"
        )
        sys.stderr.flush()
    server.run()
