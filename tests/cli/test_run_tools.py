"""``--tools`` on ``loomiq run`` and ``loomiq submit``: the offline agents make a real tool call,
the result lists it, a list naming no tool is a one-line error, a task stores its list."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import assert_one_line_error, cli


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
