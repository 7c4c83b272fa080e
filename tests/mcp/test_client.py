"""loomiq as an MCP client: a real third-party server from PyPI (``mcp-server-time``) over stdio as
an agent's tool source, a model on the local wire server calling its tool; the allow-lists; a
server that crashes, hangs, writes garbage or changes its tools; a server that cannot start."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from loomiq.config import ConfigError, load_agents, load_tools, parse_config
from loomiq.models import Message, ModelRequest
from loomiq.models.openai_compat import OpenAIChatModel
from loomiq.tools import ToolLoop, ToolRegistry, ToolSourceError, tool
from loomiq.tools.mcp import McpServerSpec, McpToolSource

from ..providers.wire_server import Reply, WireServer, text_reply

FLAKY = str(Path(__file__).with_name("flaky_server.py"))


@pytest.fixture
def wire_server() -> Iterator[WireServer]:
    with WireServer() as server:
        yield server


def write_config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "loomiq.yaml"
    path.write_text(body, encoding="utf-8")
    return path


TIME_CONFIG = f"""
agents:
  - {{id: clock, provider: scripted, model: s, tools: [time]}}
  - {{id: converter, provider: scripted, model: s, tools: [time__convert_time]}}
mcp_servers:
  - name: time
    command: {sys.executable}
    args: [-m, mcp_server_time, --local-timezone, UTC]
    timeout_s: 20
"""


async def test_time_server_feeds_a_model_on_the_wire(tmp_path: Path, wire_server: WireServer) -> None:
    path = write_config(tmp_path, TIME_CONFIG)
    agents = {a.id: a for a in load_agents(path)}
    registry = load_tools(path)
    model = OpenAIChatModel(model_name="gpt-test", base_url=wire_server.openai_base_url, provider="openai-compatible")
    wire_server.script(
        Reply(text="", tool_calls=(("c1", "time__get_current_time", json.dumps({"timezone": "Asia/Tokyo"})),)),
        text_reply("In Tokyo it is the time the tool said."),
    )
    try:
        assert await registry.prepare(agents["clock"].config.tools) == {}
        tools = registry.select(agents["clock"].config.tools)
        assert [t.name for t in tools] == ["time__convert_time", "time__get_current_time"]
        assert [t.name for t in registry.select(agents["converter"].config.tools)] == ["time__convert_time"]
        result = await ToolLoop(tools).run(model.complete, ModelRequest((Message("user", "Time in Tokyo?"),)))
    finally:
        await model.aclose()
        await registry.aclose()
    assert result.response.text == "In Tokyo it is the time the tool said."
    (record,) = result.tool_calls
    assert record.error is None, record.content
    assert record.data is None or record.data["timezone"] == "Asia/Tokyo"
    assert json.loads(record.content)["timezone"] == "Asia/Tokyo"
    first, second = (r.body for r in wire_server.requests)
    assert {t["function"]["name"] for t in first["tools"]} == {"time__convert_time", "time__get_current_time"}
    schema = next(t for t in first["tools"] if t["function"]["name"] == "time__get_current_time")
    assert schema["function"]["parameters"]["required"] == ["timezone"]
    answer = second["messages"][-1]
    assert answer["role"] == "tool" and answer["tool_call_id"] == "c1"
    assert json.loads(answer["content"])["timezone"] == "Asia/Tokyo"
    assert "+09:00" in json.loads(answer["content"])["datetime"]


@pytest.fixture
async def flaky(tmp_path: Path) -> AsyncIterator[tuple[ToolRegistry, Path]]:
    counter = tmp_path / "starts"
    registry = ToolRegistry(builtins=False)
    registry.add_source(McpToolSource(McpServerSpec(
        "flaky", sys.executable, (FLAKY,), {"FLAKY_COUNTER": str(counter)}, timeout_s=1.5,
    )))
    try:
        yield registry, counter
    finally:
        await registry.aclose()


@tool
async def local_add(a: int, b: int) -> int:
    """Add two numbers, in process."""
    return a + b


@pytest.mark.parametrize(("name", "message"), [
    ("flaky__crash", "closed the connection"),
    ("flaky__hang", "did not answer tools/call 'hang' within 1.5s"),
    ("flaky__garbage", "it sent an unreadable message"),
])
async def test_a_broken_server_gives_an_error_result_and_is_restarted(
    flaky: tuple[ToolRegistry, Path], name: str, message: str
) -> None:
    registry, counter = flaky
    await registry.prepare(["flaky"])
    loop = ToolLoop([*registry.select(["flaky"]), local_add])
    assert (await loop.call("flaky__echo", {"text": "one"})).content == "echo: one"
    # The broken call, and beside it in the same turn a call that has nothing to do with it.
    broken, other = await asyncio.gather(loop.call(name, {}), loop.call("local_add", {"a": 2, "b": 3}))
    assert broken.status == "finished" and broken.error_kind == "tool_error"
    assert message in broken.content and "MCP server 'flaky'" in broken.content
    assert other.error is None and other.content == "5"
    again = await loop.call("flaky__echo", {"text": "two"})
    assert again.error is None and again.content == "echo: two"
    assert counter.read_text() == "2"  # started again, once
    source = registry.sources()["flaky"]
    assert source.connection.restarts == 1  # type: ignore[attr-defined]


async def test_list_changed_refreshes_the_tools(flaky: tuple[ToolRegistry, Path]) -> None:
    registry, _ = flaky
    await registry.prepare(["flaky"])
    assert "flaky__extra" not in registry.names()
    assert (await ToolLoop(registry.select(["flaky"])).call("flaky__grow", {})).content == "grown"
    for _ in range(100):
        if "flaky__extra" in registry.names():
            break
        await asyncio.sleep(0.02)
    assert "flaky__extra" in registry.names()
    assert (await ToolLoop(registry.select(["flaky__extra"])).call("flaky__extra", {})).content == "extra!"


async def test_a_server_that_cannot_start_is_named(tmp_path: Path) -> None:
    registry = ToolRegistry(builtins=False)
    registry.add_source(McpToolSource(McpServerSpec("ghost", str(tmp_path / "no-such-binary"), timeout_s=5)))
    registry.add_source(McpToolSource(McpServerSpec(
        "maybe", sys.executable, ("-c", "import sys; sys.exit(4)"), timeout_s=5, required=False,
    )))
    try:
        with pytest.raises(ToolSourceError, match=r"MCP server 'ghost' \(.*no-such-binary\) failed to start"):
            await registry.prepare(["ghost", "maybe"])
        problems = await registry.prepare(["maybe"])
        assert list(problems) == ["maybe"] and "MCP server 'maybe'" in problems["maybe"]
        assert registry.select(["maybe"]) == []
    finally:
        await registry.aclose()


async def test_headers_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_config(tmp_path, """
agents: [{id: a, provider: scripted, model: s}]
mcp_servers:
  - name: remote
    url: http://127.0.0.1:9/mcp
    headers: {Authorization: {env: REMOTE_MCP_TOKEN, prefix: "Bearer "}}
""")
    monkeypatch.delenv("REMOTE_MCP_TOKEN", raising=False)
    registry = load_tools(path)
    try:
        with pytest.raises(ToolSourceError, match="MCP server 'remote': header 'Authorization': environment variable "
                                                  "REMOTE_MCP_TOKEN is not set"):
            await registry.prepare()
    finally:
        await registry.aclose()
    spec = registry.sources()["remote"].spec  # type: ignore[attr-defined]
    monkeypatch.setenv("REMOTE_MCP_TOKEN", "s3cret")
    assert spec.resolved_headers() == {"Authorization": "Bearer s3cret"}
    assert "s3cret" not in spec.describe()


@pytest.mark.parametrize(("entry", "message"), [
    ("{name: gh, url: 'https://x/mcp', headers: {Authorization: 'Bearer abc'}}",
     "MCP server 'gh': field 'headers': header 'Authorization': write {env: VARIABLE"),
    ("{name: gh, command: x, env: {GITHUB_TOKEN: abc}}",
     "MCP server 'gh': field 'env': env 'GITHUB_TOKEN' looks like a secret"),
    ("{name: gh, command: x, url: 'http://x/mcp'}", "MCP server 'gh': give either 'command'"),
    ("{name: gh}", "MCP server 'gh': give either 'command'"),
    ("{name: a__b, command: x}", "MCP server 'a__b': field 'name'"),
    ("{name: gh, command: x, headers: {A: {env: B}}}", "'headers' and 'oauth' are for HTTP servers"),
    ("{name: gh, command: x, timeout_s: 0}", "MCP server 'gh': field 'timeout_s'"),
])
def test_config_errors_name_the_server_and_field(tmp_path: Path, entry: str, message: str) -> None:
    path = write_config(tmp_path, f"agents: [{{id: a, provider: scripted, model: s}}]\nmcp_servers:\n  - {entry}\n")
    with pytest.raises(ConfigError) as caught:
        parse_config(path)
    assert message in str(caught.value)
    assert "Bearer abc" not in str(caught.value)


def test_duplicate_server_names_are_refused(tmp_path: Path) -> None:
    path = write_config(tmp_path, "agents: [{id: a, provider: scripted, model: s}]\nmcp_servers:\n"
                                  "  - {name: t, command: x}\n  - {name: t, command: y}\n")
    with pytest.raises(ConfigError, match="MCP server 't': field 'name': duplicate name"):
        parse_config(path)


async def test_restarts_back_off_after_consecutive_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    from loomiq.tools.mcp import McpConnection, McpStartError
    from loomiq.tools.mcp import connection as connection_module

    base = 1.0  # long enough that a process start alone cannot pass for the wait
    monkeypatch.setattr(connection_module, "RESTART_BASE_S", base)

    connection = McpConnection(McpServerSpec("dies", sys.executable, ("-c", "import sys; sys.exit(1)"),
                                             start_timeout_s=30))
    waits = []
    try:
        for _ in range(3):
            started = asyncio.get_running_loop().time()
            with pytest.raises(McpStartError, match="MCP server 'dies'"):
                await connection.start()
            waits.append(asyncio.get_running_loop().time() - started)
    finally:
        await connection.aclose()
    # The first start is at once; then each waits the backoff before trying: 1 s, then 2 s.
    assert waits[0] < base
    assert waits[1] >= base * 0.95 and waits[2] >= 2 * base * 0.95


async def test_a_run_starts_the_mcp_server_its_agent_names_and_calls_its_tool(flaky: tuple[ToolRegistry, Path],
                                                                             ) -> None:
    from loomiq import Agent, AgentConfig, Orchestrator, ScriptedModel, ScriptedReply

    registry, counter = flaky

    def reply(request: ModelRequest, index: int) -> ScriptedReply | str:
        results = [m.content for m in request.messages if m.role == "tool"]
        return f"the server said {results[0]}" if results else ScriptedReply.calling(("flaky__echo", {"text": "hi"}))

    agent = Agent(AgentConfig("echoer", "scripted", "s", tools=("flaky",)), ScriptedModel(reply))
    orch = Orchestrator([agent], tools=registry)
    assert not registry.loaded("flaky")
    result = await orch.run("say hi through the server", strategy="single")
    assert registry.loaded("flaky") and counter.read_text() == "1"  # started by the run (prepare), once
    assert result.output == "the server said echo: hi"
    (call,) = result.steps[0].tool_calls
    assert call.name == "flaky__echo" and call.error is None
    version = registry.version
    await orch.aclose()  # stops the server; its tools leave the registry
    assert registry.version > version and not registry.loaded("flaky") and "flaky__echo" not in registry.names()
