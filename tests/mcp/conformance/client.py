"""The client the conformance suite's client leg drives: loomiq's own MCP client (`McpToolSource`, the
path an agent's tools take) against the suite's server for one scenario.

``python client.py URL``; the scenario is in ``$MCP_CONFORMANCE_SCENARIO`` (and, for pre-registered
OAuth clients, its credentials in ``$MCP_CONFORMANCE_CONTEXT``). Exit 0 when the scenario's steps
ran; the suite judges what went over the wire.

For the ``auth/*`` scenarios the server is configured with ``oauth:`` as a user would, and the
consent step is `FollowRedirect` (the suite's authorization server consents without a person) where
``loomiq mcp login`` would open a browser; tokens go to a temporary directory.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path

from loomiq.tools import ToolLoop, ToolRegistry
from loomiq.tools.mcp import EnvValue, FollowRedirect, McpServerSpec, McpToolSource, OAuthSpec

CALLS = {
    "tools_call": ("suite__add_numbers", {"a": 5, "b": 3}),
    "elicitation-sep1034-client-defaults": ("suite__test_client_elicitation_defaults", {}),
    "sse-retry": ("suite__test_reconnection", {}),
}


def oauth_spec() -> OAuthSpec:
    context = json.loads(os.environ.get("MCP_CONFORMANCE_CONTEXT") or "{}")
    secret = None
    if context.get("client_secret"):
        os.environ["CONFORMANCE_CLIENT_SECRET"] = context["client_secret"]
        secret = EnvValue("CONFORMANCE_CLIENT_SECRET")
    return OAuthSpec(client_id=context.get("client_id"), client_secret=secret,
                     redirect_uri="http://localhost:3000/callback",
                     client_metadata_url="https://conformance-test.local/client-metadata.json")


async def main(url: str, scenario: str) -> int:
    auth = scenario.startswith("auth/")
    with tempfile.TemporaryDirectory() as tokens:
        spec = McpServerSpec("suite", url=url, timeout_s=20, oauth=oauth_spec() if auth else None)
        registry = ToolRegistry(builtins=False)
        registry.add_source(McpToolSource(spec, authorizer=FollowRedirect(), token_dir=Path(tokens)))
        try:
            await registry.prepare(["suite"])  # starts the session: the initialize handshake, tools/list
            tools = registry.select(["suite"])
            loop = ToolLoop(tools)
            if scenario in CALLS:
                name, arguments = CALLS[scenario]
            elif auth and tools:
                name, arguments = tools[0].name, {}
            else:
                return 0
            record = await loop.call(name, arguments)
            print(f"{name}: {record.content}")
            return 1 if record.error is not None and not auth else 0
        finally:
            await registry.aclose()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[-1], os.environ.get("MCP_CONFORMANCE_SCENARIO", "initialize"))))
