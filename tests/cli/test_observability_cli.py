"""`loomiq worker --metrics-port --log-format json` and `loomiq serve --log-format json`, as real processes."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import assert_one_line_error, cli, cli_env


@pytest.fixture(autouse=True)
def cwd(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_worker_exposes_its_metrics_and_logs_json_lines_with_the_tasks_ids() -> None:
    task_id = cli("submit", "Should we shard?", "--strategy", "parallel").stdout.strip()
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "loomiq.cli", "worker", "--metrics-port", str(port), "--log-format", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=cli_env(LOOMIQ_LOG_LEVEL="debug", SERVICE_API_TOKEN="tok-super-secret-123456"),
    )
    try:
        assert proc.stdout is not None
        assert json.loads(proc.stdout.readline())["event"] == "worker_ready"
        assert cli("wait", task_id, timeout=60).returncode == 0
        deadline = time.monotonic() + 15
        while True:
            text = httpx2.get(f"http://127.0.0.1:{port}/metrics").text
            values = {(s.name, frozenset(s.labels.items())): s.value
                      for f in text_string_to_metric_families(text) for s in f.samples}
            runs = sum(v for (n, ls), v in values.items() if n == "loomiq_runs_total" and ("status", "completed") in ls)
            if runs == 1 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert runs == 1
        calls = sum(v for (n, ls), v in values.items()
                    if n == "loomiq_model_calls_total" and ("tenant", "default") in ls and ("outcome", "ok") in ls)
        assert calls >= 2  # parallel: every agent answered
        assert ("loomiq_queue_depth", frozenset({("priority", "medium")})) in values
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    finished = [line for line in lines if line.get("task_id") == task_id]
    assert finished and all(line["tenant"] == "default" and line["run_id"] == task_id for line in finished)
    assert any("completed" in str(line["event"]) for line in finished)
    assert "tok-super-secret-123456" not in err


def test_bad_observability_options_are_one_line_errors() -> None:
    assert_one_line_error(cli("worker", "--log-format", "xml"), "--log-format", "xml")
    assert_one_line_error(cli("worker", "--metrics-port", "70000"), "--metrics-port", "70000")
    assert_one_line_error(cli("worker", "--log-level", "loud"), "loud")
    assert_one_line_error(cli("serve", "--log-format", "yaml"), "--log-format")
