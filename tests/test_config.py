"""`loomiq.yaml` loading and validation, config discovery, and the default agents."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
import yaml

from loomiq import Orchestrator
from loomiq.agents import RetryPolicy
from loomiq.config import ConfigError, default_agents, find_config, load_agents, parse_config
from loomiq.models import Pricing, ScriptedModel, model_requests_allowed

FULL = """\
agents:
  - id: analyst-1
    name: Analyst One
    provider: scripted
    model: scripted-large
    capabilities: [analysis, writing]
    input_price_per_token: 0.000001
    output_price_per_token: 0.000004
    timeout_s: 12.5
    max_concurrency: 7
    system_prompt: You analyse.
    temperature: 0.3
    max_tokens: 512
    retry:
      max_attempts: 5
      base_delay_s: 0.1
      max_delay_s: 2.0
      max_retry_after_s: 10.0
    breaker_threshold: 3
    breaker_cooldown_s: 15.0
    scripted:
      replies: ["first", "second"]
      latency_s: 0.01
      failures: {0: rate_limit, 2: server_error}
      persona: the analyst
  - id: local
    provider: ollama
    model: llama3.2
    base_url: http://127.0.0.1:11434/v1
"""


def write(tmp_path: Path, text: str, name: str = "loomiq.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def config_error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_agents(path)
    message = str(info.value)
    assert "\n" not in message, "config errors are one line"
    return message


def test_load_every_field(tmp_path: Path) -> None:
    agents = load_agents(write(tmp_path, FULL))
    assert [a.id for a in agents] == ["analyst-1", "local"]
    first, local = agents
    cfg = first.config
    assert cfg.name == "Analyst One" and cfg.display_name == "Analyst One"
    assert (cfg.provider, cfg.model) == ("scripted", "scripted-large")
    assert cfg.capabilities == frozenset({"analysis", "writing"})
    assert (cfg.input_price_per_token, cfg.output_price_per_token) == (0.000001, 0.000004)
    assert cfg.timeout_s == 12.5 and cfg.max_concurrency == 7
    assert cfg.system_prompt == "You analyse."
    assert cfg.temperature == 0.3 and cfg.max_tokens == 512
    assert cfg.retry == RetryPolicy(max_attempts=5, base_delay_s=0.1, max_delay_s=2.0, max_retry_after_s=10.0)
    assert (cfg.breaker_threshold, cfg.breaker_cooldown_s) == (3, 15.0)
    assert first.breaker.threshold == 3 and first.breaker.cooldown_s == 15.0
    model = first.model
    assert isinstance(model, ScriptedModel)
    assert model.replies == ["first", "second"]
    assert model.latency_s == 0.01
    assert dict(model.failures) == {0: "rate_limit", 2: "server_error"}
    assert model.persona == "the analyst"
    assert model.pricing == Pricing(0.000001, 0.000004)
    assert first.offline is True
    assert local.config.provider == "ollama"
    assert local.offline is False
    assert local.config.base_url == "http://127.0.0.1:11434/v1"
    assert local.config.retry == RetryPolicy()  # defaults


async def test_loaded_scripted_agent_plays_its_script(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        agents:
          - {id: a, provider: scripted, model: s, retry: {base_delay_s: 0.001, max_delay_s: 0.002},
             scripted: {replies: ["scripted reply"], failures: {0: server_error}}}
    """)
    result = await Orchestrator.from_config(path).run("Hello there", strategy="single")
    assert result.output == "scripted reply"
    assert result.steps[0].attempts == 2


def test_scripted_persona_defaults_to_the_agent_name(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        agents:
          - {id: critic, name: Critic, provider: scripted, model: s, scripted: {latency_s: 0}}
    """)
    (agent,) = load_agents(path)
    assert isinstance(agent.model, ScriptedModel)
    assert agent.model.persona == "Critic"


def test_bad_yaml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "agents:\n  - id: a\n   provider: scripted\n")
    message = config_error(path)
    assert message.startswith("loomiq.yaml: bad YAML at line 3, column 4: ")


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    assert config_error(write(tmp_path, "- just\n- a list\n")) == (
        "loomiq.yaml: expected a mapping with an 'agents' list at the top"
    )


def test_unknown_provider(tmp_path: Path) -> None:
    message = config_error(write(tmp_path, """\
        agents:
          - {id: a, provider: scripted, model: s}
          - {id: b, provider: skynet, model: t1000}
    """))
    assert message.startswith("loomiq.yaml: agent 'b': field 'provider': unknown provider 'skynet' (known: ")
    assert "openai" in message and "scripted" in message


def test_duplicate_id(tmp_path: Path) -> None:
    message = config_error(write(tmp_path, """\
        agents:
          - {id: twin, provider: scripted, model: s}
          - {id: twin, provider: scripted, model: s}
    """))
    assert message == ("loomiq.yaml: agent 'twin': field 'id': duplicate id (another agent has it): give each agent "
                       "its own id")


def test_missing_key_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UNSET_VAR_X", raising=False)
    message = config_error(write(tmp_path, """\
        agents:
          - {id: gpt, provider: openai, model: gpt-4o-mini, api_key_env: UNSET_VAR_X}
    """))
    assert message == (
        "loomiq.yaml: agent 'gpt': field 'api_key_env': environment variable UNSET_VAR_X is not set"
    )


def test_missing_default_key_variable(tmp_path: Path) -> None:
    # The session fixture removed ANTHROPIC_API_KEY from the environment.
    message = config_error(write(tmp_path, "agents:\n  - {id: claude, provider: anthropic, model: haiku}\n"))
    assert message == (
        "loomiq.yaml: agent 'claude': field 'api_key_env': environment variable ANTHROPIC_API_KEY is not set"
    )


def test_negative_timeout(tmp_path: Path) -> None:
    message = config_error(write(tmp_path, "agents:\n  - {id: a, provider: scripted, model: s, timeout_s: -1}\n"))
    assert message.startswith("loomiq.yaml: agent 'a': field 'timeout_s': ")
    assert "greater than 0" in message


def test_unknown_field(tmp_path: Path) -> None:
    message = config_error(write(tmp_path, "agents:\n  - {id: a, provider: scripted, model: s, colour: red}\n"))
    assert message.startswith("loomiq.yaml: agent 'a': field 'colour': ")
    assert "Extra inputs are not permitted" in message


def test_nested_field_is_named_with_its_path(tmp_path: Path) -> None:
    message = config_error(write(tmp_path, """\
        agents:
          - {id: a, provider: scripted, model: s, retry: {max_attempts: 0}}
    """))
    assert message.startswith("loomiq.yaml: agent 'a': field 'retry.max_attempts': ")


def test_agent_without_id_is_named_by_position(tmp_path: Path) -> None:
    message = config_error(write(tmp_path, """\
        agents:
          - {id: a, provider: scripted, model: s}
          - {provider: scripted, model: s}
    """))
    assert message.startswith("loomiq.yaml: agent #2: field 'id': ")


def test_empty_agent_list(tmp_path: Path) -> None:
    message = config_error(write(tmp_path, "agents: []\n"))
    assert message.startswith("loomiq.yaml: field 'agents': ")


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="file not found"):
        parse_config(Path("/nonexistent/dir/loomiq.yaml"))


# --- discovery ---------------------------------------------------------------------------------


def test_find_config_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert find_config() is None
    local = write(tmp_path, FULL)
    found = find_config()
    assert found is not None and found.resolve() == local.resolve()
    elsewhere = write(tmp_path, FULL, name="team.yaml")
    monkeypatch.setenv("LOOMIQ_CONFIG", str(elsewhere))
    assert find_config() == elsewhere
    explicit = tmp_path / "explicit.yaml"
    assert find_config(explicit) == explicit


def test_loomiq_config_variable_is_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, "agents:\n  - {id: from-env, provider: scripted, model: s}\n", name="custom.yaml")
    monkeypatch.setenv("LOOMIQ_CONFIG", str(path))
    assert [a.id for a in Orchestrator.from_config().agents] == ["from-env"]


def test_errors_name_the_file_actually_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "agents:\n  - {id: a, provider: nope, model: s}\n", name="team.yaml")
    monkeypatch.setenv("LOOMIQ_CONFIG", str(path))
    with pytest.raises(ConfigError, match=r"^team\.yaml: agent 'a': field 'provider'"):
        load_agents()


# --- default agents ----------------------------------------------------------------------------


def test_default_agents_are_offline_scripted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    agents = load_agents()
    assert [a.id for a in agents] == ["analyst", "critic", "pragmatist", "lead"]
    assert all(a.offline and a.config.provider == "scripted" for a in agents)
    assert all(isinstance(a.model, ScriptedModel) for a in agents)
    assert "synthesis" in agents[-1].capabilities
    assert all(a.config.system_prompt for a in agents)
    assert [a.model.persona for a in agents] == ["Analyst", "Critic", "Pragmatist", "Lead"]  # type: ignore[attr-defined]


async def test_default_agents_answer_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = await Orchestrator.from_config().run("Should we adopt event sourcing?", strategy="consensus")
    assert result.status == "completed"
    assert result.offline is True
    assert next(s.agent for s in result.steps if s.key == "lead") == "lead"
    assert "[offline answer from scripted agent" in result.output


def test_default_agents_switch_to_openai_when_its_key_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    monkeypatch.delenv("LOOMIQ_DEFAULT_MODEL", raising=False)
    agents = default_agents()
    assert [a.id for a in agents] == ["analyst", "critic", "pragmatist", "lead"]
    for agent in agents:
        assert agent.config.provider == "openai"
        assert agent.config.model == "gpt-4o-mini"
        assert agent.config.api_key_env == "OPENAI_API_KEY"
        assert agent.offline is False
        assert agent.model.provider == "openai"


def test_the_session_is_offline() -> None:
    from tests.conftest import PROVIDER_ENV

    assert [name for name in PROVIDER_ENV if name in os.environ] == []
    assert model_requests_allowed() is False


@pytest.mark.parametrize(
    "url", ["\t\rhttp://x", "not a url", "ftp://host/v1", "http://", "http://host:70000/v1", "http://ho st/v1",
            "//host/v1", "http://host\u0085/v1"],
)
def test_a_garbage_base_url_is_a_field_error(tmp_path: Path, url: str) -> None:
    path = tmp_path / "loomiq.yaml"
    path.write_text(yaml.safe_dump({"agents": [{"id": "local", "provider": "ollama", "model": "m", "base_url": url}]}))
    with pytest.raises(ConfigError, match=r"agent 'local': field 'base_url': (must be|is not a URL)"):
        load_agents(path)


@pytest.mark.parametrize(("provider", "variable"), [("ollama", "OLLAMA_BASE_URL"), ("vllm", "VLLM_BASE_URL"),
                                                    ("llamacpp", "LLAMACPP_BASE_URL"), ("openai", "OPENAI_BASE_URL")])
@pytest.mark.parametrize("url", ["not a url", "ftp://host/v1", "http://host:70000"])
def test_a_garbage_base_url_from_the_environment_fails_config_loading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, provider: str, variable: str, url: str
) -> None:
    monkeypatch.setenv(variable, url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    path = tmp_path / "loomiq.yaml"
    path.write_text(yaml.safe_dump({"agents": [{"id": "local", "provider": provider, "model": "m"}]}))
    with pytest.raises(ConfigError, match=rf"agent 'local': environment variable {variable} \(its base URL\): "
                                          rf"(must be|is not a URL).*; fix or unset {variable}"):
        load_agents(path)
    # The built-in default agents read OLLAMA_BASE_URL too.
    if provider == "ollama":
        monkeypatch.delenv("OPENAI_API_KEY")
        (tmp_path / "empty").mkdir()
        monkeypatch.chdir(tmp_path / "empty")  # no loomiq.yaml here
        with pytest.raises(ConfigError, match="environment variable OLLAMA_BASE_URL"):
            load_agents(None)


@pytest.mark.parametrize("text", ["agents: []\n", "agentz: []\n"])
def test_a_config_without_agents_says_what_to_add(tmp_path: Path, text: str) -> None:
    path = tmp_path / "loomiq.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"^loomiq.yaml: field 'agents': the file lists no agent: add at least one "
                                          r"under 'agents:'"):
        load_agents(path)


def test_a_duplicate_agent_id_says_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "loomiq.yaml"
    path.write_text("agents:\n  - {id: a, provider: scripted, model: s}\n  - {id: a, provider: scripted, model: s}\n")
    with pytest.raises(ConfigError, match="agent 'a': field 'id': duplicate id .*give each agent its own id"):
        load_agents(path)
