"""The `loomiq` command line, offline: exit codes, one-line errors, JSON output, and the human output.

Exit codes and stderr are checked through a real subprocess (`python -m loomiq.cli`); the rest runs
in-process with typer's `CliRunner`. No provider key is visible to either, so the default agents are
the offline scripted ones.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from loomiq import Agent, AgentConfig, Orchestrator, RunOptions, ScriptedModel, __version__
from loomiq.cli import app
from loomiq.cli._agents import probe
from loomiq.cli._common import OFFLINE_DEFAULT
from loomiq.cli._run import _execute

from .conftest import PROMPT, PROVIDER_ENV, assert_one_line_error, cli


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No provider key or config in sight, and a fresh cwd so no ./loomiq.yaml is picked up."""
    for name in PROVIDER_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def invoke(*args: str) -> Any:
    """Run the app in-process and return typer's `Result` (stdout and stderr kept apart)."""
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def write_config(directory: Path, body: str, name: str = "loomiq.yaml") -> Path:
    """Write a loomiq.yaml (dedented) and return its path."""
    path = directory / name
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


def scripted_team(failures: str = "{}", latency_s: float = 0.0, ids: tuple[str, ...] = (
        "analyst", "critic", "pragmatist", "lead")) -> str:
    """A config of scripted agents, every one with the same failures and latency, no retries."""
    entries = []
    for ident in ids:
        caps = "[analysis, general, synthesis]" if ident == "lead" else "[analysis, general]"
        entries.append(f"""\
  - id: {ident}
    provider: scripted
    model: scripted
    capabilities: {caps}
    retry: {{max_attempts: 1}}
    scripted: {{failures: {failures}, latency_s: {latency_s}}}
""")
    return "agents:\n" + "".join(entries)


# --- loomiq run --------------------------------------------------------------------------------


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"loomiq {__version__}"


def test_run_json_consensus_on_default_agents() -> None:
    proc = cli("run", PROMPT, "--strategy", "consensus", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)  # exactly one JSON value, nothing else on stdout
    assert isinstance(data, dict)
    for key in ("task_id", "status", "strategy", "output", "steps", "usage", "cost_usd", "offline"):
        assert key in data
    assert data["status"] == "completed"
    assert data["strategy"] == "consensus"
    assert data["offline"] is True
    assert "offline answer" in data["output"]
    assert [s["role"] for s in data["steps"]].count("analyst") == 3
    assert len(data["steps"]) == 4
    assert data["steps"][-1]["role"] == "lead"
    assert {s["agent"] for s in data["steps"]} == {"analyst", "critic", "pragmatist", "lead"}
    for step in data["steps"]:
        for key in ("agent", "role", "output", "usage", "cost_usd", "duration_ms", "error"):
            assert key in step
        assert step["error"] is None
        assert step["usage"]["total_tokens"] > 0
    assert data["usage"]["total_tokens"] == sum(s["usage"]["total_tokens"] for s in data["steps"])


def test_run_human_output_says_offline_and_shows_the_answer() -> None:
    result = invoke("run", PROMPT, "--strategy", "consensus")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == OFFLINE_DEFAULT
    assert "[analyst/0] analyst working (analyst)" in lines
    assert any(line.startswith("[lead] lead done:") for line in lines)
    output = lines[lines.index("output:") + 1]
    assert output.startswith("[offline answer from scripted agent")
    assert "event sourcing" in output
    summary = "\n".join(lines[lines.index("output:"):])
    assert "status:   completed" in summary
    assert "strategy: consensus (chosen by the caller)" in summary
    assert "answered: analyst, critic, pragmatist, lead" in summary
    assert "failed:   none" in summary
    assert "tokens:" in summary and "cost:" in summary and "duration:" in summary
    assert "answers:  offline scripted answers, not a real model's" in summary
    assert result.stderr == ""


def test_run_auto_explains_its_choice() -> None:
    result = invoke("run", PROMPT)
    assert result.exit_code == 0, result.output
    assert "strategy: consensus ('Should we': it asks for a decision" in result.stdout


def test_run_agents_option_is_honoured() -> None:
    result = invoke("run", "Compare Postgres and MySQL", "--agents", "critic, lead", "--strategy", "parallel", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["strategy"] == "parallel"
    assert [s["agent"] for s in sorted(data["steps"], key=lambda s: s["key"])] == ["critic", "lead"]


def test_run_capabilities_option_is_honoured() -> None:
    result = invoke("run", "Write a script", "--capabilities", "coding", "--strategy", "single", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [s["agent"] for s in data["steps"]] == ["pragmatist"]  # the only default agent that codes


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--strategy", "nope"], ["unknown strategy 'nope'", "consensus"]),
        (["--agents", "analyst,ghost"], ["unknown agent 'ghost'", "known: analyst, critic, lead, pragmatist"]),
        (["--agents", "analyst,critic", "--strategy", "consensus"], ["consensus needs at least 3 analysts"]),
        (["--capabilities", "astrology"], ["unknown capability 'astrology': no agent has it"]),
        (["--timeout", "0"], ["--timeout must be a positive number"]),
    ],
    ids=["unknown-strategy", "unknown-agent", "too-few-for-consensus", "no-capable-agent", "zero-timeout"],
)
def test_run_usage_errors_are_one_line_and_exit_2(args: list[str], fragments: list[str]) -> None:
    assert_one_line_error(cli("run", PROMPT, *args), *fragments)


def test_run_empty_prompt_is_a_usage_error() -> None:
    assert_one_line_error(cli("run", "   "), "the prompt is empty")


@pytest.mark.parametrize(
    ("body", "fragments"),
    [
        ("agents:\n  - id: a\n    provider: [scripted\n", ["loomiq.yaml", "bad YAML", "line"]),
        ("agents:\n  - id: a\n    provider: telepathy\n    model: m\n",
         ["loomiq.yaml", "agent 'a'", "field 'provider'", "unknown provider 'telepathy'"]),
        ("agents:\n  - {id: a, provider: scripted, model: s}\n  - {id: a, provider: scripted, model: s}\n",
         ["loomiq.yaml", "agent 'a'", "field 'id'", "duplicate id"]),
        ("agents:\n  - {id: a, provider: openai, model: m, api_key_env: SOME_UNSET_VAR}\n",
         ["loomiq.yaml", "agent 'a'", "field 'api_key_env'", "SOME_UNSET_VAR is not set"]),
        ("agents:\n  - {id: a, provider: scripted, model: s, timeout_s: -1}\n",
         ["loomiq.yaml", "agent 'a'", "field 'timeout_s'"]),
    ],
    ids=["bad-yaml", "unknown-provider", "duplicate-id", "missing-key-variable", "bad-value"],
)
@pytest.mark.parametrize("command", [["run", PROMPT], ["agents"], ["agents", "check"]], ids=["run", "agents", "check"])
def test_config_errors_are_one_line_and_exit_2(
    offline: Path, body: str, fragments: list[str], command: list[str]
) -> None:
    write_config(offline, body)  # found as ./loomiq.yaml
    assert_one_line_error(cli(*command), *fragments)


def test_config_option_names_a_missing_file(offline: Path) -> None:
    assert_one_line_error(cli("run", PROMPT, "--config", str(offline / "absent.yaml")), "absent.yaml", "not found")


def test_run_where_every_agent_fails_exits_1_with_status_failed(offline: Path) -> None:
    config = write_config(offline, scripted_team("{0: server_error, 1: server_error, 2: server_error}"), "team.yaml")
    proc = cli("run", PROMPT, "--config", str(config), "--json")
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    assert data["status"] == "failed"
    assert data["error"]
    assert data["answered"] == []
    assert set(data["failed"]) == {"analyst", "critic", "pragmatist", "lead"}


def test_run_human_output_names_the_failed_agents(offline: Path) -> None:
    config = write_config(offline, scripted_team("{0: server_error, 1: server_error, 2: server_error}"), "team.yaml")
    result = invoke("run", PROMPT, "--config", str(config))
    assert result.exit_code == 1
    out = result.stdout
    assert out.splitlines()[0].startswith("offline: agent(s) analyst, critic, pragmatist, lead are scripted")
    assert "failed over to" in out
    assert "status:   failed" in out
    assert "error:    every analyst failed" in out
    assert "failed:   critic (provider_unavailable: scripted 500: internal server error)" in out
    assert "(no output)" in out


def test_run_degraded_still_exits_0_and_names_who_failed(offline: Path) -> None:
    body = scripted_team() + scripted_team("{0: rate_limit}", ids=("flaky",)).removeprefix("agents:\n")
    config = write_config(offline, body, "team.yaml")
    proc = cli("run", PROMPT, "--config", str(config), "--strategy", "consensus",
               "--agents", "flaky,critic,pragmatist,lead", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["status"] == "completed"
    assert data["degraded"] is True
    assert "flaky" in data["failed"]


def test_run_timeout_exits_1_with_status_timed_out(offline: Path) -> None:
    config = write_config(offline, scripted_team(latency_s=30), "slow.yaml")
    proc = cli("run", PROMPT, "--config", str(config), "--timeout", "0.3", "--json")
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    assert data["status"] == "timed_out"
    assert "0.3s" in data["error"]


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process is POSIX-only")
def test_ctrl_c_cancels_the_run_prints_it_and_exits_130(offline: Path) -> None:
    config = write_config(offline, scripted_team(latency_s=30), "slow.yaml")
    env = {k: v for k, v in os.environ.items() if k not in PROVIDER_ENV}
    env.update(NO_COLOR="1", LOOMIQ_ALLOW_MODEL_REQUESTS="0", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "loomiq.cli", "run", PROMPT, "--config", str(config), "--strategy", "consensus"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:  # wait until the run is under way
            seen.append(line)
            if "working" in line:
                break
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = "".join(seen) + rest
    assert proc.returncode == 130, (out, err)
    assert "status:   cancelled" in out
    assert "tokens:" in out
    assert "Traceback" not in err


async def test_cancelling_the_cli_task_returns_a_cancelled_result(offline: Path) -> None:
    # What asyncio.run does on the first Ctrl-C: cancel the main task. The CLI must turn that into a
    # cancelled run (with its usage so far) instead of dying.
    config = write_config(offline, scripted_team(latency_s=30), "slow.yaml")
    orch = Orchestrator.from_config(config)
    options = RunOptions(strategy="consensus")
    task = asyncio.create_task(_execute(orch, PROMPT, options, True, config))
    await asyncio.sleep(0.2)
    task.cancel()
    result = await task
    assert result.status == "cancelled"
    assert result.usage.total_tokens == 0


def test_module_entry_point_runs() -> None:
    proc = cli("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"loomiq {__version__}"


# --- loomiq agents -----------------------------------------------------------------------------


def test_agents_json_lists_the_offline_default_agents() -> None:
    result = invoke("agents", "--json")
    assert result.exit_code == 0, result.output
    agents = json.loads(result.stdout)
    assert [a["id"] for a in agents] == ["analyst", "critic", "pragmatist", "lead"]
    for a in agents:
        assert a["offline"] is True
        assert a["state"] == "idle"
        assert a["provider"] == "scripted"
        for key in ("name", "model", "capabilities", "success_rate", "mean_latency_ms", "cost_usd"):
            assert key in a


def test_agents_table_says_offline() -> None:
    result = invoke("agents")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == OFFLINE_DEFAULT
    header = next(line for line in lines if line.startswith("id"))
    for column in ("name", "provider", "model", "capabilities", "state", "success", "latency", "tokens", "cost"):
        assert column in header
    for ident in ("analyst", "critic", "pragmatist", "lead"):
        assert any(line.startswith(ident) and "idle" in line for line in lines)


def test_agents_check_on_scripted_agents_is_ok() -> None:
    proc = cli("agents", "check")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == OFFLINE_DEFAULT
    assert proc.stdout.count(" ok ") == 4
    assert "4 of 4 agents answered" in proc.stdout


def test_agents_check_json() -> None:
    result = invoke("agents", "check", "--json")
    assert result.exit_code == 0, result.output
    reports = json.loads(result.stdout)
    assert [r["id"] for r in reports] == ["analyst", "critic", "pragmatist", "lead"]
    assert all(r["ok"] and r["latency_ms"] is not None and r["error"] is None for r in reports)


def test_agents_check_reports_a_failing_agent_and_exits_1(offline: Path) -> None:
    write_config(offline, """\
        agents:
          - {id: good, provider: scripted, model: scripted}
          - {id: broken, provider: scripted, model: scripted, scripted: {failures: {0: server_error}}}
    """)
    proc = cli("agents", "check")
    assert proc.returncode == 1, proc.stderr
    broken = next(line for line in proc.stdout.splitlines() if line.startswith("broken"))
    assert "failed" in broken and "provider_unavailable: scripted 500: internal server error" in broken
    assert "1 of 2 agents answered" in proc.stdout

    result = invoke("agents", "check", "--json")
    assert result.exit_code == 1
    reports = {r["id"]: r for r in json.loads(result.stdout)}
    assert reports["good"]["ok"] is True
    assert reports["broken"]["ok"] is False
    assert reports["broken"]["error_kind"] == "provider_unavailable"


def test_agents_check_takes_the_config_given_to_the_group(offline: Path) -> None:
    config = write_config(offline, "agents:\n  - {id: solo, provider: scripted, model: scripted}\n", "one.yaml")
    result = invoke("agents", "--config", str(config), "check", "--json")
    assert result.exit_code == 0, result.output
    assert [r["id"] for r in json.loads(result.stdout)] == ["solo"]


async def test_agents_check_probe_gives_up_on_a_hanging_model() -> None:
    agent = Agent(AgentConfig("sleepy", "scripted", "scripted"), ScriptedModel(failures={0: "timeout"}))
    report = await probe(agent, timeout_s=0.05)
    assert report["ok"] is False
    assert report["error_kind"] == "timeout"
    assert report["error"] == "no answer within 0.05s"


# --- messages name what the user typed and what to do ---------------------------------------------


def test_consensus_with_too_few_agents_names_the_flag_that_allows_fewer(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    args = ("run", "Shard now?", "--strategy", "consensus", "--agents", "analyst,critic")
    assert_one_line_error(cli(*args), "consensus needs at least 3 analysts", "--allow-fewer")
    done = cli(*args, "--allow-fewer", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["strategy"] == "consensus"
    assert_one_line_error(cli("run", "Shard now?", "--allow-fewer"),
                          "--allow-fewer only applies to --strategy consensus, not auto")


@pytest.mark.parametrize("command", ["run", "submit"])
def test_a_blank_prompt_blames_the_prompt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str) -> None:
    monkeypatch.chdir(tmp_path)
    line = assert_one_line_error(cli(command, "  \n"), "the prompt is empty: write the task for the agents")
    assert "strateg" not in line
