"""`loomiq workflow run|status|events|pause|resume|cancel|list`, `loomiq approvals`, `loomiq approve`: durable
runs through real subprocesses on a SQLite file, offline on the scripted agents."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..workflows.conftest import RELEASE_NOTES
from .conftest import assert_one_line_error, cli, cli_env


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "release-notes.yaml").write_text(RELEASE_NOTES, encoding="utf-8")
    return tmp_path


def _json(*args: str, **env: str) -> object:
    proc = cli(*args, "--json", **env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_a_run_waits_on_an_approval_answered_from_another_process(here: Path) -> None:
    waiting = subprocess.Popen(
        [sys.executable, "-m", "loomiq.cli", "workflow", "run", "release-notes.yaml", "--input", "version=2.0",
         "--wait", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env())
    try:
        deadline = time.monotonic() + 60
        pending: list[dict[str, object]] = []
        while not pending and time.monotonic() < deadline:
            time.sleep(0.3)
            if (here / "loomiq.db").exists():
                pending = _json("approvals")  # type: ignore[assignment]
        [approval] = pending
        assert approval["message"] == "Publish the notes for 2.0?"
        assert approval["approvers"] == {"roles": ["admin", "operator"], "subjects": []}
        run_id = approval["run_id"]
        status = _json("workflow", "status", str(run_id))
        assert status["nodes"]["draft"]["status"] == "succeeded"  # type: ignore[index]
        assert [a["id"] for a in status["pending_approvals"]] == [approval["id"]]  # type: ignore[index]

        assert_one_line_error(cli("approve", str(approval["id"]), LOOMIQ_ROLES="viewer"), "not among the approvers")
        assert_one_line_error(cli("approve", "wr-nope.approve.1"), "no approval wr-nope.approve.1")
        assert_one_line_error(cli("approve", str(approval["id"]), "--tenant", "other"), "no approval")
        answered = cli("approve", str(approval["id"]), "--reject", "--comment", "not yet",
                       LOOMIQ_SUBJECT="ann")
        assert answered.returncode == 0, answered.stderr
        assert answered.stdout == f"approval {approval['id']}: rejected (accepted)\n"
        assert_one_line_error(cli("approve", str(approval["id"]), LOOMIQ_SUBJECT="bob"), "already answered")
        out, err = waiting.communicate(timeout=60)
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.communicate()
    assert waiting.returncode == 0, err
    assert f"waiting for approval {approval['id']}" in err
    final = json.loads(out)
    assert final["status"] == "succeeded"
    assert final["nodes"]["held_back"]["status"] == "succeeded"
    assert final["nodes"]["publish"]["status"] == "skipped"
    assert final["path"] == ["draft", "approve", "held_back"]
    assert _json("approvals") == []
    [decided] = _json("approvals", "--status", "all")  # type: ignore[misc]
    assert decided["status"] == "rejected" and decided["decided_by"] == "ann"
    listed = _json("workflow", "list")
    assert [r["id"] for r in listed] == [run_id]  # type: ignore[union-attr]

    # The run's events: one line each (typed, through the display), or the API's frames as JSON lines.
    events = cli("workflow", "events", str(run_id))
    assert events.returncode == 0, events.stderr
    lines = [line.strip().split("  ", 1)[1] for line in events.stdout.splitlines()]
    assert lines[0] == "workflow release-notes v0 started"
    assert f"[approve] waiting for approval {approval['id']}: Publish the notes for 2.0?" in lines
    assert f"[approve] approval {approval['id']} rejected by ann: not yet" in lines
    assert "[draft] attempt 1 completed" in lines and lines[-1] == "workflow succeeded"
    frames = [json.loads(line) for line in cli("workflow", "events", str(run_id), "--json").stdout.splitlines()]
    assert [f["type"] for f in frames][::len(frames) - 1] == ["workflow_started", "workflow_finished"]
    assert len(frames) == len(lines) and all(sorted(f) == ["at", "data", "seq", "type"] for f in frames)
    later = cli("workflow", "events", str(run_id), "--json", "--after", str(frames[2]["seq"]), "--follow")
    assert [json.loads(line) for line in later.stdout.splitlines()] == frames[3:]
    assert_one_line_error(cli("workflow", "events", "wr-nope"), "no workflow run wr-nope")


def test_run_pause_resume_cancel_and_errors(here: Path) -> None:
    proc = cli("workflow", "run", "release-notes.yaml", "--input", "version=1")
    assert proc.returncode == 0, proc.stderr
    run_id = proc.stdout.strip()
    assert run_id.startswith("wr-")
    assert cli("workflow", "pause", run_id).stdout == f"run {run_id}: running (paused)\n"
    assert cli("workflow", "resume", run_id).stdout == f"run {run_id}: running\n"
    assert cli("workflow", "cancel", run_id).stdout == f"run {run_id}: cancelled\n"
    text = cli("workflow", "status", run_id).stdout
    assert text.startswith(f"run {run_id}: release-notes v0 cancelled\n")
    assert "draft                task          cancelled" in text
    assert_one_line_error(cli("workflow", "status", "wr-nope"), "no workflow run wr-nope")
    assert_one_line_error(cli("workflow", "run", "release-notes.yaml"), "inputs.version", "missing")
    assert_one_line_error(cli("workflow", "run", "unknown-name"), "no workflow 'unknown-name'")
    assert_one_line_error(cli("workflow", "run", "release-notes.yaml", "--input", "version"), "NAME=VALUE")


def test_a_template_runs_offline_to_the_end(here: Path) -> None:
    proc = cli("workflow", "run", "template:feature-development", "--input", "title=Export to CSV", "--wait")
    assert proc.returncode == 0, proc.stderr
    assert "feature-development v0 succeeded" in proc.stdout.splitlines()[0]
    # review and test run side by side: the path has them in the order they finished.
    [path] = [line.strip()[len("path: "):].split(" -> ") for line in proc.stdout.splitlines()
              if line.strip().startswith("path: ")]
    assert path[:2] == ["plan", "implement"] and sorted(path[2:4]) == ["review", "test"], path
    assert path[4:] == ["document"], path
