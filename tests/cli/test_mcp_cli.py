"""`loomiq mcp check`, `loomiq tools` with MCP servers, and `loomiq mcp serve`'s argument errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from .conftest import assert_one_line_error, cli

CONFIG = f"""
agents:
  - {{id: clock, provider: scripted, model: s, tools: [time]}}
mcp_servers:
  - name: time
    command: {sys.executable}
    args: [-m, mcp_server_time, --local-timezone, UTC]
"""

GHOST = """
  - name: ghost
    command: /nonexistent/mcp-server
"""


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "loomiq.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


def test_check_lists_each_servers_tools(config: Path) -> None:
    done = cli("mcp", "check", "--json", timeout=120)
    assert done.returncode == 0, done.stderr
    (entry,) = json.loads(done.stdout)
    assert entry["name"] == "time" and entry["ok"] and entry["transport"] == "stdio"
    assert entry["tools"] == ["time__convert_time", "time__get_current_time"]
    assert entry["server"].startswith("mcp-time")


def test_check_exits_1_naming_a_server_that_failed(config: Path) -> None:
    config.write_text(CONFIG + GHOST, encoding="utf-8")
    done = cli("mcp", "check", timeout=120)
    assert done.returncode == 1
    assert "ok    time" in done.stdout and "time__get_current_time" in done.stdout
    assert "FAIL  ghost" in done.stdout
    assert "MCP server 'ghost' (/nonexistent/mcp-server) failed to start" in done.stdout
    assert done.stderr.strip().splitlines()[-1] == "loomiq: error: MCP server(s) failed to start: ghost"


def test_tools_lists_mcp_tools_with_their_agents(config: Path) -> None:
    config.write_text(CONFIG + GHOST, encoding="utf-8")
    done = cli("tools", "--json", timeout=120)
    assert done.returncode == 0, done.stderr
    tools = {t["name"]: t for t in json.loads(done.stdout)}
    assert tools["time__get_current_time"]["agents"] == ["clock"]
    assert tools["time__get_current_time"]["read_only"] is True
    assert tools["time__get_current_time"]["parameters"]["required"] == ["timezone"]
    assert "loomiq: warning: MCP server 'ghost'" in done.stderr


def test_config_errors_and_bad_serve_arguments_are_one_line(config: Path) -> None:
    config.write_text(CONFIG.replace("    args:", "    headers: {A: 'Bearer x'}\n    args:"), encoding="utf-8")
    assert_one_line_error(cli("mcp", "check"), "loomiq.yaml: MCP server 'time': field 'headers'")
    assert_one_line_error(cli("mcp", "serve", "--role", "boss"), "--role: expected one of admin, operator, viewer")
    assert_one_line_error(cli("mcp", "serve", "--tenant", "a b"), "--tenant: 'a b' is not a tenant id")
