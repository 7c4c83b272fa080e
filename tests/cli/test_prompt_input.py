"""Where `loomiq run` and `loomiq submit` take the prompt from: the argument, stdin (``-``), or
``--prompt-file``; a 1 MB prompt (more than argv carries) goes through whole."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import PROMPT, assert_one_line_error, cli, cli_env

ONE_MB = "".join(f"Paragraph {i}: weigh the cost, the risk and the reversibility of sharding. \n"
                 for i in range(14_000))[:1_048_576]


@pytest.fixture(autouse=True)
def cwd(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def piped(*args: str, stdin: bytes) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "loomiq.cli", *args], input=stdin, capture_output=True,
                          env=cli_env(), timeout=120, check=False)
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def test_run_reads_a_one_megabyte_prompt_from_stdin() -> None:
    assert len(ONE_MB.encode()) >= 1_000_000
    proc = piped("run", "-", "--strategy", "single", "--json", stdin=ONE_MB.encode())
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "completed"
    assert "Paragraph 0: weigh the cost" in result["output"]  # the scripted answer quotes the prompt's start
    assert result["usage"]["input_tokens"] >= len(ONE_MB) // 4  # the whole prompt reached the model


def test_submit_reads_the_prompt_from_stdin_and_from_a_file(cwd: Path) -> None:
    from_stdin = piped("submit", "-", "--json", stdin=ONE_MB.encode())
    assert from_stdin.returncode == 0, from_stdin.stderr
    assert json.loads(from_stdin.stdout)["prompt"] == ONE_MB
    (cwd / "task.md").write_text(ONE_MB, encoding="utf-8")
    from_file = cli("submit", "--prompt-file", "task.md", "--json")
    assert from_file.returncode == 0, from_file.stderr
    assert json.loads(from_file.stdout)["prompt"] == ONE_MB


def test_run_reads_the_prompt_from_a_file(cwd: Path) -> None:
    (cwd / "task.txt").write_text(PROMPT + "\n", encoding="utf-8")
    proc = cli("run", "--prompt-file", "task.txt", "--strategy", "single", "--json")
    assert proc.returncode == 0, proc.stderr
    assert PROMPT in json.loads(proc.stdout)["output"]


@pytest.mark.parametrize("command", ["run", "submit"])
def test_prompt_sources_that_cannot_work_are_one_line_errors(cwd: Path, command: str) -> None:
    assert_one_line_error(cli(command), "no prompt", "'-' to read it from stdin", "--prompt-file")
    assert_one_line_error(cli(command, PROMPT, "--prompt-file", "x.txt"), "not both")
    assert_one_line_error(cli(command, "--prompt-file", "missing.txt"), "--prompt-file missing.txt",
                          "cannot read it")
    (cwd / "binary.bin").write_bytes(b"\xff\xfe\x00garbage")
    assert_one_line_error(cli(command, "--prompt-file", "binary.bin"), "not UTF-8")
    (cwd / "blank.txt").write_text("  \n", encoding="utf-8")
    assert_one_line_error(cli(command, "--prompt-file", "blank.txt"),
                          "the prompt from --prompt-file blank.txt is empty")
    assert_one_line_error(piped(command, "-", stdin=b""), "the prompt from stdin is empty")
