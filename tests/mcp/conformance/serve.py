"""loomiq's service with the conformance fixtures on its ``/mcp`` (`fixtures.mount`), for the suite's
server leg: ``python serve.py PORT_FILE``. Auth is off (--no-auth: loopback only), as the suite
connects without credentials; the scripted agents answer; the task database is a temporary file.
It writes its port to PORT_FILE once it listens, and runs until terminated."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from loomiq.api import Settings, create_app
from loomiq.api.server import build_server

sys.path.insert(0, str(Path(__file__).parent))
from fixtures import mount  # noqa: E402 - the fixtures sit beside this script


def main() -> None:
    port_file = Path(sys.argv[1])
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "loomiq.yaml"
        config.write_text("agents:\n  - {id: solo, provider: scripted, model: scripted}\n", encoding="utf-8")
        settings = Settings(auth_disabled=True, keys_path=Path(tmp) / "keys.db", config_path=config,
                            database_url=f"sqlite:///{tmp}/tasks.db", rate_per_s=10_000.0, rate_burst=10_000)
        server = build_server("127.0.0.1", 0, settings=settings, app=create_app(settings, mcp_extension=mount),
                              log_level="warning", gc_tuning=False)

        original = server.startup

        async def startup(sockets: object = None) -> None:
            await original(sockets)  # type: ignore[arg-type]
            port = server.servers[0].sockets[0].getsockname()[1]
            port_file.write_text(str(port))  # noqa: ASYNC240 - once, at start-up

        server.startup = startup  # type: ignore[method-assign]
        server.run()


if __name__ == "__main__":
    main()
