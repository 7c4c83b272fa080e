"""`ToolRegistry`: names, built-ins on demand from their settings, providers' namespaces, allow-lists;
the ``tools:`` section of loomiq.yaml and agents' allow-lists."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

import pytest

from loomiq.config import ConfigError, load_agents, load_tools, parse_config
from loomiq.tools import (
    Tool,
    ToolContext,
    ToolRegistry,
    ToolResult,
    UnknownTool,
    allows,
    qualified_name,
    tool,
)
from loomiq.tools import registry as registry_module


class Echo(Tool):
    """A stand-in built-in with one setting."""

    name = "echo"
    description = "Echo the text."
    parameters: Mapping[str, Any] = {
        "type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"],
    }
    read_only = True

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix

    @classmethod
    def configure(cls, settings: Mapping[str, Any] | None = None) -> Self:
        settings = dict(settings or {})
        prefix = settings.pop("prefix", "")
        if settings:
            raise ValueError(f"tool 'echo': setting {next(iter(settings))!r}: unknown setting")
        if not isinstance(prefix, str):
            raise ValueError("tool 'echo': setting 'prefix': Input should be a valid string")
        return cls(prefix)

    async def run(self, arguments: Mapping[str, Any], ctx: ToolContext) -> ToolResult:
        return ToolResult(self.prefix + arguments["text"])


class Clock(Echo):
    name = "clock"


@pytest.fixture(autouse=True)
def builtins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_module, "builtin_classes", lambda: {"echo": Echo, "clock": Clock})


@tool
def add(a: int, b: int) -> int:
    """Add."""
    return a + b


def test_names_builtins_on_demand_and_settings() -> None:
    reg = ToolRegistry([add], settings={"echo": {"prefix": "> "}, "clock": {"enabled": False}})
    assert reg.names() == ["add", "echo"]
    echo = reg.get("echo")
    assert isinstance(echo, Echo) and echo.prefix == "> " and reg.get("echo") is echo
    with pytest.raises(UnknownTool, match="'clock' is disabled"):
        reg.get("clock")
    with pytest.raises(UnknownTool, match="no tool named 'nope'"):
        reg.get("nope")
    assert "add" in reg and "clock" not in reg
    with pytest.raises(ValueError, match="already registered"):
        reg.add(add)
    assert ToolRegistry(builtins=False).names() == []


def test_provider_namespaces_and_allow_lists() -> None:
    reg = ToolRegistry([add], builtins=False)

    def provider_tool(short: str) -> Tool:
        made = Clock()
        made.name = qualified_name("time", short)  # what an MCP server's tools will look like
        return made

    names = reg.add_provider("time", [provider_tool("get_current_time"), provider_tool("convert_time")])
    assert names == ["time__get_current_time", "time__convert_time"]
    assert reg.providers() == {"time": names}
    assert [t.name for t in reg.select(["time"])] == ["time__convert_time", "time__get_current_time"]
    assert [t.name for t in reg.select(["time__convert_time", "add"])] == ["add", "time__convert_time"]
    assert allows(["time"], "time__now") and not allows(["time"], "timer") and not allows(["tim"], "time__now")
    assert reg.unmatched(["add", "time", "weather"]) == ["weather"]
    with pytest.raises(ValueError, match="must be named time__<tool>"):
        reg.add_provider("time", [add])
    with pytest.raises(ValueError, match="1 to 64"):
        qualified_name("a" * 40, "b" * 30)
    with pytest.raises(ValueError, match="may not contain '__'"):
        qualified_name("a__b", "c")


def test_base_validation_uses_the_json_schema() -> None:
    echo = Echo()
    assert echo.validate({"text": "hi"}) == {"text": "hi"}
    with pytest.raises(Exception, match="argument 'text': 3 is not of type \"string\""):
        echo.validate({"text": 3})
    with pytest.raises(Exception, match='"text" is a required property'):
        echo.validate({})


class Plain(Tool):
    """A tool without settings: the base `configure`."""

    name = "plain"
    description = "Nothing."
    parameters: Mapping[str, Any] = {"type": "object"}

    async def run(self, arguments: Mapping[str, Any], ctx: ToolContext) -> ToolResult:
        return ToolResult("")


def test_base_configure_takes_no_settings() -> None:
    assert isinstance(Plain.configure({}), Plain)
    with pytest.raises(ValueError, match="tool 'plain': setting 'x': unknown setting"):
        Plain.configure({"x": 1})
    assert Plain().unavailable_reason() is None and Plain().spec().read_only is False


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "loomiq.yaml"
    path.write_text(text)
    return path


AGENT = "agents:\n  - {id: a1, provider: scripted, model: s, tools: [echo, time], max_tool_rounds: 3}\n"


def test_config_tools_section_and_agent_allow_lists(tmp_path: Path) -> None:
    path = write(tmp_path, AGENT + "tools:\n  echo: {prefix: '>> '}\n  clock:\n")
    (agent,) = load_agents(path)
    assert agent.config.tools == ("echo", "time") and agent.config.max_tool_rounds == 3
    reg = load_tools(path)
    assert reg.get("echo").prefix == ">> "  # type: ignore[attr-defined]
    assert [t.name for t in reg.select(agent.config.tools)] == ["echo"]


@pytest.mark.parametrize(
    ("tools", "message"),
    [
        ("  ecko: {}\n", "loomiq.yaml: tool 'ecko': unknown built-in tool (known: clock, echo)"),
        ("  echo: {prefx: 1}\n", "loomiq.yaml: tool 'echo': field 'prefx': unknown setting"),
        ("  echo: {prefix: 3}\n", "loomiq.yaml: tool 'echo': field 'prefix': Input should be a valid string"),
        ("  echo: {enabled: maybe}\n", "loomiq.yaml: tool 'echo': field 'enabled': expected true or false"),
        ("  echo: [1]\n", "loomiq.yaml: tool 'echo': expected a mapping of settings"),
    ],
)
def test_config_tool_errors_are_one_line(tmp_path: Path, tools: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(write(tmp_path, AGENT + "tools:\n" + tools))
    assert str(info.value) == message


def test_agent_allow_list_entries_must_be_tool_names(tmp_path: Path) -> None:
    path = write(tmp_path, "agents:\n  - {id: a1, provider: scripted, model: s, tools: ['time.now']}\n")
    with pytest.raises(ConfigError, match=r"agent 'a1': field 'tools': 'time.now' is not a tool or provider name"):
        parse_config(path)
