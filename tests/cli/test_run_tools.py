"""``--tools`` on ``loomiq run`` and ``loomiq submit``: the offline agents make a real tool call,
the result lists it, a list naming no tool is a one-line error, a task stores its list."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import assert_one_line_error, cli, cli_env


def test_run_with_tools_makes_an_offline_tool_call_and_lists_it(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    # web_search has no backend here: the offline agent still makes the call, and reads back its error.
    proc = cli("run", "Count the words here", "-s", "single", "--tools", "web_search", "--json")
    assert proc.returncode == 0, proc.stderr
    (step,) = json.loads(proc.stdout)["steps"]
    (call,) = step["tool_calls"]
    assert call["name"] == "web_search" and call["status"] == "finished" and call["error_kind"] == "unavailable"
    assert "I called tool web_search" in step["output"]
    plain = cli("run", "Count the words here", "-s", "single", "--json")
    assert json.loads(plain.stdout)["steps"][0]["tool_calls"] == []
    shown = cli("run", "Count the words here", "-s", "single", "--tools", "web_search")
    assert "[single] analyst tool web_search" in shown.stdout


@pytest.mark.parametrize("command", ["run", "submit"])
def test_a_tools_list_naming_no_tool_is_one_line(command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    extra = ["--database", f"sqlite:///{tmp_path / 't.db'}"] if command == "submit" else []
    assert_one_line_error(cli(command, "x", "--tools", "pyhton", *extra), "pyhton", "available")


def test_submit_stores_the_runs_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    proc = cli("submit", "x", "--tools", "python,shell", "--json", "--database", f"sqlite:///{tmp_path / 't.db'}")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["tools"] == ["python", "shell"]


@pytest.mark.parametrize("entry", ["loomiq.cli", "loomiq.engine.worker"])
def test_a_worker_runs_tools_with_the_settings_of_loomiq_yaml(entry: str, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "loomiq.yaml").write_text(
        "agents:\n"
        "  - {id: searcher, provider: scripted, model: scripted, tools: [web_search]}\n"
        "tools:\n"
        "  web_search: {searxng_url: 'http://127.0.0.1:9/search', timeout_s: 5}\n"
    )
    submitted = cli("submit", "find zebras", "-s", "single", "--tools", "web_search")
    assert submitted.returncode == 0, submitted.stderr
    task_id = submitted.stdout.strip()
    args = ["worker", "--concurrency", "1"] if entry == "loomiq.cli" else ["--concurrency", "1"]
    w = subprocess.Popen([sys.executable, "-m", entry, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env={**cli_env(), "PYTHONWARNINGS": "error"})
    try:
        waited = cli("wait", task_id, "--json", timeout=90)
    finally:
        w.kill()
        w.communicate(timeout=30)
    assert waited.returncode == 0, waited.stderr
    shown = cli("status", task_id, "--json")
    result = json.loads(shown.stdout).get("result") or {}
    if not result:  # `status --json` without the run's result: read it from the task database
        import sqlite3

        with sqlite3.connect(tmp_path / "loomiq.db") as db:
            (text,) = db.execute("SELECT result FROM tasks WHERE id = ?", (task_id,)).fetchone()
        result = json.loads(text)
    (call,) = result["steps"][0]["tool_calls"]
    # Configured (a SearxNG URL from loomiq.yaml), so not "unavailable": the worker read the tools: section.
    assert call["name"] == "web_search" and call["error_kind"] != "unavailable", call
