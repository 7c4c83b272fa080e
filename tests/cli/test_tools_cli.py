"""`loomiq tools` and `loomiq tool run`: listing with schemas and agents, one call as an agent's,
exit codes, one-line errors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from loomiq.cli import app
from loomiq.tools import Tool, ToolContext, ToolError, ToolResult
from loomiq.tools import registry as registry_module

from .conftest import PROVIDER_ENV, assert_one_line_error, cli


class Upper(Tool):
    name = "upper"
    description = "Upper-case a text.\n\nMore detail."
    parameters: Mapping[str, Any] = {
        "type": "object", "properties": {"text": {"type": "string"}, "fail": {"type": "boolean"}},
        "required": ["text"], "additionalProperties": False,
    }
    read_only = True

    async def run(self, arguments: Mapping[str, Any], ctx: ToolContext) -> ToolResult:
        if arguments.get("fail"):
            raise ToolError(f"refusing for tenant {ctx.tenant_id}")
        return ToolResult(arguments["text"].upper(), {"chars": len(arguments["text"])})


class Sleepy(Tool):
    name = "sleepy"
    description = "Sleeps."
    parameters: Mapping[str, Any] = {"type": "object", "properties": {}}
    timeout_s = 0.05

    def unavailable_reason(self) -> str | None:
        return "install a bed"

    async def run(self, arguments: Mapping[str, Any], ctx: ToolContext) -> ToolResult:
        await asyncio.sleep(10)
        return ToolResult("")


@pytest.fixture(autouse=True)
def setup(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in PROVIDER_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(registry_module, "builtin_classes", lambda: {"upper": Upper, "sleepy": Sleepy})
    (tmp_path / "loomiq.yaml").write_text(
        "agents:\n"
        "  - {id: writer, provider: scripted, model: s, tools: [upper]}\n"
        "  - {id: idle, provider: scripted, model: s, tools: [typo]}\n"
        "tools:\n  sleepy: {}\n"
    )
    return tmp_path


runner = CliRunner()


def test_tools_json_lists_schemas_and_agents() -> None:
    result = runner.invoke(app, ["tools", "--json"])
    assert result.exit_code == 0, result.output
    listed = {t["name"]: t for t in json.loads(result.stdout)}
    assert set(listed) == {"sleepy", "upper"}
    assert listed["upper"]["agents"] == ["writer"] and listed["sleepy"]["agents"] == []
    assert listed["upper"]["parameters"]["required"] == ["text"] and listed["upper"]["read_only"] is True
    assert listed["sleepy"]["available"] is False and listed["sleepy"]["unavailable_reason"] == "install a bed"


def test_tools_table() -> None:
    result = runner.invoke(app, ["tools"])
    assert result.exit_code == 0, result.output
    assert "upper" in result.stdout and "text, fail?" in result.stdout and "writer" in result.stdout
    assert "[unavailable: install a bed]" in result.stdout
    assert "agent idle: allow-list entries naming no tool: typo" in result.stdout


def test_tool_run_prints_the_result() -> None:
    result = runner.invoke(app, ["tool", "run", "upper", "--args", '{"text": "hi"}'])
    assert (result.exit_code, result.stdout) == (0, "HI\n")
    result = runner.invoke(app, ["tool", "run", "upper", "--args", '{"text": "hi"}', "--json"])
    out = json.loads(result.stdout)
    assert (out["content"], out["data"], out["error"]) == ("HI", {"chars": 2}, None)


@pytest.mark.parametrize(
    ("args", "kind", "content"),
    [
        ('{"text": 1}', "invalid_arguments", "Error: argument 'text': 1 is not of type \"string\""),
        ('{"text": "x", "fail": true}', "tool_error", "Error: refusing for tenant acme"),
    ],
)
def test_tool_run_error_results_exit_1(args: str, kind: str, content: str) -> None:
    result = runner.invoke(app, ["tool", "run", "upper", "--tenant", "acme", "--args", args, "--json"])
    assert result.exit_code == 1
    out = json.loads(result.stdout)
    assert out["error_kind"] == kind and out["content"] == content


def test_tool_run_times_out_like_an_agent_call() -> None:
    result = runner.invoke(app, ["tool", "run", "sleepy"])
    assert result.exit_code == 1
    assert result.stdout == "Error: tool 'sleepy' did not finish within 0.05s; it was cancelled\n"


def test_usage_errors_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "loomiq.yaml").unlink()
    assert_one_line_error(cli("tool", "run", "nope"), "no tool named 'nope' (known:")
    assert_one_line_error(cli("tool", "run", "nope", "--args", "[1]"), "--args: expected a JSON object")
    assert_one_line_error(cli("tool", "run", "nope", "--args", "{"), "--args: not valid JSON")
    (tmp_path / "bad.yaml").write_text("agents:\n  - {id: a, provider: scripted, model: s}\ntools:\n  nope: {}\n")
    assert_one_line_error(cli("tools", "--config", "bad.yaml"), "bad.yaml: tool 'nope': unknown built-in tool")
