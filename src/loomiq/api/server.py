"""Running the service: `serve` (what ``loomiq serve`` calls) and `build_server`.

With auth disabled (``--no-auth``), the server binds to loopback only and says so: there is then no
credential between the network and the agents' provider keys.

Once started, the server tunes the garbage collector (`tune_gc`): what start-up built (modules,
routes, pydantic models, agents: ~75,000 objects) is frozen out of the collector's sight, and the
young generation is collected every 20,000 net allocations instead of 700. Without it, full
collections of a busy server stopped the event loop for 0.2-0.4 s, a stall for every open stream
(docs/benchmarks.md, "HTTP service").
"""

from __future__ import annotations

import gc
import ipaddress
import socket
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


def check_port(port: object, name: str = "--port", *, any_free: bool = False) -> int:
    """`port` as a TCP port number, or `SettingsError` naming `name` (the flag or variable it came
    from). Ports are 1-65535; with `any_free`, 0 is allowed too (the system picks a free port).
    Checked before binding: the OS would otherwise take the number modulo 65536 (70000 -> 4464)."""
    low = 0 if any_free else 1
    if isinstance(port, bool) or not isinstance(port, int) or not low <= port <= 65535:
        raise SettingsError(f"{name} must be a TCP port from {low} to 65535, not {port!r}")
    return port


GC_THRESHOLDS = (20_000, 20, 20)
"""`gc.set_threshold` of a started server (Python's default: 700, 10, 10)."""


def tune_gc() -> None:
    """Collect once, freeze what survives (the collector never traverses it again; objects freed
    by reference counting are still freed) and raise the collection thresholds to `GC_THRESHOLDS`.
    Process-wide: a server calls it once started; an embedding process may prefer not to."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


class LoomiqServer(uvicorn.Server):
    """uvicorn's server, tuning the garbage collector once the app has started (see `tune_gc`)."""

    def __init__(self, config: uvicorn.Config, *, gc_tuning: bool = True) -> None:
        super().__init__(config)
        self.gc_tuning = gc_tuning

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start the app and listen; then tune the collector (start-up objects are built by now)."""
        await super().startup(sockets=sockets)
        if self.gc_tuning and not self.should_exit:
            tune_gc()


def build_server(
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    settings: Settings | None = None,
    app: FastAPI | None = None,
    log_level: str = "info",
    gc_tuning: bool = True,
) -> LoomiqServer:
    """A configured, not yet started uvicorn server for the service.

    `gc_tuning`: once started, call `tune_gc` (process-wide; pass False when the server runs
    inside a process that has other work, such as a test suite).

    `port` 0 lets the system pick a free port (read it from the started server's sockets).

    Raises `SettingsError` when the settings must not start a server (weak or missing JWT secret),
    when `port` is not 0-65535, or when auth is disabled and `host` is not a loopback address.
    """
    check_port(port, "port", any_free=True)
    settings = settings or Settings.from_env()
    if settings.auth_disabled and not is_loopback_host(host):
        raise SettingsError(
            f"--no-auth serves this machine only: bind to 127.0.0.1, ::1 or localhost, not {host!r}; to serve "
            "the network, configure LOOMIQ_JWT_SECRET (or LOOMIQ_JWT_PUBLIC_KEY) and drop --no-auth"
        )
    settings.check()
    application = app or create_app(settings)
    config = uvicorn.Config(
        # log_config None: uvicorn's loggers go through the root logger, as `loomiq.observe.configure_logging`
        # set it up (JSON or text lines), instead of uvicorn's own formatters.
        application, host=host, port=port, log_level=log_level, log_config=None, lifespan="on", server_header=False,
        timeout_graceful_shutdown=10,
    )
    return LoomiqServer(config, gc_tuning=gc_tuning)


def serve(host: str = "127.0.0.1", port: int = 8000, no_auth: bool = False, *, settings: Settings | None = None,
          log_level: str = "info") -> None:
    """Run the service until interrupted (``loomiq serve``). Raises `SettingsError` (print its
    message and exit) when it must not start, `port` outside 1-65535 included."""
    check_port(port)
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
